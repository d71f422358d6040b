//! Connection limits and timeouts of the HTTP API, and the independence of the API's and
//! SMTP's limits: a flood of one listener leaves the other accepting.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::TestServer;

/// The longest any of these tests waits for something that should happen in a second or two.
const PATIENCE: Duration = Duration::from_secs(20);

/// True once the server has closed the connection (end of stream or a reset), false if it
/// is still open after `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            // Whatever the server wrote before closing (a 408, say) is read past.
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The status line of a `GET path` on a fresh connection, or None if the connection was
/// closed or gave no answer.
fn get_status(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    (!line.is_empty()).then(|| line.trim_end().to_string())
}

fn smtp_greeting(addr: SocketAddr) -> String {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn silent_connections_filling_the_api_leave_smtp_answering_and_time_out() {
    let server = TestServer::start(|config| {
        config.api.max_connections_per_ip = 4;
        config.api.max_connections = 8;
        config.api.header_timeout_secs = 2;
    });
    let api = server.server.api_addr;
    assert!(get_status(api, "/openapi.json").unwrap().contains(" 200 "));

    let mut silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(api).unwrap()).collect();
    // The limit is reached: one more is closed at once instead of holding a descriptor.
    let mut over = TcpStream::connect(api).unwrap();
    assert!(
        closed_within(&mut over, Duration::from_secs(5)),
        "a connection over the API's limit was kept open"
    );

    // The SMTP listeners count their own connections.
    assert!(smtp_greeting(server.server.smtp_addr).starts_with("220 "));
    assert!(smtp_greeting(server.server.mx_addr.unwrap()).starts_with("220 "));

    // The silent ones never send a request's headers: they are closed...
    for stream in &mut silent {
        assert!(
            closed_within(stream, PATIENCE),
            "a silent API connection stayed open"
        );
    }
    // ...and give their places back.
    let started = Instant::now();
    loop {
        if get_status(api, "/openapi.json").is_some_and(|status| status.contains(" 200 ")) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the API never answered again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_flooded_smtp_listener_leaves_the_api_answering() {
    let server = TestServer::start(|config| {
        config.smtp.max_connections_per_ip = 2;
    });
    let smtp = server.server.smtp_addr;
    let _held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let stream = TcpStream::connect(smtp).unwrap();
            let mut line = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("220 "), "{line}");
            stream
        })
        .collect();
    assert!(smtp_greeting(smtp).starts_with("421 "));
    let status = get_status(server.server.api_addr, "/openapi.json").unwrap();
    assert!(status.contains(" 200 "), "{status}");
}

#[test]
fn a_request_whose_headers_trickle_in_is_closed() {
    let server = TestServer::start(|config| {
        config.api.header_timeout_secs = 1;
    });
    let mut stream = TcpStream::connect(server.server.api_addr).unwrap();
    stream
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: sluice.test\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    loop {
        // One byte of an endless header value at a time, each well within any read timeout.
        if stream.write_all(b"a").is_err() {
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(200)) {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "a request trickling its headers was kept open"
        );
    }
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = TestServer::start(|config| {
        config.api.header_timeout_secs = 1;
    });
    let mut stream = TcpStream::connect(server.server.api_addr).unwrap();
    stream
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
        .unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    // The answer came on a kept-alive connection; nothing else is asked on it.
    let started = Instant::now();
    let mut rest = [0u8; 64];
    reader.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    match reader.read(&mut rest) {
        Ok(0) => {}
        Ok(read) => panic!("unexpected bytes: {:?}", &rest[..read]),
        Err(error) => assert!(
            !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "an idle keep-alive connection stayed open for {:?}",
            started.elapsed()
        ),
    }
}
