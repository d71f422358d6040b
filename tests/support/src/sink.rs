//! A loopback SMTP server that plays a recipient's MX host for delivery tests.
//!
//! It speaks enough ESMTP for a real client (EHLO, PIPELINING, STARTTLS, SIZE, dot-stuffed DATA,
//! RSET, several messages per connection), answers each recipient as the test scripts it, and
//! records what it saw: the accepted messages, every command line of every session, and how many
//! connections were open at once. One blocking thread per connection, so it serves tests with or
//! without their own tokio runtime.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// How often a connection thread blocked on a read looks at the stop flag.
const POLL: Duration = Duration::from_millis(25);
/// A command line longer than this (without its end) closes the connection with a 500.
const MAX_LINE: usize = 64 * 1024;
/// The name the sink gives itself in its greeting and EHLO reply.
const HOSTNAME: &str = "sink.test";
/// What `TempFailThenAccept` answers while it still fails.
pub const TEMP_FAIL_REPLY: &str = "451 4.3.0 try again later";

/// Where a scripted answer is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In reply to `RCPT TO` for the recipient.
    Rcpt,
    /// In reply to the end of the message content (the final `.`).
    Data,
}

/// How the sink treats one recipient (or every recipient without a script of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 250 to RCPT and to the message.
    Accept,
    /// A 4xx reply (the full line, e.g. `"451 4.3.0 try later"`) at the stage.
    TempFail { at: Stage, reply: String },
    /// A 5xx reply (the full line, e.g. `"550 5.1.1 no such user"`) at the stage.
    PermFail { at: Stage, reply: String },
    /// The first `times` RCPTs of this address fail with [`TEMP_FAIL_REPLY`] at the stage (at
    /// `Data`, the message of a transaction whose RCPT was one of those first `times`); later
    /// attempts are accepted.
    TempFailThenAccept { at: Stage, times: usize },
    /// RCPT is accepted; after the message content arrives the connection closes with no reply.
    DropAfterData,
    /// The connection closes on RCPT for this address, with no reply.
    DropOnRcpt,
    /// No reply at the stage, nor to anything after it, until the client hangs up.
    Stall { at: Stage },
}

/// What happens when a client connects, before any command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnConnect {
    /// The normal `220` greeting.
    Greet,
    /// This greeting line instead (e.g. `"421 4.3.2 too busy"` or `"554 5.7.1 no service"`),
    /// then the connection closes.
    Refuse(String),
    /// No greeting, no answer, until the client hangs up.
    Stall,
    /// The connection closes at once.
    Drop,
}

/// Start options.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Offer STARTTLS (changeable later with [`SmtpSink::set_tls`]).
    pub tls: bool,
    /// Advertise PIPELINING in the EHLO reply. Pipelined commands are served either way.
    pub advertise_pipelining: bool,
    /// The SIZE limit: advertised, checked against `MAIL FROM ... SIZE=` and against the content.
    /// `None` advertises `SIZE 0`, which means no fixed limit (RFC 1870).
    pub max_size: Option<usize>,
    /// A user name and password the client must log in with (AUTH PLAIN or LOGIN, offered
    /// only under TLS) before MAIL, as a smart host does.
    pub login: Option<(String, String)>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            tls: true,
            advertise_pipelining: true,
            max_size: None,
            login: None,
        }
    }
}

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The reverse path without angle brackets; empty for the null sender `<>`.
    pub mail_from: String,
    /// The parameters after `MAIL FROM:<...>`, as sent (`SIZE=123`, `BODY=8BITMIME`, ...).
    pub mail_params: Vec<String>,
    /// The recipients accepted at RCPT, without angle brackets, in order.
    pub rcpt_to: Vec<String>,
    /// The content, dot-unstuffed, ending with the CRLF before the final `.`.
    pub data: Vec<u8>,
    /// Whether the session was under TLS when the message was accepted.
    pub tls: bool,
    /// The connection it came on, numbered from 1 in order of acceptance.
    pub session: u64,
    /// The name the client gave in its last EHLO/HELO.
    pub helo: String,
    /// The user the session logged in as.
    pub authenticated: Option<String>,
}

/// A scriptable SMTP server on 127.0.0.1; stops (and closes every connection) when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    script: Mutex<Script>,
    record: Mutex<Record>,
    /// Signalled whenever a message is recorded.
    arrived: Condvar,
    connections: AtomicU64,
    open: AtomicUsize,
    peak: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    tls_config: Arc<ServerConfig>,
}

struct Script {
    tls: bool,
    advertise_pipelining: bool,
    max_size: Option<usize>,
    login: Option<(String, String)>,
    default: Behaviour,
    recipients: HashMap<String, Behaviour>,
    on_connect: OnConnect,
    delay: Duration,
}

#[derive(Default)]
struct Record {
    received: Vec<Received>,
    /// Per session, the command lines grouped by the network read they arrived in.
    batches: HashMap<u64, Vec<Vec<String>>>,
    attempts: HashMap<String, usize>,
}

impl SmtpSink {
    /// Starts a sink with the default options: STARTTLS and PIPELINING offered, no size limit,
    /// every recipient accepted.
    pub fn start() -> Self {
        Self::start_with(SinkOptions::default())
    }

    /// Starts a sink with these options.
    pub fn start_with(options: SinkOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            script: Mutex::new(Script {
                tls: options.tls,
                advertise_pipelining: options.advertise_pipelining,
                max_size: options.max_size,
                login: options.login,
                default: Behaviour::Accept,
                recipients: HashMap::new(),
                on_connect: OnConnect::Greet,
                delay: Duration::ZERO,
            }),
            record: Mutex::new(Record::default()),
            arrived: Condvar::new(),
            connections: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            tls_config: tls_config(),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("test-smtp-sink".into())
                .spawn(move || accept_loop(listener, &shared))
                .unwrap()
        };
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where the sink listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The DER certificate STARTTLS presents (self-signed, for `localhost` and `127.0.0.1`), for
    /// a client that should trust it rather than accept any certificate.
    pub fn certificate_der() -> Vec<u8> {
        tls_material().0.to_vec()
    }

    /// Offers STARTTLS (or stops offering it) from the next EHLO on.
    pub fn set_tls(&self, tls: bool) {
        self.script().tls = tls;
    }

    /// How every recipient without a script of its own is treated (initially `Accept`).
    pub fn set_default(&self, behaviour: Behaviour) {
        self.script().default = behaviour;
    }

    /// How `rcpt` is treated from now on (addresses compare ignoring ASCII case).
    pub fn set_behaviour(&self, rcpt: &str, behaviour: Behaviour) {
        self.script().recipients.insert(key(rcpt), behaviour);
    }

    /// Forgets every per-recipient script; the default stays.
    pub fn clear_behaviours(&self) {
        self.script().recipients.clear();
    }

    /// What happens to new connections before the first command.
    pub fn set_on_connect(&self, on_connect: OnConnect) {
        self.script().on_connect = on_connect;
    }

    /// A pause before answering the end of every message, so deliveries overlap.
    pub fn set_delay(&self, delay: Duration) {
        self.script().delay = delay;
    }

    /// The messages accepted so far, in order of acceptance.
    pub fn received(&self) -> Vec<Received> {
        self.record().received.clone()
    }

    /// Waits until at least `count` messages were accepted, or `timeout` passed, and returns
    /// all accepted so far (fewer than `count` after a timeout).
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut record = self.record();
        loop {
            let now = Instant::now();
            if record.received.len() >= count || now >= deadline {
                return record.received.clone();
            }
            record = self
                .shared
                .arrived
                .wait_timeout(record, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Connections accepted so far; sessions are numbered `1..=connections()`.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// The most connections that were open at the same time.
    pub fn max_concurrent_connections(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// How many `RCPT TO` for this address were seen (whatever the answer).
    pub fn attempts_for(&self, rcpt: &str) -> usize {
        self.record().attempts.get(&key(rcpt)).copied().unwrap_or(0)
    }

    /// Every command line of a session, as received without its CRLF (message content is not
    /// included; `DATA` is).
    pub fn commands(&self, session: u64) -> Vec<String> {
        self.batches(session).into_iter().flatten().collect()
    }

    /// A session's command lines grouped by the network read they arrived in: a pipelining
    /// client's `MAIL`, `RCPT`s and `DATA` come as one group, a lock-step client's one by one.
    pub fn batches(&self, session: u64) -> Vec<Vec<String>> {
        self.record()
            .batches
            .get(&session)
            .cloned()
            .unwrap_or_default()
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap()
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.shared.record.lock().unwrap()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor from its blocking accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Addresses compare ignoring ASCII case and angle brackets.
fn key(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

/// One self-signed certificate and key for every sink of the run.
fn tls_material() -> &'static (CertificateDer<'static>, Vec<u8>) {
    static MATERIAL: OnceLock<(CertificateDer<'static>, Vec<u8>)> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        (
            generated.cert.der().clone(),
            generated.key_pair.serialize_der(),
        )
    })
}

fn tls_config() -> Arc<ServerConfig> {
    let (cert, key) = tls_material();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
    Arc::new(config)
}

fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let session = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        // Counted here, before the connection is served, so a client that saw the greeting of
        // two connections always finds both counted.
        let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(open, Ordering::SeqCst);
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("test-smtp-sink-{session}"))
                .spawn(move || {
                    let mut connection = Connection::new(stream, session, &shared);
                    connection.serve();
                    connection.close();
                })
                .unwrap()
        };
        let mut threads = shared.threads.lock().unwrap();
        threads.retain(|thread| !thread.is_finished());
        threads.push(thread);
    }
}

/// The socket of a session, before or after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    Closed,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Plain(tcp) => Some(tcp),
            Self::Tls(tls) => Some(tls.get_ref()),
            Self::Closed => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.read(buf),
            Self::Tls(tls) => tls.read(buf),
            Self::Closed => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.write(buf),
            Self::Tls(tls) => tls.write(buf),
            Self::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.flush(),
            Self::Tls(tls) => tls.flush(),
            Self::Closed => Ok(()),
        }
    }
}

/// Why serving a session ended early.
enum End {
    /// The client hung up, the socket failed, or the sink is stopping.
    Gone,
    /// The script (or QUIT) closes the connection.
    Close,
}

/// What the session is reading.
enum Mode {
    Commands,
    /// Message content, until CRLF.CRLF.
    Data,
    /// AUTH LOGIN: the base64 user name is next, or (with it) the password.
    AuthLogin(Option<String>),
}

/// The transaction in progress.
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    mail_params: Vec<String>,
    /// Accepted recipients with the attempt number of their RCPT.
    rcpts: Vec<(String, usize)>,
}

struct Connection<'a> {
    stream: Stream,
    session: u64,
    shared: &'a Shared,
    /// Whether this connection still counts as open.
    counted: bool,
    pending: Vec<u8>,
    mode: Mode,
    helo: Option<String>,
    authenticated: Option<String>,
    transaction: Transaction,
    messages: u64,
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, session: u64, shared: &'a Shared) -> Self {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(POLL));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        Self {
            stream: Stream::Plain(stream),
            session,
            shared,
            counted: true,
            pending: Vec::new(),
            mode: Mode::Commands,
            helo: None,
            authenticated: None,
            transaction: Transaction::default(),
            messages: 0,
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap()
    }

    /// Stops counting this connection as open. Done before the last reply (221 to QUIT) is
    /// written, so a client that waits for it and reconnects is never seen with both open.
    fn release(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.shared.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn close(&mut self) {
        self.release();
        if let Stream::Tls(tls) = &mut self.stream {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        if let Some(tcp) = self.stream.tcp() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
        self.stream = Stream::Closed;
    }

    fn serve(&mut self) {
        let on_connect = self.script().on_connect.clone();
        match on_connect {
            OnConnect::Greet => {}
            OnConnect::Refuse(line) => {
                self.release();
                let _ = self.reply(&line);
                return;
            }
            OnConnect::Stall => return self.stall(),
            OnConnect::Drop => return,
        }
        if self
            .reply(&format!("220 {HOSTNAME} ESMTP sluice test sink"))
            .is_err()
        {
            return;
        }
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if self.stopping() {
                return;
            }
            match self.stream.read(&mut buffer) {
                Ok(0) => return,
                Ok(len) => self.pending.extend_from_slice(&buffer[..len]),
                Err(error) if is_timeout(&error) => continue,
                Err(_) => return,
            }
            let mut batch = Vec::new();
            let result = self.process(&mut batch);
            if !batch.is_empty() {
                let mut record = self.shared.record.lock().unwrap();
                record.batches.entry(self.session).or_default().push(batch);
            }
            if result.is_err() {
                return;
            }
        }
    }

    /// Serves everything complete in `pending`, noting each command line in `batch`.
    fn process(&mut self, batch: &mut Vec<String>) -> Result<(), End> {
        loop {
            match self.mode {
                Mode::Commands => {
                    let Some(end) = self.pending.iter().position(|&b| b == b'\n') else {
                        if self.pending.len() > MAX_LINE {
                            let _ = self.reply("500 5.5.6 line too long");
                            return Err(End::Close);
                        }
                        return Ok(());
                    };
                    let raw: Vec<u8> = self.pending.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&raw)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    batch.push(line.clone());
                    self.command(&line)?;
                }
                Mode::AuthLogin(_) => {
                    let Some(end) = self.pending.iter().position(|&b| b == b'\n') else {
                        return Ok(());
                    };
                    let raw: Vec<u8> = self.pending.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&raw)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    batch.push("<auth response>".into());
                    self.auth_login_step(&line)?;
                }
                Mode::Data => {
                    let Some((content, consumed)) = find_data_end(&self.pending) else {
                        return Ok(());
                    };
                    let content = unstuff(&self.pending[..content]);
                    self.pending.drain(..consumed);
                    self.mode = Mode::Commands;
                    self.data_end(content)?;
                }
            }
        }
    }

    fn command(&mut self, line: &str) -> Result<(), End> {
        let (verb, argument) = match line.split_once(' ') {
            Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.trim()),
            None => (line.trim().to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if argument.is_empty() {
                    return self.reply("501 5.5.4 a domain or address is required");
                }
                self.helo = Some(argument.to_string());
                self.transaction = Transaction::default();
                if verb == "HELO" {
                    return self.reply(&format!("250 {HOSTNAME}"));
                }
                let lines = self.ehlo_lines(argument);
                self.reply_multi(&lines)
            }
            "MAIL" => self.mail(argument),
            "AUTH" => self.auth(argument),
            "RCPT" => self.rcpt(argument),
            "DATA" => {
                if self.transaction.mail_from.is_none() {
                    self.reply("503 5.5.1 MAIL first")
                } else if self.transaction.rcpts.is_empty() {
                    self.reply("554 5.5.1 no valid recipients")
                } else {
                    self.mode = Mode::Data;
                    self.reply("354 end data with <CR><LF>.<CR><LF>")
                }
            }
            "RSET" => {
                self.transaction = Transaction::default();
                self.reply("250 2.0.0 flushed")
            }
            "NOOP" => self.reply("250 2.0.0 ok"),
            "QUIT" => {
                self.release();
                let _ = self.reply("221 2.0.0 bye");
                Err(End::Close)
            }
            "STARTTLS" => self.starttls(),
            "VRFY" => self.reply("252 2.5.0 cannot verify, will try delivery"),
            _ => self.reply("500 5.5.2 command not recognised"),
        }
    }

    fn ehlo_lines(&self, client: &str) -> Vec<String> {
        let script = self.script();
        let mut lines = vec![format!("{HOSTNAME} greets {client}")];
        if script.advertise_pipelining {
            lines.push("PIPELINING".into());
        }
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push(format!("SIZE {}", script.max_size.unwrap_or(0)));
        lines.push("ENHANCEDSTATUSCODES".into());
        if script.tls && !matches!(self.stream, Stream::Tls(_)) {
            lines.push("STARTTLS".into());
        }
        if script.login.is_some() && matches!(self.stream, Stream::Tls(_)) {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines
    }

    fn mail(&mut self, argument: &str) -> Result<(), End> {
        if self.helo.is_none() {
            return self.reply("503 5.5.1 EHLO or HELO first");
        }
        if self.transaction.mail_from.is_some() {
            return self.reply("503 5.5.1 nested MAIL command");
        }
        if self.script().login.is_some() && self.authenticated.is_none() {
            return self.reply("530 5.7.0 authentication required");
        }
        let Some((path, params)) = path_argument(argument, "FROM:") else {
            return self.reply("501 5.5.4 syntax: MAIL FROM:<address>");
        };
        let max_size = self.script().max_size;
        for param in &params {
            let Some(size) = strip_prefix_ignore_case(param, "SIZE=") else {
                continue;
            };
            let Ok(size) = size.parse::<usize>() else {
                return self.reply("501 5.5.4 bad SIZE parameter");
            };
            if max_size.is_some_and(|max| size > max) {
                return self.reply("552 5.3.4 message size exceeds fixed maximum message size");
            }
        }
        self.transaction.mail_from = Some(path);
        self.transaction.mail_params = params;
        self.reply("250 2.1.0 sender ok")
    }

    fn rcpt(&mut self, argument: &str) -> Result<(), End> {
        if self.transaction.mail_from.is_none() {
            return self.reply("503 5.5.1 MAIL first");
        }
        let Some((path, _params)) = path_argument(argument, "TO:") else {
            return self.reply("501 5.5.4 syntax: RCPT TO:<address>");
        };
        if path.is_empty() {
            return self.reply("501 5.1.3 empty recipient");
        }
        let attempt = {
            let mut record = self.shared.record.lock().unwrap();
            let attempts = record.attempts.entry(key(&path)).or_default();
            *attempts += 1;
            *attempts
        };
        match self.behaviour(&path) {
            Behaviour::TempFail {
                at: Stage::Rcpt,
                reply,
            }
            | Behaviour::PermFail {
                at: Stage::Rcpt,
                reply,
            } => self.reply(&reply),
            Behaviour::TempFailThenAccept {
                at: Stage::Rcpt,
                times,
            } if attempt <= times => self.reply(TEMP_FAIL_REPLY),
            Behaviour::DropOnRcpt => Err(End::Close),
            Behaviour::Stall { at: Stage::Rcpt } => {
                self.stall();
                Err(End::Gone)
            }
            _ => {
                self.transaction.rcpts.push((path, attempt));
                self.reply("250 2.1.5 recipient ok")
            }
        }
    }

    /// Answers the end of a message: the first recipient (in RCPT order) whose script acts at
    /// this stage decides; with none, the message is accepted.
    fn data_end(&mut self, content: Vec<u8>) -> Result<(), End> {
        let transaction = std::mem::take(&mut self.transaction);
        let (delay, max_size) = {
            let script = self.script();
            (script.delay, script.max_size)
        };
        self.sleep(delay)?;
        let mut verdict = None;
        for (rcpt, attempt) in &transaction.rcpts {
            verdict = match self.behaviour(rcpt) {
                Behaviour::TempFail {
                    at: Stage::Data,
                    reply,
                }
                | Behaviour::PermFail {
                    at: Stage::Data,
                    reply,
                } => Some(Ok(reply)),
                Behaviour::TempFailThenAccept {
                    at: Stage::Data,
                    times,
                } if *attempt <= times => Some(Ok(TEMP_FAIL_REPLY.to_string())),
                Behaviour::DropAfterData => Some(Err(End::Close)),
                Behaviour::Stall { at: Stage::Data } => {
                    self.stall();
                    Some(Err(End::Gone))
                }
                _ => None,
            };
            if verdict.is_some() {
                break;
            }
        }
        match verdict {
            Some(Ok(reply)) => return self.reply(&reply),
            Some(Err(end)) => return Err(end),
            None => {}
        }
        if max_size.is_some_and(|max| content.len() > max) {
            return self.reply("552 5.3.4 message size exceeds fixed maximum message size");
        }
        self.messages += 1;
        let received = Received {
            mail_from: transaction.mail_from.unwrap_or_default(),
            mail_params: transaction.mail_params,
            rcpt_to: transaction
                .rcpts
                .into_iter()
                .map(|(rcpt, _)| rcpt)
                .collect(),
            data: content,
            tls: matches!(self.stream, Stream::Tls(_)),
            session: self.session,
            helo: self.helo.clone().unwrap_or_default(),
            authenticated: self.authenticated.clone(),
        };
        // Recorded before the reply, so a client that saw 250 finds the message recorded.
        self.shared.record.lock().unwrap().received.push(received);
        self.shared.arrived.notify_all();
        self.reply(&format!(
            "250 2.0.0 ok: queued as {}.{}",
            self.session, self.messages
        ))
    }

    fn starttls(&mut self) -> Result<(), End> {
        if matches!(self.stream, Stream::Tls(_)) {
            return self.reply("503 5.5.1 TLS already active");
        }
        if !self.script().tls {
            return self.reply("502 5.5.1 STARTTLS not offered");
        }
        self.reply("220 2.0.0 ready to start TLS")?;
        // Anything pipelined after STARTTLS was sent in clear text and must not count as sent
        // under TLS (RFC 3207 §4.2).
        self.pending.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(End::Gone);
        };
        let Ok(connection) = ServerConnection::new(self.shared.tls_config.clone()) else {
            return Err(End::Gone);
        };
        self.stream = Stream::Tls(Box::new(StreamOwned::new(connection, tcp)));
        // The session starts over: the client must say EHLO again.
        self.helo = None;
        self.authenticated = None;
        self.transaction = Transaction::default();
        // Returning ends this read's batch; the handshake runs within the next reads.
        Ok(())
    }

    /// AUTH PLAIN (with its initial response or after a 334) or AUTH LOGIN.
    fn auth(&mut self, argument: &str) -> Result<(), End> {
        let login = self.script().login.clone();
        if login.is_none() || !matches!(self.stream, Stream::Tls(_)) {
            return self.reply("503 5.5.1 AUTH not offered");
        }
        if self.authenticated.is_some() {
            return self.reply("503 5.5.1 already authenticated");
        }
        let mut words = argument.split_whitespace();
        let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
        match mechanism.as_str() {
            "PLAIN" => {
                let Some(initial) = words.next() else {
                    return self.reply("501 5.5.2 this sink wants the initial response");
                };
                let decoded = BASE64.decode(initial).unwrap_or_default();
                let mut parts = decoded.split(|&b| b == 0).map(String::from_utf8_lossy);
                let (_authzid, user, password) = (parts.next(), parts.next(), parts.next());
                let user = user.unwrap_or_default().to_string();
                let password = password.unwrap_or_default().to_string();
                self.finish_login(user, &password)
            }
            "LOGIN" => {
                self.mode = Mode::AuthLogin(None);
                self.reply(&format!("334 {}", BASE64.encode("Username:")))
            }
            _ => self.reply("504 5.5.4 unrecognised authentication type"),
        }
    }

    fn auth_login_step(&mut self, line: &str) -> Result<(), End> {
        let decoded =
            String::from_utf8_lossy(&BASE64.decode(line.trim()).unwrap_or_default()).to_string();
        match std::mem::replace(&mut self.mode, Mode::Commands) {
            Mode::AuthLogin(None) => {
                self.mode = Mode::AuthLogin(Some(decoded));
                self.reply(&format!("334 {}", BASE64.encode("Password:")))
            }
            Mode::AuthLogin(Some(user)) => self.finish_login(user, &decoded),
            _ => Ok(()),
        }
    }

    fn finish_login(&mut self, user: String, password: &str) -> Result<(), End> {
        let matches = self
            .script()
            .login
            .as_ref()
            .is_some_and(|(want_user, want_password)| {
                *want_user == user && want_password == password
            });
        if matches {
            self.authenticated = Some(user);
            self.reply("235 2.7.0 authentication successful")
        } else {
            self.reply("535 5.7.8 authentication credentials invalid")
        }
    }

    /// The script for `rcpt`.
    fn behaviour(&self, rcpt: &str) -> Behaviour {
        let script = self.script();
        script
            .recipients
            .get(&key(rcpt))
            .unwrap_or(&script.default)
            .clone()
    }

    /// Answers nothing more, discarding input, until the client hangs up or the sink stops.
    fn stall(&mut self) {
        let mut buffer = [0u8; 4096];
        while !self.stopping() {
            match self.stream.read(&mut buffer) {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) if is_timeout(&error) => {}
                Err(_) => return,
            }
        }
    }

    /// Sleeps, ending early when the sink stops.
    fn sleep(&self, duration: Duration) -> Result<(), End> {
        let deadline = Instant::now() + duration;
        loop {
            if self.stopping() {
                return Err(End::Gone);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            std::thread::sleep((deadline - now).min(POLL));
        }
    }

    fn reply(&mut self, line: &str) -> Result<(), End> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes)
    }

    /// A multi-line 250 reply.
    fn reply_multi(&mut self, lines: &[String]) -> Result<(), End> {
        let mut bytes = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            let separator = if index + 1 == lines.len() { ' ' } else { '-' };
            bytes.extend_from_slice(format!("250{separator}{line}\r\n").as_bytes());
        }
        self.write(&bytes)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|_| End::Gone)
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Splits `FROM:<path> PARAM...` (or `TO:`) into the path without brackets and the parameters.
/// Tolerates a space after the colon and a path without brackets.
fn path_argument(argument: &str, keyword: &str) -> Option<(String, Vec<String>)> {
    let rest = strip_prefix_ignore_case(argument, keyword)?.trim_start();
    let (path, params) = if let Some(inner) = rest.strip_prefix('<') {
        let close = inner.find('>')?;
        (&inner[..close], &inner[close + 1..])
    } else {
        rest.split_once(' ').unwrap_or((rest, ""))
    };
    if path.contains(char::is_whitespace) {
        return None;
    }
    let params = params.split_whitespace().map(str::to_string).collect();
    Some((path.to_string(), params))
}

/// Where the content in `pending` ends: the length of the content (with its last CRLF) and of
/// everything up to and including the terminating `.CRLF`.
fn find_data_end(pending: &[u8]) -> Option<(usize, usize)> {
    if pending.starts_with(b".\r\n") {
        return Some((0, 3));
    }
    let at = pending.windows(5).position(|w| w == b"\r\n.\r\n")?;
    Some((at + 2, at + 5))
}

/// Removes the dot a client adds before every content line that starts with one.
fn unstuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut line_start = true;
    for &byte in content {
        if !(line_start && byte == b'.') {
            out.push(byte);
        }
        line_start = byte == b'\n';
    }
    out
}
