//! A webhook receiver on loopback for tests: an HTTP server on 127.0.0.1:0, in its own
//! thread and runtime, that records every request it gets and answers with the status a
//! test's rule gives for it (fail N times then succeed, always fail, ...).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// One request as the receiver got it, with the status it answered.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request headers.
    pub headers: HeaderMap,
    /// The body, byte for byte as sent (what the signature covers).
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
}

impl Request {
    /// A header as text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The event type in the body.
    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap().to_string()
    }

    /// The message id in the body.
    pub fn message_id(&self) -> String {
        self.json()["messageId"].as_str().unwrap().to_string()
    }

    /// Whether the receiver acknowledged it.
    pub fn acknowledged(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Decides the status for a request, given it and the requests before it.
pub type Rule = Box<dyn Fn(&Request, &[Request]) -> u16 + Send + Sync>;

struct Shared {
    requests: Mutex<Vec<Request>>,
    rule: Mutex<Rule>,
    answer_body: &'static str,
    /// Answers wait until this is open (it is, unless the receiver was started gated).
    open: AtomicBool,
    opened: tokio::sync::Notify,
    /// Requests being answered now, and the most there ever were at once.
    in_progress: AtomicUsize,
    most_in_progress: AtomicUsize,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub fn start() -> Self {
        Self::with_rule(|_, _| 200)
    }

    /// A receiver answering as `rule` says.
    pub fn with_rule(rule: impl Fn(&Request, &[Request]) -> u16 + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            rule: Mutex::new(Box::new(rule)),
            answer_body: "down for maintenance",
            open: AtomicBool::new(true),
            opened: tokio::sync::Notify::new(),
            in_progress: AtomicUsize::new(0),
            most_in_progress: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(Arc::clone(&shared));
        runtime.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            shared,
            _runtime: runtime,
        }
    }

    /// A receiver that fails the first `failures` requests for each event id with 500.
    pub fn failing_first(failures: usize) -> Self {
        Self::with_rule(move |request, before| {
            let id = request.header("sluice-event-id");
            let earlier = before
                .iter()
                .filter(|seen| seen.header("sluice-event-id") == id)
                .count();
            if earlier < failures { 500 } else { 200 }
        })
    }

    /// A receiver that holds every answer until [`Receiver::open`].
    pub fn gated() -> Self {
        let receiver = Self::start();
        receiver.shared.open.store(false, Ordering::SeqCst);
        receiver
    }

    /// Lets held and later requests be answered.
    pub fn open(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
        self.shared.opened.notify_waiters();
    }

    /// Requests being answered now.
    pub fn in_progress(&self) -> usize {
        self.shared.in_progress.load(Ordering::SeqCst)
    }

    /// The most requests that were ever being answered at once.
    pub fn most_in_progress(&self) -> usize {
        self.shared.most_in_progress.load(Ordering::SeqCst)
    }

    /// The URL to register.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/sluice", self.addr)
    }

    /// Replaces the rule for requests from now on.
    pub fn set_rule(&self, rule: impl Fn(&Request, &[Request]) -> u16 + Send + Sync + 'static) {
        *self.shared.rule.lock().unwrap() = Box::new(rule);
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests it acknowledged, in order.
    pub fn acknowledged(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::acknowledged)
            .collect()
    }

    /// Waits until `done` holds for the requests so far (or fails after 20 s); returns them.
    pub fn wait_until(&self, what: &str, done: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver never saw {what}; it got: {:?}",
                requests
                    .iter()
                    .map(|r| (r.kind(), r.status))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let now = shared.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most_in_progress.fetch_max(now, Ordering::SeqCst);
    let status = {
        let mut requests = shared.requests.lock().unwrap();
        let mut request = Request {
            headers,
            body: body.to_vec(),
            status: 0,
        };
        request.status = (shared.rule.lock().unwrap())(&request, &requests);
        let status = request.status;
        requests.push(request);
        status
    };
    loop {
        let opened = shared.opened.notified();
        if shared.open.load(Ordering::SeqCst) {
            break;
        }
        opened.await;
    }
    shared.in_progress.fetch_sub(1, Ordering::SeqCst);
    let body = if (200..300).contains(&status) {
        ""
    } else {
        shared.answer_body
    };
    (StatusCode::from_u16(status).unwrap(), body)
}
