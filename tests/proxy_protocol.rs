//! Listeners behind a load balancer: the PROXY header of a trusted balancer names the client
//! that allowlists and limits see, by hand-written headers of both versions and by Debian's
//! HAProxy itself (skipped where it is not installed, unless `SLUICE_REQUIRE_HAPROXY` is set,
//! as `.ci/run` sets it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sluice::net::proxy_protocol::TrustedProxies;
use sluice::store::{CredentialKind, Source};

use crate::util::TestServer;

/// Where the allowlisted clients are.
const OFFICE: &str = "203.0.113.0/24";

/// A server whose four listeners take PROXY headers from `balancers`, with a source that
/// takes logins (`office-smtp`, `office-api`) only from `allowed`.
fn server_behind(balancers: &str, allowed: &str) -> TestServer {
    let trusted = || TrustedProxies::new(vec![balancers.parse().unwrap()]);
    let server = TestServer::start(|config| {
        config.smtp.proxy_protocol_from = trusted();
        config.api.proxy_protocol_from = trusted();
        config.dashboard.proxy_protocol_from = trusted();
        config.inbound.proxy_protocol_from = trusted();
    });
    server.block_on(async {
        let store = server.store();
        let source = store
            .create_source(Source {
                id: 0,
                account_id: 1,
                name: "office only".into(),
                allowed_networks: Some(vec![allowed.parse().unwrap()]),
                max_message_bytes: 1 << 20,
                require_tls: false,
                allow_plain_auth: true,
                feedback_address: None,
            })
            .await
            .unwrap();
        store
            .add_credential(&source, CredentialKind::Api, "office-api", "office-secret")
            .await
            .unwrap();
        store
            .add_credential(
                &source,
                CredentialKind::Smtp,
                "office-smtp",
                "office-secret",
            )
            .await
            .unwrap();
    });
    server
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// A version-1 header relaying for `client`.
fn v1(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 192.0.2.1 40000 443\r\n").into_bytes()
}

/// A version-2 header relaying for `client`, with a type-length-value field after the
/// addresses, as HAProxy adds.
fn v2(client: std::net::Ipv4Addr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    let mut body = client.octets().to_vec();
    body.extend([192, 0, 2, 1]);
    body.extend(40000u16.to_be_bytes());
    body.extend(443u16.to_be_bytes());
    body.extend([0x05, 0x00, 0x02, b'i', b'd']);
    header.extend((body.len() as u16).to_be_bytes());
    header.extend(body);
    header
}

/// The status of asking `api` for a token with the office source's API login, over a
/// connection that starts with `header`; None when the connection is closed unanswered.
fn token_status(api: SocketAddr, header: &[u8]) -> Option<u16> {
    let mut stream = connect(api);
    token_status_on(&mut stream, header)
}

fn token_status_on(stream: &mut TcpStream, header: &[u8]) -> Option<u16> {
    let body = "grant_type=client_credentials&client_id=office-api&client_secret=office-secret";
    let request = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A closed connection may refuse the write, or the read after it.
    let _ = stream.write_all(&[header, request.as_bytes()].concat());
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1)?;
    status.parse().ok()
}

/// The reply to AUTH PLAIN with the office source's SMTP login, over a connection that starts
/// with `header`; None when the connection is closed before the greeting.
fn smtp_login_reply(smtp: SocketAddr, header: &[u8]) -> Option<u16> {
    let mut stream = connect(smtp);
    smtp_login_reply_on(&mut stream, header)
}

fn smtp_login_reply_on(stream: &mut TcpStream, header: &[u8]) -> Option<u16> {
    stream.write_all(header).ok()?;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let reply = |reader: &mut BufReader<TcpStream>| -> Option<u16> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.get(..3)?.parse().ok();
            }
        }
    };
    assert_eq!(reply(&mut reader)?, 220);
    stream.write_all(b"EHLO client.example\r\n").ok()?;
    assert_eq!(reply(&mut reader)?, 250);
    let login = base64::engine::general_purpose::STANDARD.encode(b"\0office-smtp\0office-secret");
    stream
        .write_all(format!("AUTH PLAIN {login}\r\n").as_bytes())
        .ok()?;
    reply(&mut reader)
}

#[test]
fn a_trusted_balancers_header_names_the_client_the_api_allowlist_sees() {
    let server = server_behind("127.0.0.1/32", OFFICE);
    let api = server.server.api_addr;
    assert_eq!(token_status(api, &v1("203.0.113.7")), Some(200));
    assert_eq!(
        token_status(api, &v2("203.0.113.8".parse().unwrap())),
        Some(200)
    );
    assert_eq!(token_status(api, &v1("198.51.100.7")), Some(403));
    assert_eq!(
        token_status(api, &v2("198.51.100.8".parse().unwrap())),
        Some(403)
    );
    // An IPv4 client relayed as an IPv4-mapped IPv6 address is the IPv4 client.
    let mapped = |client: &str| format!("PROXY TCP6 ::ffff:{client} 2001:db8::1 40000 443\r\n");
    assert_eq!(
        token_status(api, mapped("203.0.113.7").as_bytes()),
        Some(200)
    );
    assert_eq!(
        token_status(api, mapped("198.51.100.7").as_bytes()),
        Some(403)
    );
    // The balancer's own connection (a health check) is served as from the balancer.
    assert_eq!(token_status(api, b"PROXY UNKNOWN\r\n"), Some(403));
    // From a trusted address the header is required: a request without one is not served.
    assert_eq!(token_status(api, b""), None);
    assert_eq!(token_status(api, b"PROXY TCP4 203.0.113.7\r\n"), None);
}

#[test]
fn a_trusted_balancers_header_names_the_client_smtp_logins_are_checked_for() {
    let server = server_behind("127.0.0.1/32", OFFICE);
    let smtp = server.server.smtp_addr;
    assert_eq!(smtp_login_reply(smtp, &v1("203.0.113.7")), Some(235));
    assert_eq!(
        smtp_login_reply(smtp, &v2("203.0.113.9".parse().unwrap())),
        Some(235)
    );
    assert_eq!(smtp_login_reply(smtp, &v1("198.51.100.7")), Some(535));
    assert_eq!(smtp_login_reply(smtp, b""), None);
}

#[test]
fn the_mx_and_the_dashboard_read_the_header_too() {
    let server = server_behind("127.0.0.1/32", OFFICE);
    let mx = server.server.mx_addr.unwrap();
    let greeting = |header: &[u8]| {
        let mut stream = connect(mx);
        stream.write_all(header).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        line
    };
    assert!(greeting(&v1("192.0.2.25")).starts_with("220 "));
    assert_eq!(greeting(b""), "");

    let dashboard = server.server.dashboard_addr.unwrap();
    let login_page = |header: &[u8]| {
        let mut stream = connect(dashboard);
        let request = b"GET /login HTTP/1.1\r\nHost: dashboard\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(&[header, request.as_slice()].concat());
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    };
    assert!(login_page(&v1("203.0.113.7")).starts_with("HTTP/1.1 200"));
    assert_eq!(login_page(b""), "");
}

#[test]
fn a_header_from_an_untrusted_address_is_not_believed() {
    // Trusts a balancer elsewhere: the test's own connections are direct clients, and a
    // header they send is taken as the protocol's first bytes, not as an address.
    let server = server_behind("192.0.2.0/24", OFFICE);
    let api = server.server.api_addr;
    assert_eq!(token_status(api, b""), Some(403));
    // The header claims an office address; read as HTTP it is a malformed request line.
    assert_eq!(token_status(api, &v1("203.0.113.7")), Some(400));
    let smtp = server.server.smtp_addr;
    assert_eq!(smtp_login_reply(smtp, b""), Some(535));
}

/// Debian's HAProxy, relaying to `server`'s API with version-2 headers and to its SMTP
/// submission with version-1 headers. Killed when dropped.
struct HaProxy {
    child: Child,
    api: SocketAddr,
    smtp: SocketAddr,
}

impl HaProxy {
    fn start(server: &TestServer, dir: &Path) -> Option<Self> {
        const REQUIRE: &str = "SLUICE_REQUIRE_HAPROXY";
        let installed = Command::new("haproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            assert!(
                std::env::var_os(REQUIRE).is_none(),
                "{REQUIRE} is set, but haproxy is not installed"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED proxy_protocol::haproxy_in_front_...: haproxy is not installed; to run \
                 it, apt-get install haproxy and run `cargo test --test sluice proxy_protocol::`"
            );
            return None;
        }
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (api, smtp) = (free_port(), free_port());
        let config = format!(
            "global\n    maxconn 100\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend api\n    bind {api}\n    default_backend api\n\
             backend api\n    server sluice {} send-proxy-v2\n\
             frontend submission\n    bind {smtp}\n    default_backend submission\n\
             backend submission\n    server sluice {} send-proxy\n",
            server.server.api_addr, server.server.smtp_addr
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let haproxy = Self { child, api, smtp };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(smtp).is_err() || TcpStream::connect(api).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(haproxy)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection to `address` from the loopback address `from` (127.0.0.2, say): HAProxy
/// then relays for a client other than the test's usual 127.0.0.1.
fn connect_from(server: &TestServer, from: &str, address: SocketAddr) -> TcpStream {
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    let stream = server.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(from).unwrap();
        socket.connect(address).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

#[test]
fn haproxy_in_front_relays_the_clients_address_with_both_versions() {
    // HAProxy connects from 127.0.0.1, the balancer; the allowed client is 127.0.0.2.
    let server = server_behind("127.0.0.1/32", "127.0.0.2/32");
    let dir = tempfile::tempdir().unwrap();
    let Some(haproxy) = HaProxy::start(&server, dir.path()) else {
        return;
    };
    let mut allowed = connect_from(&server, "127.0.0.2", haproxy.api);
    assert_eq!(token_status_on(&mut allowed, b""), Some(200), "version 2");
    let mut other = connect_from(&server, "127.0.0.3", haproxy.api);
    assert_eq!(token_status_on(&mut other, b""), Some(403), "version 2");
    let mut allowed = connect_from(&server, "127.0.0.2", haproxy.smtp);
    assert_eq!(
        smtp_login_reply_on(&mut allowed, b""),
        Some(235),
        "version 1"
    );
    let mut other = connect_from(&server, "127.0.0.3", haproxy.smtp);
    assert_eq!(smtp_login_reply_on(&mut other, b""), Some(535), "version 1");
    // Straight to the server from the balancer's address, without a header: not served.
    assert_eq!(token_status(server.server.api_addr, b""), None);
}
