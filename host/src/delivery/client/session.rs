//! The SMTP conversation with one server: greeting, EHLO (or HELO), STARTTLS, AUTH, then
//! MAIL/RCPT/DATA transactions, pipelined when offered, on one connection for as long as the
//! server keeps it usable.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use smtp_proto::{
    EXT_8BIT_MIME, EXT_BINARY_MIME, EXT_CHUNKING, EXT_DSN, EXT_ENHANCED_STATUS_CODES,
    EXT_PIPELINING, EXT_REQUIRE_TLS, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::failure::closed;
use super::reply::{MAX_LINE, ReadError, ReplyReader, printable};
use super::tls::{self, Stream, TlsInfo};
use super::{ClientConfig, Credentials, DeliveryFailure, Reply, Stage, TlsPolicy, dot_stuff};

/// Size of each write while sending the message, so the per-block timeout of RFC 5321
/// §4.5.3.2.6 means something for large messages.
const DATA_CHUNK: usize = 64 * 1024;
/// Longest a polite QUIT may hold up giving up on a session that already failed.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// An open SMTP session with one server, ready for transactions after [`SmtpSession::connect`].
pub struct SmtpSession {
    /// None once the connection is closed or no longer trustworthy.
    stream: Option<Stream>,
    reader: ReplyReader,
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
            reader: ReplyReader::default(),
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
        if self.reader.has_buffered() {
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
        let handshake = tls::handshake(tcp, &self.server_name, self.peer.ip(), self.config.tls);
        let (stream, info) = match timeout(limit, handshake).await {
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
            Ok(Ok(done)) => done,
        };
        self.tls = Some(info);
        self.stream = Some(stream);
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
        let result = match self.stream.as_mut() {
            None => Err(closed()),
            Some(stream) => match timeout(limit, self.reader.read(stream)).await {
                Err(_) => Err(DeliveryFailure::Timeout { stage }),
                Ok(Err(err)) => Err(read_failure(err, &self.server_name, stage)),
                Ok(Ok(reply)) => Ok(reply),
            },
        };
        if result.is_err() {
            self.close();
        }
        result
    }

    /// Forgets the connection; the session is unusable from here on.
    fn close(&mut self) {
        self.stream = None;
        self.reader.clear();
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

/// The failure a reply that could not be read amounts to: the connection's, whatever the
/// cause, since the server is either gone or out of step.
fn read_failure(err: ReadError, server_name: &str, stage: Stage) -> DeliveryFailure {
    DeliveryFailure::Connection(match err {
        ReadError::Io(err) => format!("reading from {server_name} at {stage}: {err}"),
        ReadError::Closed => format!("{server_name} closed the connection at {stage}"),
        ReadError::LineTooLong => {
            format!("{server_name} sent a reply line longer than {MAX_LINE} bytes at {stage}")
        }
        ReadError::Malformed(err) => format!("bad reply from {server_name} at {stage}: {err}"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_recognised() {
        assert_eq!(parse_extension("PIPELINING"), (EXT_PIPELINING, None));
        assert_eq!(parse_extension("starttls"), (EXT_START_TLS, None));
        assert_eq!(parse_extension("SIZE 1000"), (EXT_SIZE, Some(1000)));
        assert_eq!(parse_extension("SIZE 0"), (EXT_SIZE, None));
        assert_eq!(parse_extension("SIZE"), (EXT_SIZE, None));
        assert_eq!(parse_extension("AUTH PLAIN"), (0, None));
    }
}
