//! The outbound SMTP client (RFC 5321): one session with one remote server, carrying one message
//! to one recipient per transaction, with STARTTLS, PIPELINING, SIZE, 8BITMIME and SMTPUTF8,
//! and AUTH (PLAIN or LOGIN, RFC 4954) for smart hosts.
//!
//! Every failure is a [`DeliveryFailure`] that says whether retrying can help, so the queue can
//! decide between a bounce and a later attempt without parsing text.
//!
//! One file per concern: `reply` reads the server's replies, `failure` says what went wrong,
//! `session` holds the conversation, `tls` the encryption, `data` the message as DATA carries
//! it.

mod data;
mod failure;
mod reply;
mod session;
pub(crate) mod tls;

use std::fmt;
use std::time::Duration;

pub use self::data::dot_stuff;
pub use self::failure::{DeliveryFailure, Stage};
pub use self::reply::Reply;
pub use self::session::SmtpSession;
pub use self::tls::TlsInfo;

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
