//! The outbound SMTP client (RFC 5321): one session with one remote server, carrying one message
//! to one recipient per transaction, with STARTTLS, PIPELINING, SIZE, 8BITMIME and SMTPUTF8,
//! and AUTH (PLAIN or LOGIN, RFC 4954) for smart hosts.
//!
//! Every failure is a [`DeliveryFailure`] that says whether retrying can help, so the queue can
//! decide between a bounce and a later attempt without parsing text.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use smtp_proto::{
    EXT_8BIT_MIME, EXT_BINARY_MIME, EXT_CHUNKING, EXT_DSN, EXT_ENHANCED_STATUS_CODES,
    EXT_PIPELINING, EXT_REQUIRE_TLS, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Longest reply line accepted. RFC 5321 allows 512 bytes, but real servers send longer texts;
/// the cap only keeps a hostile server from growing our buffer without end.
const MAX_LINE: usize = 4096;
/// Most lines accepted in one reply, for the same reason.
const MAX_LINES: usize = 100;
/// Size of each write while sending the message, so the per-block timeout of RFC 5321
/// §4.5.3.2.6 means something for large messages.
const DATA_CHUNK: usize = 64 * 1024;
/// Longest a polite QUIT may hold up giving up on a session that already failed.
const QUIT_GRACE: Duration = Duration::from_secs(5);
/// Longest snippet of a failure kept for an event, so a chatty server cannot bloat the store.
const MAX_SNIPPET: usize = 2000;

/// How a session treats STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// Use STARTTLS when offered without checking the certificate (as MTAs do, since most
    /// mail servers' certificates would not verify); go on in plain text only when it is not
    /// offered or refused. A failed handshake is a (transient) failure, not a silent downgrade.
    #[default]
    Opportunistic,
    /// Fail unless the session could be encrypted (the certificate is still not verified).
    Require,
    /// Never use STARTTLS.
    Disabled,
    /// Fail unless the session is encrypted and the certificate verifies for the server's
    /// name against the public roots: for a smart host we hand credentials to.
    Verified,
}

impl TlsPolicy {
    fn requires_tls(self) -> bool {
        matches!(self, TlsPolicy::Require | TlsPolicy::Verified)
    }
}

/// A user name and password for AUTH.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    // The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Settings of outbound sessions: the name we give in EHLO, the timeouts, and TLS.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name given in EHLO/HELO; should be our host's name with matching reverse DNS.
    pub hostname: String,
    /// How long the TCP connection may take to open.
    pub connect_timeout: Duration,
    /// How long to wait for the 220 greeting.
    pub greeting_timeout: Duration,
    /// How long to wait for the reply to EHLO/HELO, and for STARTTLS with its handshake.
    pub ehlo_timeout: Duration,
    /// How long to wait for the reply to MAIL FROM (also used for RSET and QUIT).
    pub mail_timeout: Duration,
    /// How long to wait for the reply to RCPT TO.
    pub rcpt_timeout: Duration,
    /// How long to wait for the 354 reply to DATA.
    pub data_init_timeout: Duration,
    /// How long each block of the message may take to send.
    pub data_block_timeout: Duration,
    /// How long to wait for the final reply after the end of the message.
    pub data_end_timeout: Duration,
    /// How STARTTLS is used.
    pub tls: TlsPolicy,
    /// Log in after EHLO (only ever over TLS).
    pub credentials: Option<Credentials>,
}

impl Default for ClientConfig {
    /// The timeouts RFC 5321 §4.5.3.2 recommends; they are long because busy servers do
    /// take that long, and giving up early causes duplicate deliveries.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            hostname: "localhost".into(),
            connect_timeout: Duration::from_secs(30),
            greeting_timeout: minutes(5),
            ehlo_timeout: minutes(5),
            mail_timeout: minutes(5),
            rcpt_timeout: minutes(5),
            data_init_timeout: minutes(2),
            data_block_timeout: minutes(3),
            data_end_timeout: minutes(10),
            tls: TlsPolicy::default(),
            credentials: None,
        }
    }
}

impl ClientConfig {
    /// A default configuration that says `hostname` in EHLO.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            ..Self::default()
        }
    }

    /// Sets every timeout to `limit` (tests and impatient callers).
    pub fn with_all_timeouts(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self.greeting_timeout = limit;
        self.ehlo_timeout = limit;
        self.mail_timeout = limit;
        self.rcpt_timeout = limit;
        self.data_init_timeout = limit;
        self.data_block_timeout = limit;
        self.data_end_timeout = limit;
        self
    }

    /// Sets the TLS policy.
    pub fn with_tls(mut self, tls: TlsPolicy) -> Self {
        self.tls = tls;
        self
    }
}

/// The TLS parameters a session negotiated, for the delivery record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version, e.g. `TLSv1.3`.
    pub version: String,
    /// The cipher suite by its IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// The step of the dialogue at which something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Opening the TCP connection.
    Connect,
    /// Waiting for the server's 220 greeting.
    Greeting,
    /// EHLO, or HELO when EHLO was refused.
    Ehlo,
    /// The STARTTLS command and the TLS handshake.
    StartTls,
    /// AUTH, with its challenges.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// The DATA command and sending the message.
    Data,
    /// The final reply after the message; a timeout here means the message may have been
    /// accepted anyway (RFC 1047), so a retry risks a duplicate.
    DataEnd,
    /// RSET.
    Rset,
    /// QUIT.
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::DataEnd => "end of data",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
        })
    }
}

/// A server's reply: the code, the RFC 3463 enhanced status code when the first line has one,
/// and the text (lines joined with `\n`, without codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (class, subject, detail), e.g. `(5, 1, 1)`.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text of every line, joined with `\n`.
    pub text: String,
}

impl Reply {
    /// Parses a whole reply, one or more lines ending in CRLF or LF.
    pub fn parse(raw: &[u8]) -> Result<Reply, String> {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let mut parser = ReplyParser::default();
        let mut lines = raw.split(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let last = parser.push(line)?;
            match (last, lines.peek().is_some()) {
                (true, false) => return Ok(parser.finish()),
                (true, true) => return Err("text after the last line of the reply".into()),
                (false, _) => {}
            }
        }
        Err("the reply has no last line".into())
    }

    /// Whether the code is 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether the code is 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Whether the code is 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The lines of text.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n')
    }
}

impl fmt::Display for Reply {
    /// One line, e.g. `550 5.1.1 user unknown`, the lines of a multi-line reply joined by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some((class, subject, detail)) = self.enhanced {
            write!(f, " {class}.{subject}.{detail}")?;
        }
        for line in self.lines().filter(|line| !line.is_empty()) {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

/// Builds a reply line by line, checking each as it comes.
#[derive(Default)]
struct ReplyParser {
    code: Option<u16>,
    enhanced: Option<(u8, u16, u16)>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Takes one line without its line ending; true when it was the last line of the reply.
    fn push(&mut self, line: &[u8]) -> Result<bool, String> {
        if self.lines.len() >= MAX_LINES {
            return Err(format!("more than {MAX_LINES} lines in one reply"));
        }
        if line.len() > MAX_LINE {
            return Err(format!("a reply line longer than {MAX_LINE} bytes"));
        }
        let code = match line.get(..3) {
            Some(digits @ [b'2'..=b'5', b'0'..=b'9', b'0'..=b'9']) => digits
                .iter()
                .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0')),
            _ => return Err(format!("not a reply line: {:?}", printable(line))),
        };
        if self.code.is_some_and(|first| first != code) {
            return Err(format!(
                "reply code changes within a reply: {:?}",
                printable(line)
            ));
        }
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(format!("not a reply line: {:?}", printable(line))),
        };
        let mut text = printable(text);
        if self.code.is_none() {
            self.code = Some(code);
            if let Some((enhanced, rest)) = split_enhanced(&text, code) {
                self.enhanced = Some(enhanced);
                text = rest.to_string();
            }
        } else if let Some((enhanced, rest)) = split_enhanced(&text, code) {
            // Servers repeat the enhanced code on every line; it says nothing new.
            if Some(enhanced) == self.enhanced {
                text = rest.to_string();
            }
        }
        self.lines.push(text.trim_end().to_string());
        Ok(last)
    }

    fn finish(self) -> Reply {
        Reply {
            code: self.code.unwrap_or_default(),
            enhanced: self.enhanced,
            text: self.lines.join("\n"),
        }
    }
}

/// Splits an RFC 3463 status code (`class.subject.detail`, each 1–3 digits, the class matching
/// the reply's first digit) off the start of a reply text.
fn split_enhanced(text: &str, code: u16) -> Option<((u8, u16, u16), &str)> {
    let end = text.find(' ').unwrap_or(text.len());
    let mut parts = text[..end].split('.');
    let mut number = |max_digits: usize| -> Option<u16> {
        let part = parts.next()?;
        let valid =
            (1..=max_digits).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| part.parse().ok()).flatten()
    };
    let class = number(1)?;
    let subject = number(3)?;
    let detail = number(3)?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || class != code / 100 {
        return None;
    }
    Some(((class as u8, subject, detail), text[end..].trim_start()))
}

/// Reply text as a string fit for logs and events: invalid UTF-8 and control characters
/// replaced, since the server controls these bytes.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Why a message could not be handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryFailure {
    /// The server answered with a failure (or an unexpected code) at a stage.
    #[error("{stage} rejected: {reply}")]
    Rejected {
        /// Where in the dialogue.
        stage: Stage,
        /// What the server said.
        reply: Reply,
    },
    /// The connection could not be opened, broke, or the server spoke nonsense; transient.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The server did not answer in time; transient.
    #[error("timed out at {stage}")]
    Timeout {
        /// Where in the dialogue.
        stage: Stage,
    },
    /// TLS could not be set up (or was required and not offered); transient.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The message cannot be sent to this server as it is (8-bit content without 8BITMIME,
    /// too large for its SIZE, an unusable address); permanent.
    #[error("cannot send: {0}")]
    Unsupported(String),
}

impl DeliveryFailure {
    /// Whether retrying later cannot help: a 5xx reply, or a message the server cannot take.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliveryFailure::Rejected { reply, .. } => reply.is_permanent(),
            DeliveryFailure::Unsupported(_) => true,
            DeliveryFailure::Connection(_)
            | DeliveryFailure::Timeout { .. }
            | DeliveryFailure::Tls(_) => false,
        }
    }

    /// The stage, when the failure happened at a known one.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            DeliveryFailure::Rejected { stage, .. } | DeliveryFailure::Timeout { stage } => {
                Some(*stage)
            }
            _ => None,
        }
    }

    /// The server's reply, when there is one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            DeliveryFailure::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// A one-line description for an event: the remote reply when there is one (capped at
    /// 2000 characters), else the failure itself.
    pub fn snippet(&self) -> String {
        let text = match self {
            DeliveryFailure::Rejected { reply, .. } => reply.to_string(),
            other => other.to_string(),
        };
        match text.char_indices().nth(MAX_SNIPPET) {
            Some((cut, _)) => text[..cut].to_string(),
            None => text,
        }
    }
}

/// Normalises line endings to CRLF, doubles a dot at the start of a line (RFC 5321 §4.5.2) and
/// makes sure the message ends with CRLF; the terminating `.` line is not included.
///
/// Bare CR and LF become CRLF because a lone one lets a message smuggle its own end-of-data
/// past servers that read lines differently, and RFC 5321 §2.3.8 forbids sending them anyway.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 2);
    let mut at_line_start = true;
    let mut bytes = message.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\r' => {
                bytes.next_if_eq(&b'\n');
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && byte == b'.' {
                    out.push(b'.');
                }
                out.push(byte);
                at_line_start = false;
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The connection, plain or after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// An open SMTP session with one server, ready for transactions after [`SmtpSession::connect`].
pub struct SmtpSession {
    /// None once the connection is closed or no longer trustworthy.
    stream: Option<Stream>,
    /// Bytes read but not yet consumed as reply lines.
    buffer: Vec<u8>,
    config: ClientConfig,
    peer: SocketAddr,
    server_name: String,
    greeting: Reply,
    ehlo: Option<Reply>,
    extensions: Vec<String>,
    capabilities: u32,
    size_limit: Option<u64>,
    tls: Option<TlsInfo>,
}

impl fmt::Debug for SmtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSession")
            .field("peer", &self.peer)
            .field("server_name", &self.server_name)
            .field("usable", &self.is_usable())
            .field("tls", &self.tls)
            .field("extensions", &self.extensions)
            .finish()
    }
}

impl SmtpSession {
    /// Connects to `addr` (the MX `server_name`, used for SNI and messages), reads the
    /// greeting, says EHLO (HELO when EHLO is refused) and sets up TLS as the policy says.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<SmtpSession, DeliveryFailure> {
        if config.hostname.is_empty()
            || config
                .hostname
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(DeliveryFailure::Unsupported(format!(
                "{:?} cannot be said in EHLO",
                config.hostname
            )));
        }
        let tcp = match timeout(config.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(DeliveryFailure::Timeout {
                    stage: Stage::Connect,
                });
            }
            Ok(Err(err)) => {
                return Err(DeliveryFailure::Connection(format!(
                    "cannot connect to {server_name} ({addr}): {err}"
                )));
            }
            Ok(Ok(tcp)) => tcp,
        };
        // Commands are small and we wait for their replies; Nagle would only add delay.
        let _ = tcp.set_nodelay(true);
        let mut session = SmtpSession {
            stream: Some(Stream::Plain(tcp)),
            buffer: Vec::new(),
            config: config.clone(),
            peer: addr,
            server_name: server_name.trim_end_matches('.').to_string(),
            greeting: Reply {
                code: 0,
                enhanced: None,
                text: String::new(),
            },
            ehlo: None,
            extensions: Vec::new(),
            capabilities: 0,
            size_limit: None,
            tls: None,
        };
        let greeting = session
            .read_reply(Stage::Greeting, config.greeting_timeout)
            .await?;
        if greeting.code != 220 {
            session.abandon().await;
            return Err(DeliveryFailure::Rejected {
                stage: Stage::Greeting,
                reply: greeting,
            });
        }
        session.greeting = greeting;
        session.hello().await?;
        if config.tls != TlsPolicy::Disabled {
            if session.has_extension(EXT_START_TLS) {
                session.start_tls().await?;
            } else if config.tls.requires_tls() {
                session.abandon().await;
                return Err(DeliveryFailure::Tls(format!(
                    "TLS is required but {} does not offer STARTTLS",
                    session.server_name
                )));
            }
        }
        if let Some(credentials) = &config.credentials {
            session.authenticate(credentials).await?;
        }
        tracing::debug!(
            server = %session.server_name,
            peer = %addr,
            tls = ?session.tls,
            "SMTP session open"
        );
        Ok(session)
    }

    /// The address connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The server's name as given to [`SmtpSession::connect`].
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The server's 220 greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// The (last) EHLO reply; None when the server only took HELO.
    pub fn ehlo_reply(&self) -> Option<&Reply> {
        self.ehlo.as_ref()
    }

    /// The extension lines of the EHLO reply, as the server sent them.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The recognised extensions as `smtp_proto::EXT_*` flags.
    pub fn capabilities(&self) -> u32 {
        self.capabilities
    }

    /// Whether the server offers an extension, by its `smtp_proto::EXT_*` flag.
    pub fn has_extension(&self, flag: u32) -> bool {
        self.capabilities & flag != 0
    }

    /// The server's SIZE limit in bytes; None when it announced none (or SIZE 0).
    pub fn size_limit(&self) -> Option<u64> {
        self.size_limit
    }

    /// The negotiated TLS version and cipher; None for a plain-text session.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Whether the session can carry another transaction: false once the connection broke,
    /// timed out, the server said 421, or the dialogue got out of step.
    pub fn is_usable(&self) -> bool {
        self.stream.is_some()
    }

    /// Sends one message from `mail_from` (empty for the null sender) to one recipient.
    /// Returns the server's final 2xx reply. After a rejected transaction the session is reset
    /// and stays usable when the connection is fine; check [`SmtpSession::is_usable`].
    pub async fn send(
        &mut self,
        mail_from: &str,
        rcpt_to: &str,
        message: &[u8],
    ) -> Result<Reply, DeliveryFailure> {
        if self.stream.is_none() {
            return Err(closed());
        }
        check_address(mail_from, "sender")?;
        check_address(rcpt_to, "recipient")?;
        if rcpt_to.is_empty() {
            return Err(DeliveryFailure::Unsupported("an empty recipient".into()));
        }
        let mut params = String::new();
        let body = dot_stuff(message);
        if self.has_extension(EXT_SIZE) {
            if let Some(limit) = self.size_limit
                && body.len() as u64 > limit
            {
                return Err(DeliveryFailure::Unsupported(format!(
                    "the message of {} bytes is over {}'s SIZE limit of {limit}",
                    body.len(),
                    self.server_name
                )));
            }
            params.push_str(&format!(" SIZE={}", body.len()));
        }
        if !message.is_ascii() {
            // Without 8BITMIME the server may strip the 8th bit; better to bounce clearly.
            if !self.has_extension(EXT_8BIT_MIME) {
                return Err(DeliveryFailure::Unsupported(format!(
                    "the message has 8-bit content and {} does not offer 8BITMIME",
                    self.server_name
                )));
            }
            params.push_str(" BODY=8BITMIME");
        }
        if !mail_from.is_ascii() || !rcpt_to.is_ascii() {
            if !self.has_extension(EXT_SMTP_UTF8) {
                return Err(DeliveryFailure::Unsupported(format!(
                    "a non-ASCII address needs SMTPUTF8, which {} does not offer",
                    self.server_name
                )));
            }
            params.push_str(" SMTPUTF8");
        }
        let mail = format!("MAIL FROM:<{mail_from}>{params}\r\n");
        let rcpt = format!("RCPT TO:<{rcpt_to}>\r\n");
        let result = if self.has_extension(EXT_PIPELINING) {
            self.transaction_pipelined(&mail, &rcpt, body).await
        } else {
            self.transaction_stepwise(&mail, &rcpt, body).await
        };
        match &result {
            Ok(reply) => {
                tracing::debug!(server = %self.server_name, %reply, "message accepted");
            }
            Err(failure) => {
                tracing::debug!(server = %self.server_name, %failure, "message not accepted");
            }
        }
        result
    }

    /// MAIL, RCPT and DATA in one write, then their three replies (RFC 2920).
    async fn transaction_pipelined(
        &mut self,
        mail: &str,
        rcpt: &str,
        body: Vec<u8>,
    ) -> Result<Reply, DeliveryFailure> {
        let group = format!("{mail}{rcpt}DATA\r\n");
        self.write(group.as_bytes(), Stage::MailFrom, self.config.mail_timeout)
            .await?;
        let mail_reply = self
            .read_reply(Stage::MailFrom, self.config.mail_timeout)
            .await?;
        let rcpt_reply = self
            .read_reply(Stage::RcptTo, self.config.rcpt_timeout)
            .await?;
        let data_reply = self
            .read_reply(Stage::Data, self.config.data_init_timeout)
            .await?;
        let rejection = if !mail_reply.is_positive() {
            Some((Stage::MailFrom, mail_reply))
        } else if !rcpt_reply.is_positive() {
            Some((Stage::RcptTo, rcpt_reply))
        } else {
            None
        };
        match (rejection, data_reply.code) {
            (None, 354) => self.send_body(body).await,
            (None, _) => self.reject(Stage::Data, data_reply).await,
            (Some((stage, reply)), 354) => {
                // The server took DATA although the transaction had failed: RFC 2920 says to
                // end the data at once; the server must refuse the empty message.
                self.write(b".\r\n", Stage::Data, self.config.data_block_timeout)
                    .await?;
                self.read_reply(Stage::DataEnd, self.config.data_end_timeout)
                    .await?;
                self.reject(stage, reply).await
            }
            (Some((stage, reply)), _) => self.reject(stage, reply).await,
        }
    }

    /// MAIL, RCPT and DATA one at a time, stopping at the first refusal.
    async fn transaction_stepwise(
        &mut self,
        mail: &str,
        rcpt: &str,
        body: Vec<u8>,
    ) -> Result<Reply, DeliveryFailure> {
        let steps = [
            (mail, Stage::MailFrom, self.config.mail_timeout),
            (rcpt, Stage::RcptTo, self.config.rcpt_timeout),
            ("DATA\r\n", Stage::Data, self.config.data_init_timeout),
        ];
        for (command, stage, limit) in steps {
            self.write(command.as_bytes(), stage, limit).await?;
            let reply = self.read_reply(stage, limit).await?;
            let expected = if stage == Stage::Data {
                reply.code == 354
            } else {
                reply.is_positive()
            };
            if !expected {
                return self.reject(stage, reply).await;
            }
        }
        self.send_body(body).await
    }

    /// Sends the stuffed message and the end-of-data line, and reads the final reply.
    async fn send_body(&mut self, mut body: Vec<u8>) -> Result<Reply, DeliveryFailure> {
        body.extend_from_slice(b".\r\n");
        for block in body.chunks(DATA_CHUNK) {
            self.write(block, Stage::Data, self.config.data_block_timeout)
                .await?;
        }
        let reply = self
            .read_reply(Stage::DataEnd, self.config.data_end_timeout)
            .await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            if reply.code == 421 {
                self.close();
            }
            // The transaction is over either way; no RSET needed.
            Err(DeliveryFailure::Rejected {
                stage: Stage::DataEnd,
                reply,
            })
        }
    }

    /// Ends a refused transaction: RSET so the session can carry the next one, or close it
    /// when the server said it is closing (421).
    async fn reject(&mut self, stage: Stage, reply: Reply) -> Result<Reply, DeliveryFailure> {
        if reply.code == 421 {
            self.close();
        } else if let Err(failure) = self.reset().await {
            tracing::debug!(server = %self.server_name, %failure, "RSET after a refusal failed");
        }
        Err(DeliveryFailure::Rejected { stage, reply })
    }

    /// Aborts any transaction (RSET). On any failure the session is closed.
    pub async fn reset(&mut self) -> Result<(), DeliveryFailure> {
        self.write(b"RSET\r\n", Stage::Rset, self.config.mail_timeout)
            .await?;
        let reply = self
            .read_reply(Stage::Rset, self.config.mail_timeout)
            .await?;
        if reply.is_positive() {
            Ok(())
        } else {
            self.close();
            Err(DeliveryFailure::Rejected {
                stage: Stage::Rset,
                reply,
            })
        }
    }

    /// Says QUIT, waits for the 221 and closes the connection. The outcome rarely matters:
    /// the messages are already delivered or not.
    pub async fn quit(mut self) -> Result<(), DeliveryFailure> {
        self.write(b"QUIT\r\n", Stage::Quit, self.config.mail_timeout)
            .await?;
        let reply = self.read_reply(Stage::Quit, self.config.mail_timeout).await;
        if let Some(mut stream) = self.stream.take() {
            // Lets TLS send close_notify; the server may already be gone, which is fine.
            let _ = timeout(QUIT_GRACE, stream.shutdown()).await;
        }
        let reply = reply?;
        if reply.code == 221 {
            Ok(())
        } else {
            Err(DeliveryFailure::Rejected {
                stage: Stage::Quit,
                reply,
            })
        }
    }

    /// EHLO, or HELO when the server refuses EHLO as unknown (5xx); records the extensions.
    async fn hello(&mut self) -> Result<(), DeliveryFailure> {
        let limit = self.config.ehlo_timeout;
        let ehlo = format!("EHLO {}\r\n", self.config.hostname);
        self.write(ehlo.as_bytes(), Stage::Ehlo, limit).await?;
        let reply = self.read_reply(Stage::Ehlo, limit).await?;
        self.extensions.clear();
        self.capabilities = 0;
        self.size_limit = None;
        self.ehlo = None;
        if reply.code == 250 {
            for line in reply.lines().skip(1) {
                let (flag, size) = parse_extension(line);
                self.capabilities |= flag;
                if flag == EXT_SIZE {
                    self.size_limit = size;
                }
                self.extensions.push(line.to_string());
            }
            self.ehlo = Some(reply);
            return Ok(());
        }
        if !reply.is_permanent() {
            return self.refuse_hello(reply).await;
        }
        let helo = format!("HELO {}\r\n", self.config.hostname);
        self.write(helo.as_bytes(), Stage::Ehlo, limit).await?;
        let reply = self.read_reply(Stage::Ehlo, limit).await?;
        if reply.code == 250 {
            Ok(())
        } else {
            self.refuse_hello(reply).await
        }
    }

    async fn refuse_hello(&mut self, reply: Reply) -> Result<(), DeliveryFailure> {
        self.abandon().await;
        Err(DeliveryFailure::Rejected {
            stage: Stage::Ehlo,
            reply,
        })
    }

    /// STARTTLS, the handshake, and EHLO again (RFC 3207: what was learnt before TLS is void).
    async fn start_tls(&mut self) -> Result<(), DeliveryFailure> {
        let limit = self.config.ehlo_timeout;
        let required = self.config.tls.requires_tls();
        self.write(b"STARTTLS\r\n", Stage::StartTls, limit).await?;
        let reply = self.read_reply(Stage::StartTls, limit).await?;
        if reply.code != 220 {
            if reply.code == 421 {
                self.close();
                return Err(DeliveryFailure::Rejected {
                    stage: Stage::StartTls,
                    reply,
                });
            }
            if required {
                self.abandon().await;
                return Err(DeliveryFailure::Tls(format!(
                    "TLS is required but {} refused STARTTLS: {reply}",
                    self.server_name
                )));
            }
            // The session is still in its pre-STARTTLS state (RFC 3207 §4), so carry on plain.
            tracing::info!(server = %self.server_name, %reply, "STARTTLS refused; going on without TLS");
            return Ok(());
        }
        let required_note = if required { " (TLS is required)" } else { "" };
        if !self.buffer.is_empty() {
            // Anything sent before the handshake was not protected by it and could have been
            // injected; the dialogue cannot be trusted (CVE-2011-0411 and kin).
            self.close();
            return Err(DeliveryFailure::Tls(format!(
                "{} sent data before the TLS handshake{required_note}",
                self.server_name
            )));
        }
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(DeliveryFailure::Tls("TLS is already on".into()));
        };
        let name = ServerName::try_from(self.server_name.clone())
            .unwrap_or_else(|_| ServerName::IpAddress(self.peer.ip().into()));
        let connector = TlsConnector::from(if self.config.tls == TlsPolicy::Verified {
            verified_tls_config()
        } else {
            tls_config()
        });
        let tls = match timeout(limit, connector.connect(name, tcp)).await {
            Err(_) => {
                return Err(DeliveryFailure::Timeout {
                    stage: Stage::StartTls,
                });
            }
            Ok(Err(err)) => {
                return Err(DeliveryFailure::Tls(format!(
                    "handshake with {} failed{required_note}: {err}",
                    self.server_name
                )));
            }
            Ok(Ok(tls)) => tls,
        };
        let (_, connection) = tls.get_ref();
        self.tls = Some(TlsInfo {
            version: match connection.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
                Some(other) => format!("{other:?}"),
                None => "unknown".into(),
            },
            cipher: connection
                .negotiated_cipher_suite()
                .map(|suite| {
                    let suite = suite.suite();
                    suite
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{suite:?}"))
                })
                .unwrap_or_else(|| "unknown".into()),
        });
        self.stream = Some(Stream::Tls(Box::new(tls)));
        self.hello().await
    }

    /// AUTH PLAIN, else AUTH LOGIN (RFC 4954), as the server offers them; only under TLS, so
    /// the password never crosses the network in clear.
    async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), DeliveryFailure> {
        if self.tls.is_none() {
            self.abandon().await;
            return Err(DeliveryFailure::Tls(format!(
                "{} did not set up TLS, so the credentials were not sent",
                self.server_name
            )));
        }
        let mechanisms: Vec<String> = self
            .extensions
            .iter()
            .filter_map(|line| {
                let (keyword, rest) = line.split_once([' ', '='])?;
                keyword.eq_ignore_ascii_case("AUTH").then_some(rest)
            })
            .flat_map(|rest| rest.split_whitespace().map(str::to_ascii_uppercase))
            .collect();
        let limit = self.config.mail_timeout;
        let reply = if mechanisms.iter().any(|m| m == "PLAIN") {
            let token = format!("\0{}\0{}", credentials.username, credentials.password);
            let command = format!("AUTH PLAIN {}\r\n", BASE64.encode(token));
            self.write(command.as_bytes(), Stage::Auth, limit).await?;
            self.read_reply(Stage::Auth, limit).await?
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            self.write(b"AUTH LOGIN\r\n", Stage::Auth, limit).await?;
            let mut reply = self.read_reply(Stage::Auth, limit).await?;
            for answer in [&credentials.username, &credentials.password] {
                if reply.code != 334 {
                    break;
                }
                let line = format!("{}\r\n", BASE64.encode(answer));
                self.write(line.as_bytes(), Stage::Auth, limit).await?;
                reply = self.read_reply(Stage::Auth, limit).await?;
            }
            reply
        } else {
            self.abandon().await;
            return Err(DeliveryFailure::Unsupported(format!(
                "{} offers neither AUTH PLAIN nor AUTH LOGIN",
                self.server_name
            )));
        };
        if reply.code == 235 {
            return Ok(());
        }
        self.abandon().await;
        Err(DeliveryFailure::Rejected {
            stage: Stage::Auth,
            reply,
        })
    }

    /// Writes (and flushes) bytes within `limit`; on failure the session is closed.
    async fn write(
        &mut self,
        bytes: &[u8],
        stage: Stage,
        limit: Duration,
    ) -> Result<(), DeliveryFailure> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(closed());
        };
        let sent = timeout(limit, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        let result = match sent {
            Err(_) => Err(DeliveryFailure::Timeout { stage }),
            Ok(Err(err)) => Err(DeliveryFailure::Connection(format!(
                "sending {stage} to {}: {err}",
                self.server_name
            ))),
            Ok(Ok(())) => Ok(()),
        };
        if result.is_err() {
            self.close();
        }
        result
    }

    /// Reads one whole reply within `limit`; on failure the session is closed, since a reply
    /// may be half read and the dialogue out of step.
    async fn read_reply(
        &mut self,
        stage: Stage,
        limit: Duration,
    ) -> Result<Reply, DeliveryFailure> {
        let result = match timeout(limit, self.read_reply_unbounded(stage)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryFailure::Timeout { stage }),
        };
        if result.is_err() {
            self.close();
        }
        result
    }

    async fn read_reply_unbounded(&mut self, stage: Stage) -> Result<Reply, DeliveryFailure> {
        let mut parser = ReplyParser::default();
        loop {
            let line = self.read_line(stage).await?;
            match parser.push(&line) {
                Ok(true) => return Ok(parser.finish()),
                Ok(false) => {}
                Err(err) => {
                    return Err(DeliveryFailure::Connection(format!(
                        "bad reply from {} at {stage}: {err}",
                        self.server_name
                    )));
                }
            }
        }
    }

    /// One line without its CRLF (or bare LF).
    async fn read_line(&mut self, stage: Stage) -> Result<Vec<u8>, DeliveryFailure> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buffer.len() > MAX_LINE {
                return Err(DeliveryFailure::Connection(format!(
                    "{} sent a reply line longer than {MAX_LINE} bytes at {stage}",
                    self.server_name
                )));
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(closed());
            };
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.map_err(|err| {
                DeliveryFailure::Connection(format!(
                    "reading from {} at {stage}: {err}",
                    self.server_name
                ))
            })?;
            if read == 0 {
                return Err(DeliveryFailure::Connection(format!(
                    "{} closed the connection at {stage}",
                    self.server_name
                )));
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Forgets the connection; the session is unusable from here on.
    fn close(&mut self) {
        self.stream = None;
        self.buffer.clear();
    }

    /// Says QUIT without waiting for the answer (RFC 5321 §3.8 asks for it even after a
    /// refusal) and closes.
    async fn abandon(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            let _ = timeout(QUIT_GRACE.min(self.config.mail_timeout), async {
                stream.write_all(b"QUIT\r\n").await?;
                stream.flush().await
            })
            .await;
        }
        self.close();
    }
}

fn closed() -> DeliveryFailure {
    DeliveryFailure::Connection("the session is closed".into())
}

/// Refuses addresses that would break the command line they go into.
fn check_address(address: &str, role: &str) -> Result<(), DeliveryFailure> {
    if address
        .chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | ' '))
    {
        return Err(DeliveryFailure::Unsupported(format!(
            "the {role} address {:?} cannot be sent",
            printable(address.as_bytes())
        )));
    }
    Ok(())
}

/// The `EXT_*` flag of one EHLO extension line (0 when unknown), with the SIZE limit if any.
fn parse_extension(line: &str) -> (u32, Option<u64>) {
    let mut words = line.split_whitespace();
    let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
    let flag = match keyword.as_str() {
        "PIPELINING" => EXT_PIPELINING,
        "STARTTLS" => EXT_START_TLS,
        "8BITMIME" => EXT_8BIT_MIME,
        "SMTPUTF8" => EXT_SMTP_UTF8,
        "SIZE" => EXT_SIZE,
        "ENHANCEDSTATUSCODES" => EXT_ENHANCED_STATUS_CODES,
        "CHUNKING" => EXT_CHUNKING,
        "BINARYMIME" => EXT_BINARY_MIME,
        "DSN" => EXT_DSN,
        "REQUIRETLS" => EXT_REQUIRE_TLS,
        _ => 0,
    };
    let size = if flag == EXT_SIZE {
        // SIZE without a number, or SIZE 0, means no fixed limit (RFC 1870).
        words
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0)
    } else {
        None
    };
    (flag, size)
}

/// The TLS settings of every session, built once.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// The TLS settings of sessions that check the certificate against the public roots.
fn verified_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate: opportunistic TLS between MTAs protects against passive
/// eavesdropping only, and most MX certificates would not verify against their MX name.
/// The handshake signatures are still checked, so the peer must hold the certificate's key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_reply_with_enhanced_code() {
        let reply = Reply::parse(b"550 5.1.1 user unknown\r\n").unwrap();
        assert_eq!(reply.code, 550);
        assert_eq!(reply.enhanced, Some((5, 1, 1)));
        assert_eq!(reply.text, "user unknown");
        assert_eq!(reply.to_string(), "550 5.1.1 user unknown");
        assert!(reply.is_permanent());
    }

    #[test]
    fn multi_line_reply_joins_lines_and_drops_repeated_codes() {
        let reply =
            Reply::parse(b"452-4.2.2 mailbox full\r\n452-4.2.2 try later\r\n452 4.2.2 bye\r\n")
                .unwrap();
        assert_eq!(reply.code, 452);
        assert_eq!(reply.enhanced, Some((4, 2, 2)));
        assert_eq!(reply.text, "mailbox full\ntry later\nbye");
        assert_eq!(reply.to_string(), "452 4.2.2 mailbox full try later bye");
        assert!(reply.is_transient());
    }

    #[test]
    fn bare_lf_and_bare_code_lines_are_tolerated() {
        let reply = Reply::parse(b"250-mx.example\n250-PIPELINING\n250\n").unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.enhanced, None);
        assert_eq!(reply.text, "mx.example\nPIPELINING\n");
        assert_eq!(reply.to_string(), "250 mx.example PIPELINING");
    }

    #[test]
    fn enhanced_code_must_be_well_formed_and_match_the_class() {
        type Case = (&'static [u8], Option<(u8, u16, u16)>, &'static str);
        let cases: &[Case] = &[
            (b"250 2.0.0 ok", Some((2, 0, 0)), "ok"),
            (b"550 5.7.123 blocked", Some((5, 7, 123)), "blocked"),
            (b"250 2.0.0", Some((2, 0, 0)), ""),
            (b"550 4.1.1 class differs", None, "4.1.1 class differs"),
            (b"550 5.1 too short", None, "5.1 too short"),
            (b"550 5.1.1.1 too long", None, "5.1.1.1 too long"),
            (
                b"550 5.1.1234 detail too long",
                None,
                "5.1.1234 detail too long",
            ),
            (b"550 5.a.1 not digits", None, "5.a.1 not digits"),
            (b"220 mx.example ESMTP", None, "mx.example ESMTP"),
        ];
        for (raw, enhanced, text) in cases {
            let reply = Reply::parse(raw).unwrap();
            assert_eq!(
                reply.enhanced,
                *enhanced,
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(reply.text, *text);
        }
    }

    #[test]
    fn malformed_replies_are_refused() {
        for raw in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"650 nope\r\n",
            b"250x no separator\r\n",
            b"250-first\r\n251 different code\r\n",
            b"250-never ends\r\n",
            b"250 one\r\n250 two\r\n",
        ] {
            assert!(
                Reply::parse(raw).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let long = format!("250 {}\r\n", "x".repeat(MAX_LINE));
        assert!(Reply::parse(long.as_bytes()).is_err());
        let many = "250-x\r\n".repeat(MAX_LINES) + "250 x\r\n";
        assert!(Reply::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn control_characters_do_not_reach_the_text() {
        let reply = Reply::parse(b"550 bad\x1b[31m\xff text\r\n").unwrap();
        assert!(!reply.text.chars().any(char::is_control));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b""), b"");
        assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n");
        assert_eq!(
            dot_stuff(b".start\r\nmid.dle\r\n.\r\n"),
            b"..start\r\nmid.dle\r\n..\r\n"
        );
        assert_eq!(dot_stuff(b"a\n.b\n"), b"a\r\n..b\r\n");
        assert_eq!(dot_stuff(b"a\r.b"), b"a\r\n..b\r\n");
        // A smuggled end of data behind a bare LF is stuffed like any other line.
        assert_eq!(
            dot_stuff(b"x\n.\r\nMAIL FROM:<e@vil>\r\n"),
            b"x\r\n..\r\nMAIL FROM:<e@vil>\r\n"
        );
    }

    #[test]
    fn extensions_are_recognised() {
        assert_eq!(parse_extension("PIPELINING"), (EXT_PIPELINING, None));
        assert_eq!(parse_extension("starttls"), (EXT_START_TLS, None));
        assert_eq!(parse_extension("SIZE 1000"), (EXT_SIZE, Some(1000)));
        assert_eq!(parse_extension("SIZE 0"), (EXT_SIZE, None));
        assert_eq!(parse_extension("SIZE"), (EXT_SIZE, None));
        assert_eq!(parse_extension("AUTH PLAIN"), (0, None));
    }

    #[test]
    fn permanence_and_snippets() {
        let reply = Reply::parse(b"550 5.1.1 user unknown").unwrap();
        let rejected = DeliveryFailure::Rejected {
            stage: Stage::RcptTo,
            reply,
        };
        assert!(rejected.is_permanent());
        assert_eq!(rejected.snippet(), "550 5.1.1 user unknown");
        assert_eq!(rejected.stage(), Some(Stage::RcptTo));
        let busy = DeliveryFailure::Rejected {
            stage: Stage::MailFrom,
            reply: Reply::parse(b"451 4.3.0 try again").unwrap(),
        };
        assert!(!busy.is_permanent());
        assert!(!DeliveryFailure::Timeout { stage: Stage::Data }.is_permanent());
        assert!(!DeliveryFailure::Connection("reset".into()).is_permanent());
        assert!(!DeliveryFailure::Tls("handshake".into()).is_permanent());
        assert!(DeliveryFailure::Unsupported("8-bit".into()).is_permanent());
        assert_eq!(
            DeliveryFailure::Timeout {
                stage: Stage::DataEnd
            }
            .snippet(),
            "timed out at end of data"
        );
    }
}
