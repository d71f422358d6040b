//! What can go wrong while handing a message over, and whether trying again later can help.

use std::fmt;

use super::Reply;

/// Longest snippet of a failure kept for an event, so a chatty server cannot bloat the store.
const MAX_SNIPPET: usize = 2000;

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

/// The failure of using a session that is already closed.
pub(super) fn closed() -> DeliveryFailure {
    DeliveryFailure::Connection("the session is closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
