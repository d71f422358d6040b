//! A loopback DNS server answering from a table the test changes while it runs.
//!
//! It answers as an authority for every name (and a recursive server's answer for a CNAME
//! chain), so the host's resolver can be pointed straight at it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How often the server threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// CNAME links followed in one answer before giving up on a loop.
const MAX_CHAIN: usize = 8;

/// A DNS server on 127.0.0.1, UDP and TCP on one port; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    zone: Mutex<Zone>,
    stop: AtomicBool,
    udp_queries: AtomicUsize,
    tcp_queries: AtomicUsize,
}

struct Zone {
    ttl: u32,
    nodes: HashMap<String, Node>,
}

#[derive(Default)]
struct Node {
    cname: Option<String>,
    txt: Vec<Vec<u8>>,
    mx: Vec<(u16, String)>,
    ips: Vec<IpAddr>,
    servfail: bool,
}

impl DnsServer {
    /// Starts a server with an empty table and a 1-second TTL.
    pub fn start() -> Self {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let shared = Arc::new(Shared {
            zone: Mutex::new(Zone {
                ttl: 1,
                nodes: HashMap::new(),
            }),
            stop: AtomicBool::new(false),
            udp_queries: AtomicUsize::new(0),
            tcp_queries: AtomicUsize::new(0),
        });
        let udp_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("test-dns-udp".into())
                .spawn(move || serve_udp(udp, &shared))
                .unwrap()
        };
        let tcp_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("test-dns-tcp".into())
                .spawn(move || serve_tcp(tcp, &shared))
                .unwrap()
        };
        Self {
            addr,
            shared,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TTL of answers from now on, also the negative TTL of NXDOMAIN/NODATA (default 1 s).
    pub fn set_ttl(&self, seconds: u32) {
        self.zone().ttl = seconds;
    }

    /// Makes `value` the only TXT record at `name`; a value over 255 bytes goes out as several
    /// character-strings of that one record, as DKIM keys do.
    pub fn set_txt(&self, name: &str, value: &str) {
        let mut zone = self.zone();
        let node = zone.data_node(name);
        node.txt = vec![value.as_bytes().to_vec()];
    }

    /// Adds another TXT record at `name` (SPF next to a verification token, say).
    pub fn add_txt(&self, name: &str, value: &str) {
        self.zone()
            .data_node(name)
            .txt
            .push(value.as_bytes().to_vec());
    }

    /// Makes `name` an alias of `target`, replacing anything else at `name`.
    pub fn set_cname(&self, name: &str, target: &str) {
        self.zone().nodes.insert(
            key(name),
            Node {
                cname: Some(key(target)),
                ..Node::default()
            },
        );
    }

    /// The MX records of `domain`; `(0, ".")` alone is a null MX.
    pub fn set_mx(&self, domain: &str, hosts: &[(u16, &str)]) {
        self.zone().data_node(domain).mx = hosts
            .iter()
            .map(|(preference, host)| (*preference, host.to_string()))
            .collect();
    }

    /// Makes `ip` the only address of `name` (an A or AAAA record by its family).
    pub fn set_a(&self, name: &str, ip: IpAddr) {
        self.zone().data_node(name).ips = vec![ip];
    }

    /// Adds another address to `name`.
    pub fn add_a(&self, name: &str, ip: IpAddr) {
        self.zone().data_node(name).ips.push(ip);
    }

    /// Makes every query for `name` answer SERVFAIL, as a broken authority does.
    pub fn set_servfail(&self, name: &str) {
        self.zone().data_node(name).servfail = true;
    }

    /// Removes everything at `name`: it answers NXDOMAIN again.
    pub fn remove(&self, name: &str) {
        self.zone().nodes.remove(&key(name));
    }

    /// Queries answered so far over UDP.
    pub fn udp_queries(&self) -> usize {
        self.shared.udp_queries.load(Ordering::SeqCst)
    }

    /// Queries answered so far over TCP.
    pub fn tcp_queries(&self) -> usize {
        self.shared.tcp_queries.load(Ordering::SeqCst)
    }

    fn zone(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.shared.zone.lock().unwrap()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Names compare case-insensitively and with or without the root dot.
fn key(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    /// The node for data records at `name`; a CNAME there goes, as the two cannot coexist.
    fn data_node(&mut self, name: &str) -> &mut Node {
        let node = self.nodes.entry(key(name)).or_default();
        node.cname = None;
        node
    }

    /// A name exists when it has records or names below it (an empty non-terminal such as
    /// `_domainkey.example.com` is NODATA, not NXDOMAIN).
    fn exists(&self, name: &str) -> bool {
        let suffix = format!(".{name}");
        self.nodes
            .keys()
            .any(|known| known == name || known.ends_with(&suffix))
    }

    fn answer(&self, query_name: &Name, query_type: RecordType, response: &mut Message) {
        let mut owner = query_name.clone();
        let mut name = key(&query_name.to_ascii());
        for _ in 0..MAX_CHAIN {
            if self.nodes.get(&name).is_some_and(|node| node.servfail) {
                response.metadata.response_code = ResponseCode::ServFail;
                return;
            }
            let Some(node) = self.nodes.get(&name) else {
                if !self.exists(&name) {
                    response.metadata.response_code = ResponseCode::NXDomain;
                }
                break;
            };
            if let Some(target) = &node.cname {
                let target_name = absolute(target);
                response.add_answer(Record::from_rdata(
                    owner.clone(),
                    self.ttl,
                    RData::CNAME(CNAME(target_name.clone())),
                ));
                if query_type == RecordType::CNAME {
                    return;
                }
                owner = target_name;
                name = target.clone();
                continue;
            }
            for rdata in node.records(query_type) {
                response.add_answer(Record::from_rdata(owner.clone(), self.ttl, rdata));
            }
            break;
        }
        if response.answers.is_empty() {
            response.add_authority(self.soa(&name));
        }
    }

    /// An SOA for a negative answer, so resolvers cache it for the zone's TTL.
    fn soa(&self, name: &str) -> Record {
        let labels: Vec<&str> = name.split('.').collect();
        let apex = labels[labels.len().saturating_sub(2)..].join(".");
        let apex = absolute(&apex);
        let soa = SOA::new(
            absolute(&format!("ns.{apex}")),
            absolute(&format!("hostmaster.{apex}")),
            1,
            3600,
            600,
            86400,
            self.ttl,
        );
        Record::from_rdata(apex, self.ttl, RData::SOA(soa))
    }
}

impl Node {
    fn records(&self, query_type: RecordType) -> Vec<RData> {
        match query_type {
            RecordType::TXT => self
                .txt
                .iter()
                .map(|value| RData::TXT(TXT::from_bytes(value.chunks(255).collect())))
                .collect(),
            RecordType::MX => self
                .mx
                .iter()
                .map(|(preference, host)| RData::MX(MX::new(*preference, absolute(host))))
                .collect(),
            RecordType::A => self
                .ips
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(RData::A(A(*v4))),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            RecordType::AAAA => self
                .ips
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V6(v6) => Some(RData::AAAA(AAAA(*v6))),
                    IpAddr::V4(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn absolute(name: &str) -> Name {
    if name == "." || name.is_empty() {
        return Name::root();
    }
    let mut parsed = Name::from_str_relaxed(name).unwrap();
    parsed.set_fqdn(true);
    parsed
}

/// The answer to one query message, or `None` for something that is not a query.
fn respond(shared: &Shared, request: &[u8], over_tcp: bool) -> Option<Message> {
    let request = Message::from_vec(request).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        response.set_edns(edns);
    }
    match (request.metadata.op_code, request.queries.as_slice()) {
        (OpCode::Query, [query]) => {
            let zone = shared.zone.lock().unwrap();
            zone.answer(query.name(), query.query_type(), &mut response);
        }
        (OpCode::Query, _) => response.metadata.response_code = ResponseCode::FormErr,
        _ => response.metadata.response_code = ResponseCode::NotImp,
    }
    // Over UDP the client's limit applies: 512 bytes without EDNS (RFC 1035), its advertised
    // size with it. An answer that does not fit is truncated, so the client retries over TCP.
    let limit = if over_tcp {
        usize::from(u16::MAX)
    } else {
        usize::from(request.max_payload())
    };
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Some(response),
        _ => Some(response.truncate()),
    }
}

fn serve_udp(socket: UdpSocket, shared: &Shared) {
    socket.set_read_timeout(Some(POLL)).unwrap();
    let mut buffer = [0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((len, peer)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        if let Some(response) = respond(shared, &buffer[..len], false) {
            shared.udp_queries.fetch_add(1, Ordering::SeqCst);
            let _ = socket.send_to(&response.to_vec().unwrap(), peer);
        }
    }
}

fn serve_tcp(listener: TcpListener, shared: &Arc<Shared>) {
    listener.set_nonblocking(true).unwrap();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                // Not joined: it ends within POLL of the stop flag or when the client hangs up.
                std::thread::spawn(move || serve_tcp_connection(stream, &shared));
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn serve_tcp_connection(mut stream: TcpStream, shared: &Shared) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(POLL)).unwrap();
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(len) => pending.extend_from_slice(&buffer[..len]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        // Each message is preceded by its length in two bytes (RFC 1035 §4.2.2).
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let request: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            let Some(response) = respond(shared, &request, true) else {
                return;
            };
            shared.tcp_queries.fetch_add(1, Ordering::SeqCst);
            let bytes = response.to_vec().unwrap();
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            if stream.write_all(&framed).is_err() {
                return;
            }
        }
    }
}

/// A UDP socket and a TCP listener on the same free loopback port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        // The port is free for UDP; TCP's side of it may be taken by someone else.
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}
