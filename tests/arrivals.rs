//! The benches' SMTP sink that only notes when messages arrived: sessions of several pipelined
//! messages, content cut between reads, a next command right behind the final dot, stopping.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::util::arrivals::ArrivalSink;

/// Long enough never to fire on a busy machine unless something is really stuck.
const PATIENT: Duration = Duration::from_secs(10);

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect(replies: &mut (impl AsyncBufRead + Unpin), code: &str) {
    loop {
        let mut line = String::new();
        timeout(PATIENT, replies.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no {code} reply"))
            .unwrap();
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

#[tokio::test]
async fn notes_each_message_with_its_return_path_in_order() {
    let sink = ArrivalSink::start().await;
    let stream = TcpStream::connect(sink.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let mut replies = BufReader::new(read);
    expect(&mut replies, "220").await;
    write.write_all(b"EHLO client.test\r\n").await.unwrap();
    expect(&mut replies, "250").await;
    let started = Instant::now();

    write
        .write_all(
            b"MAIL FROM:<b+one.mac@bounce.test> SIZE=20\r\nRCPT TO:<ann@example.net>\r\nDATA\r\n",
        )
        .await
        .unwrap();
    for code in ["250", "250", "354"] {
        expect(&mut replies, code).await;
    }
    // The final line is cut inside its CRLF, between two reads.
    write.write_all(b"..dotted\r\n.\r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sink.count(), 0, "ended before the final CRLF");
    // The next transaction right behind the final dot, as a pipelining client may send it.
    write
        .write_all(b"\nMAIL FROM:<>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
        .await
        .unwrap();
    for code in ["250", "250", "250", "354"] {
        expect(&mut replies, code).await;
    }
    // A message of no lines.
    write.write_all(b".\r\nQUIT\r\n").await.unwrap();
    expect(&mut replies, "250").await;
    expect(&mut replies, "221").await;

    assert_eq!(sink.count(), 2);
    let arrivals = sink.arrivals();
    let return_paths: Vec<&str> = arrivals
        .iter()
        .map(|arrival| arrival.return_path.as_str())
        .collect();
    assert_eq!(return_paths, ["b+one.mac@bounce.test", ""]);
    assert!(started <= arrivals[0].at && arrivals[0].at <= arrivals[1].at);
}

#[tokio::test]
async fn dropping_it_closes_its_sessions() {
    let sink = ArrivalSink::start().await;
    let mut replies = BufReader::new(TcpStream::connect(sink.addr()).await.unwrap());
    expect(&mut replies, "220").await;
    drop(sink);
    let mut rest = String::new();
    let read = timeout(PATIENT, replies.read_line(&mut rest))
        .await
        .expect("the session ends")
        .unwrap();
    assert_eq!(read, 0, "{rest:?}");
}
