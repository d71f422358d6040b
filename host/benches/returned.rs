//! Returned mail, the whole way: DSNs sent over SMTP to the MX → stored → parsed and
//! classified → mapped to their messages through the VERP return path → HARDBOUNCE or
//! SOFTBOUNCE recorded (and hard bounces put on the filter list).
//!
//! Prints returned messages settled per second, from the first DSN sent to the last one
//! settled, with several SMTP sessions sending at once.
//!
//!     cargo bench --bench returned [-- MESSAGES SESSIONS]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice::delivery::verp::ReturnPath;
use sluice::server::Server;
use sluice::store::{MessageRecord, MessageStatus, NewMessage, new_message_id, now_millis};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let total = numbers.first().copied().unwrap_or(4000);
    let sessions = numbers.get(1).copied().unwrap_or(8).max(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = support::config(dir.path());
    config.delivery.enabled = false;
    let return_domain = config.dkim.return_path_domain.clone();
    let server = runtime
        .block_on(Server::start(config))
        .expect("server starts");
    runtime.block_on(support::no_op_flow(&server));
    let key = std::fs::read(dir.path().join("return-path.key")).expect("return-path key");
    let return_path = ReturnPath::new(key.try_into().expect("32 bytes"));

    // The messages the bounces are about, as the pipeline leaves them.
    let ids = runtime.block_on(messages(&server, total));

    let started = Instant::now();
    let mx = server.mx_addr.expect("the MX runs");
    let per_session = total.div_ceil(sessions);
    runtime.block_on(async {
        let tasks: Vec<_> = ids
            .chunks(per_session)
            .map(|chunk| {
                let targets: Vec<(String, String)> = chunk
                    .iter()
                    .map(|(id, recipient)| {
                        (return_path.address(id, &return_domain), recipient.clone())
                    })
                    .collect();
                tokio::spawn(send_dsns(mx, targets))
            })
            .collect();
        for task in tasks {
            task.await.expect("session");
        }
    });
    let sent = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !server
        .store
        .pending_returned(1)
        .expect("pending")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "returned mail not settled");
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();

    let hard = ids
        .iter()
        .filter(|(id, _)| {
            server.store.message(id).unwrap().unwrap().status == MessageStatus::HardBounce
        })
        .count();
    println!("DSNs over SMTP → MX → classified → event on the message; {sessions} sessions");
    println!(
        "  received   {:.0} messages/s ({total} in {:.2} s)",
        total as f64 / sent.as_secs_f64(),
        sent.as_secs_f64()
    );
    println!(
        "  settled    {:.0} messages/s ({total} in {:.2} s; {hard} hard, {} soft)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        total - hard
    );
    drop(server);
}

/// Spools `count` messages and waits until the pipeline has processed them.
async fn messages(server: &Server, count: usize) -> Vec<(String, String)> {
    let store = &server.store;
    let body = b"From: Shop <shop@example.com>\r\nTo: someone@example.net\r\nSubject: Your order\r\nMessage-ID: <order@shop.example>\r\n\r\nIt ships today.\r\n";
    let new: Vec<NewMessage> = (0..count)
        .map(|n| NewMessage {
            record: MessageRecord {
                id: new_message_id(),
                account_id: 1,
                source_id: 1,
                submitted_over: "bench".into(),
                sender: "shop@example.com".into(),
                recipient: format!("user{n}@example.net"),
                submitted_at: now_millis(),
                data: None,
                flow_selector: None,
                flow_id: None,
                status: MessageStatus::Submitted,
                status_reason: None,
                subject: Some("Your order".into()),
                tags: Vec::new(),
                schedule_at: None,
                dmarc: None,
                header_message_id: None,
                resent_from: None,
                steps: Vec::new(),
                next_event: None,
            },
            body: body.to_vec(),
        })
        .collect();
    let ids: Vec<(String, String)> = new
        .iter()
        .map(|message| (message.record.id.clone(), message.record.recipient.clone()))
        .collect();
    for batch in new.chunks(500) {
        store.spool(batch.to_vec()).await.expect("spooled");
        for message in batch {
            server
                .pipeline
                .notify(message.record.account_id, message.record.id.clone());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    for (id, _) in &ids {
        while store.message(id).unwrap().unwrap().status == MessageStatus::Submitted {
            assert!(Instant::now() < deadline, "messages not processed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    ids
}

/// One SMTP session sending a DSN to each return path; every other one is hard.
async fn send_dsns(mx: SocketAddr, targets: Vec<(String, String)>) {
    let stream = TcpStream::connect(mx).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut replies = BufReader::new(read);
    support::reply(&mut replies, "220").await;
    write.write_all(b"EHLO mx.example.net\r\n").await.unwrap();
    support::reply(&mut replies, "250").await;
    for (n, (return_path, recipient)) in targets.iter().enumerate() {
        let (status, diagnostic) = if n % 2 == 0 {
            (
                "5.1.1",
                "550 5.1.1 <{r}>: Recipient address rejected: User unknown",
            )
        } else {
            ("5.2.2", "552 5.2.2 <{r}>: Mailbox full")
        };
        let diagnostic = diagnostic.replace("{r}", recipient);
        let dsn = format!(
            "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n\
             To: {return_path}\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\
             \r\n\
             --b1\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             I'm sorry to have to inform you that your message could not be delivered.\r\n\
             <{recipient}>: host mx.example.net[192.0.2.1] said: {diagnostic}\r\n\
             \x20   (in reply to RCPT TO command)\r\n\
             \r\n\
             --b1\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.example.net\r\n\
             Arrival-Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\
             \r\n\
             Final-Recipient: rfc822; {recipient}\r\n\
             Original-Recipient: rfc822;{recipient}\r\n\
             Action: failed\r\n\
             Status: {status}\r\n\
             Remote-MTA: dns; mx.example.net\r\n\
             Diagnostic-Code: smtp; {diagnostic}\r\n\
             \r\n\
             --b1\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             Return-Path: <{return_path}>\r\n\
             From: Shop <shop@example.com>\r\n\
             To: {recipient}\r\n\
             Subject: Your order\r\n\
             Message-ID: <order@shop.example>\r\n\
             \r\n\
             --b1--\r\n.\r\n"
        );
        write
            .write_all(format!("MAIL FROM:<>\r\nRCPT TO:<{return_path}>\r\nDATA\r\n").as_bytes())
            .await
            .unwrap();
        support::reply(&mut replies, "250").await;
        support::reply(&mut replies, "250").await;
        support::reply(&mut replies, "354").await;
        write.write_all(dsn.as_bytes()).await.unwrap();
        support::reply(&mut replies, "250").await;
    }
    write.write_all(b"QUIT\r\n").await.unwrap();
}
