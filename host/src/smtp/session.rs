//! One SMTP connection: the command state machine (RFC 5321), with AUTH (RFC 4954),
//! STARTTLS (RFC 3207), PIPELINING (RFC 2920), SIZE (RFC 1870) and enhanced status codes
//! (RFC 3463) on every reply. The MX role shares it, without AUTH and with a check of each
//! recipient.

use std::net::SocketAddr;
use std::slice::Iter;
use std::sync::Arc;

use smtp_proto::request::receiver::{DataReceiver, LineReceiver, RequestReceiver};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::auth::{decode_line, decode_plain, login_refusal};
use super::memory::Reservation;
use super::{Role, Shared};
use crate::inbound::Inbound;
use crate::store::{CredentialKind, Source, verify_credential};
use crate::submit::{self, Submission, SubmitError};

/// Failed AUTH attempts on one connection before it is closed.
const MAX_AUTH_FAILURES_PER_CONNECTION: u32 = 3;

/// The longest command line taken (RFC 5321 allows 512 octets; extensions and AUTH PLAIN
/// with long secrets need more, so the cap is smtp-proto's own).
const MAX_COMMAND_LINE: usize = smtp_proto::request::receiver::MAX_LINE_LENGTH;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 << 10;

/// Memory a message's DATA starts with, taken from the shared budget when DATA is accepted.
const INITIAL_DATA_BYTES: usize = 64 << 10;

/// True when the buffered bytes hold a whole command line longer than the cap.
fn next_line_too_long(rest: &[u8]) -> bool {
    rest.iter()
        .position(|&b| b == b'\n')
        .is_some_and(|end| end > MAX_COMMAND_LINE)
}

/// Whether a HELO/EHLO name may be recorded: not empty and without control characters or
/// white space. Its syntax is otherwise not judged (clients send all sorts of names), but it
/// is written into the Received field, so nothing in it may end or bend that field.
fn is_helo_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// How a run over one stream ended.
enum Next<S> {
    Close,
    StartTls(S),
}

/// Why a message's bytes are read and dropped instead of kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Discard {
    /// Over the size limit.
    TooLarge,
    /// Over the memory budget of unfinished messages.
    NoMemory,
}

/// A message's DATA coming in.
struct Incoming {
    receiver: DataReceiver,
    body: Vec<u8>,
    /// The budget's bytes the body's memory is counted against; at least its capacity.
    reservation: Reservation,
    discard: Option<Discard>,
    /// When the whole DATA must be in, however its bytes trickle.
    deadline: Instant,
}

/// What the connection is reading now.
enum Mode {
    Command,
    Data(Incoming),
    AuthPlain(LineReceiver<()>),
    AuthLoginUsername(LineReceiver<()>),
    AuthLoginPassword(LineReceiver<()>, String),
}

/// What a command asks the loop to do next.
enum Flow {
    Continue,
    Close,
    StartTls,
}

struct Authenticated {
    source: Source,
    username: String,
    /// The hash of the password it logged in with: a changed password ends the session's
    /// sending as a deleted user does.
    secret_hash: String,
}

struct Session {
    peer: SocketAddr,
    shared: Shared,
    tls: bool,
    helo: Option<String>,
    auth: Option<Authenticated>,
    auth_failures: u32,
    sender: Option<String>,
    recipients: Vec<String>,
    out: Vec<u8>,
}

/// Serves one connection until QUIT, a timeout or an error.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Shared,
) -> std::io::Result<()> {
    let mut session = Session {
        peer,
        shared,
        tls: false,
        helo: None,
        auth: None,
        auth_failures: 0,
        sender: None,
        recipients: Vec::new(),
        out: Vec::new(),
    };
    let greeting = format!("220 {} ESMTP Sluice\r\n", session.shared.config.hostname);
    let mut stream = stream;
    stream.write_all(greeting.as_bytes()).await?;
    match session.run(stream).await? {
        Next::Close => Ok(()),
        Next::StartTls(stream) => {
            let handshake = session.shared.tls.accept(stream);
            let tls = tokio::time::timeout(session.shared.config.command_timeout(), handshake)
                .await
                .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
            // RFC 3207: forget everything learned before TLS.
            session.tls = true;
            session.helo = None;
            session.auth = None;
            session.reset_transaction();
            match session.run(tls).await? {
                Next::Close | Next::StartTls(_) => Ok(()),
            }
        }
    }
}

impl Session {
    fn reply(&mut self, code: u16, enhanced: &str, text: &str) {
        self.out
            .extend_from_slice(format!("{code} {enhanced} {text}\r\n").as_bytes());
    }

    fn reset_transaction(&mut self) {
        self.sender = None;
        self.recipients.clear();
    }

    fn size_limit(&self) -> usize {
        let server = self.shared.config.max_message_bytes;
        self.auth
            .as_ref()
            .map_or(server, |auth| auth.source.max_message_bytes.min(server))
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut stream: S,
    ) -> std::io::Result<Next<S>> {
        let mut requests = RequestReceiver::default();
        let mut mode = Mode::Command;
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let (timeout, data_deadline) = match &mode {
                Mode::Data(incoming) => {
                    let left = incoming.deadline.saturating_duration_since(Instant::now());
                    (
                        self.shared.config.data_timeout().min(left),
                        Some(incoming.deadline),
                    )
                }
                _ => (self.shared.config.command_timeout(), None),
            };
            let read = match tokio::time::timeout(timeout, stream.read(&mut chunk)).await {
                // A steady trickle never lets a read time out: the whole DATA has a deadline.
                Ok(_) if data_deadline.is_some_and(|deadline| Instant::now() >= deadline) => None,
                Ok(read) => Some(read?),
                Err(_) => None,
            };
            let Some(read) = read else {
                if data_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    tracing::debug!(peer = %self.peer, "DATA took too long");
                    self.reply(421, "4.4.2", "DATA took too long, closing connection");
                } else {
                    self.reply(421, "4.4.2", "Timeout, closing connection");
                }
                stream.write_all(&self.out).await?;
                return Ok(Next::Close);
            };
            if read == 0 {
                return Ok(Next::Close);
            }
            let mut bytes = chunk[..read].iter();
            loop {
                let flow = match &mut mode {
                    Mode::Command if next_line_too_long(bytes.as_slice()) => {
                        let rest = bytes.as_slice();
                        let end = rest
                            .iter()
                            .position(|&b| b == b'\n')
                            .map_or(rest.len(), |at| at + 1);
                        bytes = rest[end..].iter();
                        self.reply(500, "5.5.6", "Line too long");
                        Flow::Continue
                    }
                    Mode::Command => match requests.ingest(&mut bytes) {
                        Ok(request) => {
                            let request = request.into_owned();
                            self.command(request, &mut mode).await
                        }
                        Err(ParseError::NeedsMoreData { .. }) => break,
                        // Its chunk's length is unknown, so where the next command starts is
                        // too.
                        Err(ParseError::SyntaxError { syntax }) if syntax.starts_with("BDAT") => {
                            self.refuse_bdat()
                        }
                        Err(error) => {
                            self.parse_error(error);
                            Flow::Continue
                        }
                    },
                    Mode::Data(incoming) => {
                        if !self.ingest_data(incoming, &mut bytes) {
                            break;
                        }
                        let Mode::Data(incoming) = std::mem::replace(&mut mode, Mode::Command)
                        else {
                            unreachable!("reading DATA");
                        };
                        let Incoming {
                            body,
                            discard,
                            reservation,
                            ..
                        } = incoming;
                        self.end_of_data(body, discard).await;
                        // Held until the message is spooled or refused.
                        drop(reservation);
                        Flow::Continue
                    }
                    Mode::AuthPlain(line) => {
                        if !line.ingest(&mut bytes) {
                            break;
                        }
                        let text = String::from_utf8_lossy(&line.buf).into_owned();
                        mode = Mode::Command;
                        if text.trim() == "*" {
                            self.reply(501, "5.0.0", "Authentication cancelled");
                            Flow::Continue
                        } else {
                            self.auth_plain(&text).await
                        }
                    }
                    Mode::AuthLoginUsername(line) => {
                        if !line.ingest(&mut bytes) {
                            break;
                        }
                        let text = String::from_utf8_lossy(&line.buf).into_owned();
                        match decode_line(&text) {
                            Some(username) if text.trim() != "*" => {
                                self.out.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
                                mode = Mode::AuthLoginPassword(LineReceiver::default(), username);
                            }
                            _ => {
                                mode = Mode::Command;
                                self.reply(501, "5.5.2", "Authentication cancelled or not base64");
                            }
                        }
                        Flow::Continue
                    }
                    Mode::AuthLoginPassword(line, username) => {
                        if !line.ingest(&mut bytes) {
                            break;
                        }
                        let text = String::from_utf8_lossy(&line.buf).into_owned();
                        let username = std::mem::take(username);
                        mode = Mode::Command;
                        match decode_line(&text) {
                            Some(password) if text.trim() != "*" => {
                                self.authenticate(username, password).await
                            }
                            _ => {
                                self.reply(501, "5.5.2", "Authentication cancelled or not base64");
                                Flow::Continue
                            }
                        }
                    }
                };
                match flow {
                    Flow::Continue => {}
                    Flow::Close => {
                        stream.write_all(&self.out).await?;
                        stream.flush().await?;
                        return Ok(Next::Close);
                    }
                    Flow::StartTls => {
                        // Anything pipelined after STARTTLS is dropped (RFC 3207 section 4.2).
                        stream.write_all(&self.out).await?;
                        stream.flush().await?;
                        self.out.clear();
                        return Ok(Next::StartTls(stream));
                    }
                }
            }
            if !self.out.is_empty() {
                stream.write_all(&self.out).await?;
                stream.flush().await?;
                self.out.clear();
            }
        }
    }

    /// Takes the bytes of a DATA, keeping them while the size limit and the memory budget
    /// allow and dropping them after; true once the final dot was read.
    fn ingest_data(&self, incoming: &mut Incoming, bytes: &mut Iter<'_, u8>) -> bool {
        if incoming.discard.is_some() {
            return incoming.receiver.ingest(bytes, &mut Vec::new());
        }
        // Room for all this read may add, counted against the budget before it is used.
        let limit = self.size_limit();
        let needed = incoming.body.len() + bytes.len();
        if !make_room(incoming, needed, limit.saturating_add(2 * READ_CHUNK)) {
            tracing::info!(peer = %self.peer, "unfinished messages hold all the memory allowed");
            discard(incoming, Discard::NoMemory);
            return incoming.receiver.ingest(bytes, &mut Vec::new());
        }
        let done = incoming.receiver.ingest(bytes, &mut incoming.body);
        if incoming.body.len() > limit {
            discard(incoming, Discard::TooLarge);
        }
        done
    }

    /// Refuses a BDAT and closes: CHUNKING is not offered, and the chunk's bytes must never
    /// be read as commands.
    fn refuse_bdat(&mut self) -> Flow {
        self.reset_transaction();
        self.reply(
            421,
            "4.5.1",
            "BDAT is not offered here (no CHUNKING); closing connection",
        );
        Flow::Close
    }

    fn parse_error(&mut self, error: ParseError) {
        match error {
            ParseError::UnknownCommand => self.reply(500, "5.5.1", "Unknown command"),
            ParseError::ResponseTooLong => self.reply(500, "5.5.6", "Line too long"),
            ParseError::InvalidSenderAddress => {
                self.reply(501, "5.1.7", "Bad sender address syntax")
            }
            ParseError::InvalidRecipientAddress => {
                self.reply(501, "5.1.3", "Bad recipient address syntax")
            }
            ParseError::SyntaxError { syntax } => {
                self.reply(501, "5.5.2", &format!("Syntax: {syntax}"))
            }
            ParseError::InvalidParameter { param } => {
                self.reply(501, "5.5.4", &format!("Invalid parameter {param}"))
            }
            ParseError::UnsupportedParameter { param } => {
                self.reply(504, "5.5.4", &format!("Unsupported parameter {param}"))
            }
            _ => self.reply(500, "5.5.2", "Syntax error"),
        }
    }

    async fn command(&mut self, request: Request<String>, mode: &mut Mode) -> Flow {
        match request {
            Request::Ehlo { host } | Request::Helo { host } if !is_helo_name(&host) => {
                // The name goes into the Received field: a control character there would
                // break or forge it.
                self.reply(
                    501,
                    "5.5.2",
                    "Syntax: a domain or address literal, no control characters",
                );
                Flow::Continue
            }
            Request::Ehlo { host } => {
                self.helo = Some(host);
                self.reset_transaction();
                let config = &self.shared.config;
                let mut lines = vec![
                    config.hostname.clone(),
                    "PIPELINING".into(),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    format!("SIZE {}", config.max_message_bytes),
                    "ENHANCEDSTATUSCODES".into(),
                ];
                if !self.tls {
                    lines.push("STARTTLS".into());
                }
                if matches!(self.shared.role, Role::Submission { .. }) {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                let last = lines.len() - 1;
                for (index, line) in lines.iter().enumerate() {
                    let separator = if index == last { ' ' } else { '-' };
                    self.out
                        .extend_from_slice(format!("250{separator}{line}\r\n").as_bytes());
                }
                Flow::Continue
            }
            Request::Helo { host } => {
                self.helo = Some(host);
                self.reset_transaction();
                let hostname = self.shared.config.hostname.clone();
                self.out
                    .extend_from_slice(format!("250 {hostname}\r\n").as_bytes());
                Flow::Continue
            }
            Request::StartTls => {
                if self.tls {
                    self.reply(503, "5.5.1", "Already in TLS");
                    Flow::Continue
                } else {
                    self.reply(220, "2.0.0", "Ready to start TLS");
                    Flow::StartTls
                }
            }
            Request::Auth { .. } if matches!(self.shared.role, Role::Mx(_)) => {
                self.reply(502, "5.5.1", "AUTH not offered here");
                Flow::Continue
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response, mode).await,
            Request::Mail { from } => {
                let submission = matches!(self.shared.role, Role::Submission { .. });
                if self.helo.is_none() {
                    self.reply(503, "5.5.1", "Send EHLO first");
                } else if submission && self.auth.is_none() {
                    self.reply(530, "5.7.0", "Authentication required");
                } else if !self.tls && self.auth.as_ref().is_some_and(|a| a.source.require_tls) {
                    self.reply(530, "5.7.0", "Must issue a STARTTLS command first");
                } else if self.sender.is_some() {
                    self.reply(503, "5.5.1", "Nested MAIL command");
                } else if from.size > self.size_limit() {
                    self.reply(
                        552,
                        "5.3.4",
                        "Message size exceeds fixed maximum message size",
                    );
                } else {
                    self.sender = Some(from.address);
                    self.reply(250, "2.1.0", "Sender OK");
                }
                Flow::Continue
            }
            Request::Rcpt { to } => {
                if self.sender.is_none() {
                    self.reply(503, "5.5.1", "Need MAIL before RCPT");
                } else if self.recipients.len() >= self.shared.config.max_recipients {
                    self.reply(452, "4.5.3", "Too many recipients");
                } else if !to.address.contains('@') {
                    self.reply(501, "5.1.3", "Bad recipient address syntax");
                } else if let Role::Mx(inbound) = &self.shared.role
                    && !inbound.accepts(&to.address)
                {
                    self.reply(550, "5.7.1", "Relaying denied: not an address of this host");
                } else {
                    self.recipients.push(to.address);
                    self.reply(250, "2.1.5", "Recipient OK");
                }
                Flow::Continue
            }
            Request::Data => {
                if self.sender.is_none() || self.recipients.is_empty() {
                    self.reply(503, "5.5.1", "Need MAIL and RCPT before DATA");
                } else {
                    let mut reservation = self.shared.data_budget.reservation();
                    if !reservation.grow_to(INITIAL_DATA_BYTES) {
                        tracing::info!(peer = %self.peer, "unfinished messages hold all the memory allowed");
                        self.reset_transaction();
                        self.reply(452, "4.3.1", "Insufficient system storage, try again later");
                        return Flow::Continue;
                    }
                    self.out
                        .extend_from_slice(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
                    let mut body = Vec::with_capacity(INITIAL_DATA_BYTES);
                    body.extend_from_slice(self.received_header().as_bytes());
                    // The receiver recognises "." only after a CRLF; DATA's own line ended
                    // with one, so prime it, or a message starting with "." would be missed.
                    let mut receiver = DataReceiver::new();
                    receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
                    *mode = Mode::Data(Incoming {
                        receiver,
                        body,
                        reservation,
                        discard: None,
                        deadline: Instant::now() + self.shared.config.max_data_time(),
                    });
                }
                Flow::Continue
            }
            Request::Bdat { .. } => self.refuse_bdat(),
            Request::Rset => {
                self.reset_transaction();
                self.reply(250, "2.0.0", "Reset OK");
                Flow::Continue
            }
            Request::Noop { .. } => {
                self.reply(250, "2.0.0", "OK");
                Flow::Continue
            }
            Request::Quit => {
                self.reply(221, "2.0.0", "Bye");
                Flow::Close
            }
            Request::Vrfy { .. } => {
                self.reply(252, "2.5.0", "Cannot VRFY user, but will accept message");
                Flow::Continue
            }
            Request::Help { .. } => {
                let text = match self.shared.role {
                    Role::Submission { .. } => "See RFC 5321 and RFC 6409",
                    Role::Mx(_) => "See RFC 5321; this host takes returned mail only",
                };
                self.reply(214, "2.0.0", text);
                Flow::Continue
            }
            _ => {
                self.reply(502, "5.5.1", "Command not implemented");
                Flow::Continue
            }
        }
    }

    /// The trace field a server puts on top (RFC 5321 section 4.4; protocol names from
    /// RFC 3848).
    fn received_header(&self) -> String {
        let protocol = match (&self.shared.role, self.tls) {
            (Role::Submission { .. }, true) => "ESMTPSA",
            (Role::Submission { .. }, false) => "ESMTPA",
            (Role::Mx(_), true) => "ESMTPS",
            (Role::Mx(_), false) => "ESMTP",
        };
        format!(
            "Received: from {} ([{}])\r\n\tby {} (Sluice) with {protocol};\r\n\t{}\r\n",
            self.helo.as_deref().unwrap_or("unknown"),
            self.peer.ip(),
            self.shared.config.hostname,
            mail_builder::headers::date::Date::now().to_rfc822()
        )
    }

    async fn auth(&mut self, mechanism: u64, initial: String, mode: &mut Mode) -> Flow {
        let Some(failures) = self.shared.failures() else {
            self.reply(502, "5.5.1", "AUTH not offered here");
            return Flow::Continue;
        };
        if self.auth.is_some() {
            self.reply(503, "5.5.1", "Already authenticated");
            return Flow::Continue;
        }
        if self.sender.is_some() {
            self.reply(503, "5.5.1", "AUTH not allowed during a mail transaction");
            return Flow::Continue;
        }
        if failures.is_blocked(self.peer.ip()) {
            self.reply(
                421,
                "4.7.0",
                "Too many failed logins from your address, try later",
            );
            return Flow::Close;
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.out.extend_from_slice(b"334 \r\n");
                *mode = Mode::AuthPlain(LineReceiver::default());
                Flow::Continue
            }
            AUTH_PLAIN => self.auth_plain(&initial).await,
            AUTH_LOGIN if initial.is_empty() => {
                self.out.extend_from_slice(b"334 VXNlcm5hbWU6\r\n");
                *mode = Mode::AuthLoginUsername(LineReceiver::default());
                Flow::Continue
            }
            AUTH_LOGIN => match decode_line(&initial) {
                Some(username) => {
                    self.out.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
                    *mode = Mode::AuthLoginPassword(LineReceiver::default(), username);
                    Flow::Continue
                }
                None => {
                    self.reply(501, "5.5.2", "Not base64");
                    Flow::Continue
                }
            },
            _ => {
                self.reply(504, "5.5.4", "Mechanism not supported; use PLAIN or LOGIN");
                Flow::Continue
            }
        }
    }

    async fn auth_plain(&mut self, response: &str) -> Flow {
        match decode_plain(response) {
            Some((username, password)) => self.authenticate(username, password).await,
            None => {
                self.reply(501, "5.5.2", "Malformed PLAIN response");
                Flow::Continue
            }
        }
    }

    async fn authenticate(&mut self, username: String, password: String) -> Flow {
        let Some(failures) = self.shared.failures() else {
            self.reply(502, "5.5.1", "AUTH not offered here");
            return Flow::Continue;
        };
        let ip = self.peer.ip();
        let credential = match self.shared.store.credential(&username) {
            Ok(credential) => credential.filter(|c| c.kind == CredentialKind::Smtp),
            Err(error) => {
                tracing::error!(%error, "SMTP AUTH could not be checked");
                self.reply(454, "4.7.0", "Temporary authentication failure");
                return Flow::Continue;
            }
        };
        let source = match &credential {
            Some(credential) => match self.shared.store.source(credential.source_id) {
                Ok(source) => source,
                Err(error) => {
                    tracing::error!(%error, "SMTP AUTH could not be checked");
                    self.reply(454, "4.7.0", "Temporary authentication failure");
                    return Flow::Continue;
                }
            },
            None => None,
        };
        // An unknown user, an address outside the source's allowlist and a wrong password
        // get the same answer after the same work (a password check, against a dummy hash
        // for an unknown user), so the answer never tells which usernames exist; the log does.
        let refusal = login_refusal(credential.is_some(), source.as_ref(), ip);
        let source = source.filter(|_| refusal.is_none());
        let hash = credential.map(|credential| credential.secret_hash);
        // One check at a time per address, and none once the checks before it have used up
        // the address's failures (AUTH checked that before the secret arrived).
        let turn = failures.turn(ip).await;
        if failures.is_blocked(ip) {
            self.reply(
                421,
                "4.7.0",
                "Too many failed logins from your address, try later",
            );
            return Flow::Close;
        }
        let valid = verify_credential(password, hash.clone()).await;
        match source {
            Some(source) if valid => {
                if !self.tls && !source.allow_plain_auth {
                    self.reply(
                        538,
                        "5.7.11",
                        "Encryption required: use STARTTLS before AUTH",
                    );
                    return Flow::Continue;
                }
                failures.record_success(ip);
                tracing::debug!(%username, source = source.id, "SMTP AUTH succeeded");
                self.auth = Some(Authenticated {
                    source,
                    username,
                    secret_hash: hash.unwrap_or_default(),
                });
                self.reply(235, "2.7.0", "Authentication successful");
                Flow::Continue
            }
            _ => {
                let reason = refusal.unwrap_or("wrong password");
                tracing::info!(%username, %ip, reason, "SMTP AUTH refused");
                failures.record_failure(ip);
                drop(turn);
                self.auth_failures += 1;
                self.reply(535, "5.7.8", "Authentication credentials invalid");
                if self.auth_failures >= MAX_AUTH_FAILURES_PER_CONNECTION {
                    self.reply(421, "4.7.0", "Too many failed logins, closing connection");
                    return Flow::Close;
                }
                Flow::Continue
            }
        }
    }

    /// Keeps returned mail for the MX; 250 once it is stored, whatever it turns out to say.
    async fn returned(
        &mut self,
        inbound: &Inbound,
        sender: String,
        recipients: Vec<String>,
        body: Vec<u8>,
    ) {
        match inbound.receive(sender, recipients, self.peer, body).await {
            Ok(id) => self.reply(250, "2.0.0", &format!("Ok: received as {id}")),
            Err(error) => {
                tracing::error!(%error, "could not store returned mail");
                self.reply(
                    451,
                    "4.3.0",
                    "Temporary failure storing the message, try again",
                );
            }
        }
    }

    async fn end_of_data(&mut self, body: Vec<u8>, discard: Option<Discard>) {
        let sender = self.sender.take().unwrap_or_default();
        let recipients = std::mem::take(&mut self.recipients);
        match discard {
            Some(Discard::TooLarge) => {
                return self.reply(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                );
            }
            Some(Discard::NoMemory) => {
                return self.reply(452, "4.3.1", "Insufficient system storage, try again later");
            }
            None => {}
        }
        let pipeline = match &self.shared.role {
            Role::Submission { pipeline, .. } => pipeline.clone(),
            Role::Mx(inbound) => {
                let inbound = Arc::clone(inbound);
                return self.returned(&inbound, sender, recipients, body).await;
            }
        };
        let Some(auth) = self.auth.as_ref() else {
            self.reply(530, "5.7.0", "Authentication required");
            return;
        };
        // A session outlives its login: the user, its password or its source may have
        // changed since (see `Store::credential_still` for when a change is seen).
        let still = self.shared.store.credential_still(
            auth.source.account_id,
            &auth.username,
            |credential| {
                credential.kind == CredentialKind::Smtp
                    && credential.source_id == auth.source.id
                    && credential.secret_hash == auth.secret_hash
            },
        );
        match still {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(user = %auth.username, "SMTP user changed during its session");
                self.auth = None;
                self.reply(
                    530,
                    "5.7.0",
                    "Authentication required: this user was removed or its password changed",
                );
                return;
            }
            Err(error) => {
                tracing::error!(%error, "SMTP user could not be checked");
                self.reply(451, "4.3.0", "Temporary failure, try again");
                return;
            }
        }
        let submission = Submission {
            source: auth.source.clone(),
            over: "smtp",
            sender,
            recipients,
            content: body,
            data: None,
            flow_selector: None,
            tags: Vec::new(),
            schedule_at: None,
        };
        match submit::accept(&self.shared.store, &pipeline, submission).await {
            Ok(ids) => {
                tracing::debug!(user = %auth.username, count = ids.len(), "accepted over SMTP");
                self.reply(250, "2.0.0", &format!("Ok: queued as {}", ids.join(" ")));
            }
            Err(SubmitError::Malformed(error)) => {
                self.reply(554, "5.6.0", &format!("Message is malformed: {error}"))
            }
            Err(SubmitError::TooLarge { .. }) => self.reply(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ),
            Err(SubmitError::NoRecipients) => self.reply(554, "5.5.1", "No valid recipients"),
            Err(SubmitError::Store(error)) => {
                tracing::error!(%error, "could not spool a message");
                self.reply(
                    451,
                    "4.3.0",
                    "Temporary failure storing the message, try again",
                );
            }
        }
    }
}

/// Grows the body's memory to hold `needed` bytes, reserving it from the budget first:
/// doubling (up to `ceiling`) while the budget allows, else as much as is left.
fn make_room(incoming: &mut Incoming, needed: usize, ceiling: usize) -> bool {
    let body = &mut incoming.body;
    if needed <= body.capacity() && body.capacity() <= incoming.reservation.bytes() {
        return true;
    }
    let doubled = body.capacity().saturating_mul(2).min(ceiling);
    if !incoming.reservation.grow_between(needed, doubled) {
        return false;
    }
    let room = incoming.reservation.bytes().max(needed) - body.len();
    body.reserve_exact(room);
    true
}

/// Drops what was kept of a message and gives its memory back; the rest of it will be read
/// into nothing.
fn discard(incoming: &mut Incoming, why: Discard) {
    incoming.discard = Some(why);
    incoming.body = Vec::new();
    incoming.reservation.release();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_names_with_controls_or_spaces_are_refused() {
        for name in [
            "client.example",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "bücher.example",
        ] {
            assert!(is_helo_name(name), "{name}");
        }
        for name in ["", "a\0b", "a\tb", "a\u{1b}b", "a\u{7f}", "a\u{85}b", "a b"] {
            assert!(!is_helo_name(name), "{name:?}");
        }
    }
}
