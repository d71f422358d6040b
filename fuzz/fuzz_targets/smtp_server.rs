//! The SMTP server on any bytes a client may send: one whole server runs in this process
//! (submission and the MX for returned mail, on loopback, delivery off), and each input is one
//! client connection that writes the input, closes its side and reads every reply. A panic in
//! a session, or a session that neither answers nor closes once the client has gone, is a
//! finding.
//!
//! The first byte picks the listener: even, submission; odd, the MX. In the rest, `{PLAIN}`,
//! `{USER}` and `{PASS}` stand for the demo login's AUTH PLAIN and LOGIN lines, so the fuzzer
//! can get past AUTH (the seeds in `seeds/smtp_server` use them).
#![no_main]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a session may take once the client has sent everything and closed its side.
const SESSION_LIMIT: Duration = Duration::from_secs(10);

struct Harness {
    runtime: tokio::runtime::Runtime,
    submission: SocketAddr,
    mx: SocketAddr,
    plain: Vec<u8>,
    user: Vec<u8>,
    pass: Vec<u8>,
    // Kept for the life of the process: the server runs until libFuzzer exits.
    _server: sluice::server::Server,
}

/// A data folder of this process's own, in memory where the machine has a tmpfs (a durable
/// commit then costs no disk flush); folders left by runs that have ended are removed.
fn data_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let temp = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    let base = temp.join("sluice-fuzz-smtp");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !PathBuf::from("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a data folder");
    dir
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let mut config = sluice::config::Config::load(None).expect("the default configuration");
        config.data_dir = data_dir();
        config.smtp.listen = "127.0.0.1:0".parse().unwrap();
        config.api.listen = "127.0.0.1:0".parse().unwrap();
        config.inbound.listen = "127.0.0.1:0".parse().unwrap();
        config.inbound.feedback_domains = vec!["fbl.example".into()];
        // The sessions' own timeouts stay long (minutes): a session that outlives the
        // client by SESSION_LIMIT is a hang, not a timeout.
        config.smtp.max_message_bytes = 256 << 10;
        config.inbound.max_message_bytes = 256 << 10;
        // Every AUTH may fail without locking the fuzzer out.
        config.smtp.max_auth_failures = u32::MAX;
        config.smtp.auth_backoff_secs = 0;
        // Nothing leaves the machine: no delivery, and lookups go to a closed loopback port.
        config.delivery.enabled = false;
        config.dns.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
        config.dns.timeout_ms = Some(100);
        config.pipeline_workers = 4;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime
            .block_on(sluice::server::Server::start(config))
            .expect("the server starts");
        let demo = server
            .created_demo
            .clone()
            .expect("a demo login on a new store");
        let plain = format!("\0{}\0{}", demo.username, demo.password);
        Harness {
            submission: server.smtp_addr,
            mx: server.mx_addr.expect("the MX is on by default"),
            plain: STANDARD.encode(plain).into_bytes(),
            user: STANDARD.encode(&demo.username).into_bytes(),
            pass: STANDARD.encode(&demo.password).into_bytes(),
            runtime,
            _server: server,
        }
    })
}

/// The input with the login placeholders replaced.
fn expand(input: &[u8], harness: &Harness) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut rest = input;
    'bytes: while let Some(&first) = rest.first() {
        for (token, value) in [
            (&b"{PLAIN}"[..], &harness.plain),
            (b"{USER}", &harness.user),
            (b"{PASS}", &harness.pass),
        ] {
            if let Some(after) = rest.strip_prefix(token) {
                out.extend_from_slice(value);
                rest = after;
                continue 'bytes;
            }
        }
        out.push(first);
        rest = &rest[1..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let harness = harness();
    let addr = if which % 2 == 0 {
        harness.submission
    } else {
        harness.mx
    };
    let input = expand(input, harness);
    harness.runtime.block_on(async {
        let stream = TcpStream::connect(addr).await.expect("the listener is up");
        let (mut reader, mut writer) = stream.into_split();
        // Writing and reading at once: a long pipelined input must not wait for the server
        // to be read while the server waits for its replies to be read.
        let write = async {
            // The server may close first (QUIT, too many errors); what is left goes nowhere.
            let _ = writer.write_all(&input).await;
            let _ = writer.shutdown().await;
        };
        let read = async {
            let mut replies = Vec::new();
            let _ = reader.read_to_end(&mut replies).await;
            replies
        };
        let both = async { tokio::join!(write, read).1 };
        match tokio::time::timeout(SESSION_LIMIT, both).await {
            Ok(replies) => {
                assert!(
                    replies.is_empty() || replies.starts_with(b"220 ") || replies.starts_with(b"421 "),
                    "the session did not start with a greeting: {:?}",
                    String::from_utf8_lossy(&replies[..replies.len().min(200)])
                );
            }
            Err(_) => panic!("the session neither ended nor answered within {SESSION_LIMIT:?} after the client closed"),
        }
    });
});
