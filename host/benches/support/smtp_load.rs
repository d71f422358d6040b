//! The benches' SMTP load generator: a session that sends the same message over and over,
//! MAIL, RCPT and DATA pipelined, and times each message's acknowledgement. It speaks to any
//! SMTP server: Sluice (with AUTH), Postfix, or a sink (without).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The envelope every bench message is sent with.
pub const MAIL_RCPT_DATA: &[u8] =
    b"MAIL FROM:<news@shop.example>\r\nRCPT TO:<ann@example.net>\r\nDATA\r\n";

/// A message's content as it goes after DATA: dot-stuffed, with the final dot.
pub fn data_section(content: &str) -> Vec<u8> {
    let mut data = content.replace("\r\n.", "\r\n..").into_bytes();
    data.extend_from_slice(b"\r\n.\r\n");
    data
}

/// One message the server acknowledged.
pub struct Acknowledged {
    /// The last line of the 250 after the data.
    pub reply: String,
    /// When that reply arrived.
    pub at: Instant,
    /// From the last byte of the data written to that reply: what the server took to make the
    /// message its own.
    pub waited: Duration,
}

impl Acknowledged {
    /// The id a `250 ... queued as ID` reply names (Sluice and Postfix both answer so).
    pub fn queued_id(&self) -> Option<&str> {
        self.reply
            .rsplit_once("queued as ")?
            .1
            .split_whitespace()
            .next()
    }
}

/// An open SMTP session, greeted and past EHLO (and AUTH when given a login).
pub struct SmtpSession {
    replies: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl SmtpSession {
    /// Connects, reads the greeting, says EHLO and, with a login, authenticates (AUTH PLAIN).
    pub async fn open(addr: SocketAddr, login: Option<&(String, String)>) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (read, write) = stream.into_split();
        let mut session = Self {
            replies: BufReader::new(read),
            write,
        };
        super::reply(&mut session.replies, "220").await;
        session.command(b"EHLO bench.example\r\n", "250").await;
        if let Some((user, password)) = login {
            let plain =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
            session
                .command(format!("AUTH PLAIN {plain}\r\n").as_bytes(), "235")
                .await;
        }
        session
    }

    async fn command(&mut self, line: &[u8], code: &str) -> String {
        self.write.write_all(line).await.expect("command sent");
        super::reply(&mut self.replies, code).await
    }

    /// Sends one message (`data` from [`data_section`]) and waits for its 250.
    pub async fn send(&mut self, data: &[u8]) -> Acknowledged {
        self.write.write_all(MAIL_RCPT_DATA).await.expect("sent");
        super::reply(&mut self.replies, "250").await;
        super::reply(&mut self.replies, "250").await;
        super::reply(&mut self.replies, "354").await;
        self.write.write_all(data).await.expect("data sent");
        let written = Instant::now();
        let reply = super::reply(&mut self.replies, "250").await;
        let at = Instant::now();
        Acknowledged {
            reply,
            at,
            waited: at - written,
        }
    }

    /// Ends the session politely.
    pub async fn quit(mut self) {
        let _ = self.write.write_all(b"QUIT\r\n").await;
    }
}
