//! Several nodes over one store act as one platform: they see each other, sign with the same
//! keys, and a plugin changed through one node is brought up to date on the other within a
//! poll; a node with another master key refuses to start.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::util::receiver::Request;
use crate::util::{Api, TestServer, guest_bytes, guests};

/// How long a change made through one node may take to reach the other, at the tests' poll
/// of 50 ms: far more than it needs, so a slow machine does not fail the test.
const WITHIN: Duration = Duration::from_secs(20);

fn fast_polls(config: &mut sluice::config::Config) {
    config.cluster.plugin_poll_millis = 50;
    config.cluster.change_poll_millis = 50;
}

/// Waits until `holds` is true, failing with `what` after [`WITHIN`].
fn eventually(what: &str, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while !holds() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The API of `node` with a token another node issued.
fn with_token_of(node: &TestServer, api: &Api) -> Api {
    Api {
        base: format!("http://{}", node.server.api_addr),
        http: reqwest::blocking::Client::new(),
        token: api.token.clone(),
        account: api.account,
    }
}

#[test]
fn two_nodes_see_each_other_and_accept_each_others_tokens() {
    let first = TestServer::start(fast_polls);
    let second = TestServer::start_beside(&first, fast_polls);
    let ids: Vec<String> = first
        .store()
        .live_nodes(0)
        .unwrap()
        .into_iter()
        .map(|node| node.id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&first.server.membership.node().id));
    assert!(ids.contains(&second.server.membership.node().id));
    assert_eq!(second.server.membership.nodes().get(), 2);

    let api = Api::demo(&first);
    let elsewhere = with_token_of(&second, &api);
    let response = elsewhere.get("flows").send().unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());
    // Nothing per node was made for the shared keys.
    for file in ["links.key", "return-path.key", "api.key"] {
        assert!(!second.dir().join(file).exists(), "{file}");
    }
    // One platform DKIM key, as DNS publishes one.
    assert_eq!(
        first.server.dkim.platform_record(),
        second.server.dkim.platform_record()
    );
}

#[test]
fn a_plugin_changed_through_one_node_is_up_to_date_on_the_other() {
    let first = TestServer::start(fast_polls);
    let second = TestServer::start_beside(&first, fast_polls);
    let api = Api::demo(&first);
    let on_second = with_token_of(&second, &api);

    let response = api
        .post("plugins")
        .header("content-type", "application/wasm")
        .body(guest_bytes(guests::TEST_MISBEHAVE))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let sha256 = response.json::<serde_json::Value>().unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the upload is loaded on the other node", || {
        second.server.pipeline.has_loaded(&sha256)
    });

    let state = |api: &Api| -> serde_json::Value {
        api.get(&format!("plugins/{sha256}"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    assert_eq!(state(&on_second)["enabled"], true);
    // Disabled by the first node's faults (as its pipeline records them)...
    first
        .block_on(
            first
                .store()
                .record_plugin_disabled(&sha256, api.account, "5 failures in a row"),
        )
        .unwrap();
    eventually("the other node sees it disabled", || {
        state(&on_second)["enabled"] == false
    });
    // ...and enabled again through the first node's API.
    let response = api
        .post(&format!("plugins/{sha256}/enable"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    eventually("the other node sees it enabled", || {
        state(&on_second)["enabled"] == true
    });

    let response = api
        .http
        .delete(api.url(&format!("plugins/{sha256}")))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    eventually("the other node dropped the removed plugin", || {
        !second.server.pipeline.has_loaded(&sha256)
    });
    let response = on_second.get(&format!("plugins/{sha256}")).send().unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn a_node_with_another_master_key_refuses_to_start_and_writes_nothing() {
    let dir = TestServer::start(|_| {}).stop();
    let data = dir.path().to_path_buf();
    let stored = || {
        let store = crate::util::stopped_store(&data);
        let stored = (
            store.live_nodes(0).unwrap(),
            store.shared_secret("master-key-check").unwrap(),
            store.accounts().unwrap().len(),
        );
        drop(store);
        // The writer thread closes the database once the last handle is gone.
        std::thread::sleep(Duration::from_millis(300));
        stored
    };
    let before = stored();
    assert_eq!(before.0.len(), 1, "the first node's heartbeat");
    assert!(before.1.is_some(), "the check value");
    let master = data.join("keys").join("master.key");
    let original = std::fs::read_to_string(&master).unwrap();
    std::fs::write(&master, "ab".repeat(32)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = crate::util::test_config(&data);
    config.store.url = crate::util::stopped_store_url(&data);
    let refused = runtime.block_on(sluice::server::Server::start(config));
    drop(runtime);
    let Err(error) = refused else {
        panic!("a node with another master key started");
    };
    let error = error.to_string();
    assert!(error.contains("master key"), "{error}");
    assert!(error.contains("master.key"), "{error}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stored(), before, "no heartbeat, key or account written");
    for file in ["links.key", "return-path.key", "api.key"] {
        assert!(!data.join(file).exists(), "{file}");
    }
    std::fs::write(&master, original).unwrap();
    drop(dir);
}

#[test]
fn an_upgraded_nodes_links_keep_working_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    // A node from before keys were shared signed its links with this file's key.
    std::fs::write(dir.path().join("links.key"), [5u8; 32]).unwrap();
    let first = TestServer::start_with(dir, None, fast_polls).unwrap();
    let second = TestServer::start_beside(&first, fast_polls);
    let api = Api::demo(&first);
    let id = api.submit(crate::util::email("links"));
    first.wait_until_done(&id);
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for node in [&first, &second] {
        let base = format!("http://{}", node.server.api_addr);
        let sent_before = sluice::tracking::LinkSigner::new([5; 32], &base).click_url(
            &id,
            0,
            "https://example.com/offer",
        );
        let response = no_redirects.get(&sent_before).send().unwrap();
        assert!(
            response.status().is_redirection(),
            "{sent_before}: {}",
            response.status()
        );
        let forged = sluice::tracking::LinkSigner::new([6; 32], &base).click_url(
            &id,
            0,
            "https://example.com/offer",
        );
        assert_eq!(
            no_redirects.get(&forged).send().unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
}

/// One `sluice serve` process of a platform over a shared PostgreSQL database.
struct NodeProcess {
    child: std::process::Child,
    smtp: String,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts the real binary as node `name`, with a data folder of its own holding the
    /// platform's master key, delivering everything to `sink`; waits for its SMTP address.
    fn start(name: &str, database_url: &str, master_key: &std::path::Path, sink: &str) -> Self {
        Self::start_leasing(name, database_url, master_key, sink, 3)
    }

    /// As [`NodeProcess::start`], with delivery leases of `lease_secs`.
    fn start_leasing(
        name: &str,
        database_url: &str,
        master_key: &std::path::Path,
        sink: &str,
        lease_secs: u64,
    ) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::copy(master_key, dir.path().join("keys").join("master.key")).unwrap();
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                "pipeline_workers = 4\n\
                 [store]\nurl = {database_url:?}\n\
                 [smtp]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
                 [inbound]\nlisten = \"127.0.0.1:0\"\n[dashboard]\nlisten = \"127.0.0.1:0\"\n\
                 [cluster]\nnode_name = {name:?}\nheartbeat_secs = 1\nnode_timeout_secs = 3\n\
                 lease_secs = {lease_secs}\n\
                 [delivery]\nworkers = 8\nretry_initial_secs = 1\ncapture_example_domains = false\n\
                 [delivery.routes]\n\"*\" = {sink:?}\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--data"])
            .arg(dir.path())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The log is read to its end on a thread: the node must never write into a closed pipe.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("smtp=").nth(1) {
                    let _ = found.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let smtp = address
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{name} logs its SMTP address"));
        Self {
            child,
            smtp,
            _dir: dir,
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of `node`'s submission port, logged in as `user`.
fn smtp_client_of(node: &NodeProcess, user: &str, password: &str) -> lettre::SmtpTransport {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};

    let (host, port) = node.smtp.rsplit_once(':').unwrap();
    lettre::SmtpTransport::builder_dangerous(host)
        .port(port.parse().unwrap())
        .credentials(Credentials::new(user.to_string(), password.to_string()))
        .authentication(vec![Mechanism::Plain])
        .build()
}

/// Sends a message from shop@example.com to `recipient` through `client`; returns its id.
fn send_order(client: &lettre::SmtpTransport, recipient: &str, subject: &str) -> String {
    use lettre::Transport;

    let envelope = lettre::address::Envelope::new(
        Some("shop@example.com".parse().unwrap()),
        vec![recipient.parse().unwrap()],
    )
    .unwrap();
    let content = format!("From: shop@example.com\r\nSubject: {subject}\r\n\r\nx\r\n");
    let response = client.send_raw(&envelope, content.as_bytes()).unwrap();
    let text = response.message().collect::<Vec<_>>().join(" ");
    text.split_once("queued as ").unwrap().1.trim().to_string()
}

/// Sends SIGTERM to `node` and waits until it exits; fails after a minute.
fn terminate(node: &mut NodeProcess) -> std::process::ExitStatus {
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three real processes over one PostgreSQL database take submissions on all three and share
/// the delivery queue by leases; one SIGKILLed in the middle of delivering to a slow sink
/// leaves leases that run out, and the others deliver what it held; when they are killed too,
/// a node started later delivers the rest. Every acknowledged message is delivered, each
/// recorded DELIVERED once, with its events in order; a message goes out twice only where a
/// killed node sent it without recording it.
#[test]
fn three_processes_share_the_queue_and_a_killed_one_loses_nothing() {
    use sluice::store::{EventKind, MessageStatus};
    use sluice_test_support::postgres::TestDatabase;
    use sluice_test_support::sink::{SinkOptions, SmtpSink};

    let Some(database) = TestDatabase::create(module_path!()) else {
        return;
    };
    let url = database.url().to_string();
    // The platform's first start makes the demo account and the keys; then it stops.
    let setup = TestServer::start(|config| config.store.url = Some(url.clone()));
    let (user, password) = setup.demo_login();
    let setup_dir = setup.stop();
    let master_key = setup_dir.path().join("keys").join("master.key");

    let sink = SmtpSink::start_with(SinkOptions {
        tls: false,
        ..SinkOptions::default()
    });
    sink.set_delay(Duration::from_millis(300));
    let sink_addr = sink.addr().to_string();
    let mut nodes: Vec<NodeProcess> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|name| NodeProcess::start(name, &url, &master_key, &sink_addr))
        .collect();

    let clients: Vec<lettre::SmtpTransport> = nodes
        .iter()
        .map(|node| smtp_client_of(node, &user, &password))
        .collect();
    const MESSAGES: usize = 90;
    // Submitted to the three at once, so that most of the delivery is still ahead at the kill.
    let submitting: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(node, client)| {
            std::thread::spawn(move || {
                (0..MESSAGES / 3)
                    .map(|n| send_order(&client, "ann@customer.test", &format!("order {node}-{n}")))
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let acknowledged: Vec<String> = submitting
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect();

    // Killed while it delivers: some of its messages are sent, some in flight, some claimed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.received().len() < MESSAGES / 4 {
        assert!(Instant::now() < deadline, "delivery did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = nodes.remove(1);
    killed.child.kill().unwrap(); // SIGKILL
    killed.child.wait().unwrap();

    // The other two go on; killed in their turn, they leave the rest to a node started later.
    let store = sluice::store::Store::open_postgres(&url, Default::default()).unwrap();
    while sink.received().len() < MESSAGES / 2 {
        assert!(
            Instant::now() < deadline,
            "the other nodes stopped delivering"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut node in nodes.drain(..) {
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }
    let left = acknowledged
        .iter()
        .filter(|id| store.message(id).unwrap().unwrap().status != MessageStatus::Delivered)
        .count();
    assert!(
        left > 0,
        "everything was delivered before the late node started"
    );
    let _late = NodeProcess::start("node-d", &url, &master_key, &sink_addr);

    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &acknowledged {
        loop {
            let status = store.message(id).unwrap().expect("acknowledged").status;
            if status == MessageStatus::Delivered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} is {status:?}: {:?}",
                store.events(id).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let received = sink.received();
    let mut duplicates = 0;
    for id in &acknowledged {
        let copies = received
            .iter()
            .filter(|message| message.mail_from.contains(id.as_str()))
            .count();
        assert!(copies >= 1, "{id} never reached the sink");
        duplicates += copies - 1;
        let events = store.events(id).unwrap();
        let kinds: Vec<EventKind> = events.iter().map(|event| event.kind).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|kind| **kind == EventKind::Delivered)
                .count(),
            1,
            "{id}: {kinds:?}"
        );
        assert_eq!(kinds.last(), Some(&EventKind::Delivered), "{id}: {kinds:?}");
        assert!(
            events.windows(2).all(|pair| pair[0].at <= pair[1].at),
            "{id}: events out of order: {events:?}"
        );
    }
    // Only what a killed node had sent without recording it goes out again: at most two
    // messages per connection it had open (one sent, one being sent), two connections each
    // (a share of the destination's four).
    println!("{left} of {MESSAGES} left for the late node; {duplicates} sent twice");
    assert!(
        duplicates <= 12,
        "{duplicates} messages were delivered twice"
    );
    assert_eq!(received.len(), MESSAGES + duplicates);
}

/// A message whose node died after acknowledging it but before running its flow is in the
/// spool, and no live node was handed it: a live node runs it once it is a lease's time old.
#[test]
fn a_message_a_dead_node_left_in_the_spool_is_run_by_a_live_one() {
    use sluice::store::{MessageRecord, MessageStatus, NewMessage};
    use sluice_test_support::postgres::TestDatabase;

    let Some(database) = TestDatabase::create(module_path!()) else {
        return;
    };
    let url = database.url().to_string();
    let node = TestServer::start(|config| {
        config.store.url = Some(url.clone());
        config.cluster.lease_secs = 1;
    });
    let account = node.store().account(1).unwrap().expect("the demo account");
    let source = node
        .store()
        .sources_of(account.id)
        .unwrap()
        .into_iter()
        .next()
        .expect("the demo source");
    let submitted_at = sluice::store::now_millis() - 10_000;
    let record = MessageRecord {
        id: sluice::store::new_message_id(),
        account_id: account.id,
        source_id: source.id,
        submitted_over: "smtp".into(),
        sender: "shop@example.com".into(),
        recipient: "ann@example.net".into(),
        submitted_at,
        data: None,
        flow_selector: None,
        flow_id: None,
        status: MessageStatus::Submitted,
        status_reason: None,
        subject: Some("left behind".into()),
        tags: Vec::new(),
        schedule_at: None,
        dmarc: None,
        header_message_id: None,
        resent_from: None,
        steps: Vec::new(),
        next_event: None,
    };
    // Past the node's start-up look at the spool, so only the look for orphans can find it.
    std::thread::sleep(Duration::from_secs(2));
    // Spooled the way a node that is gone now did it: straight into the store.
    node.block_on(node.store().spool(vec![NewMessage {
        record: record.clone(),
        body: b"From: shop@example.com\r\nSubject: left behind\r\n\r\nx\r\n".to_vec(),
    }]))
    .unwrap();

    let done = node.wait_until_done(&record.id);
    assert_eq!(done.status, MessageStatus::Processed, "{done:?}");
}

/// An endpoint registered through one node gets the events another node records once that
/// node has looked for new endpoints (each node opened the database itself, so neither hears
/// of the other's endpoints in memory), and each event once, though both nodes' dispatchers
/// work the queue of calls.
#[test]
fn an_endpoint_made_through_one_node_gets_the_events_another_node_records_once() {
    use crate::util::receiver::Receiver;
    use sluice_test_support::postgres::TestDatabase;

    let Some(database) = TestDatabase::create(module_path!()) else {
        return;
    };
    let url = database.url().to_string();
    let first = TestServer::start(|config| {
        config.store.url = Some(url.clone());
        fast_polls(config);
    });
    let dir = tempfile::tempdir().unwrap();
    let master = std::path::Path::new("keys").join("master.key");
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::copy(first.dir().join(&master), dir.path().join(&master)).unwrap();
    let own_store = sluice::store::Store::open_postgres(&url, Default::default()).unwrap();
    let second = TestServer::start_with(dir, Some(own_store), fast_polls).unwrap();

    let receiver = Receiver::start();
    let api = Api::demo(&first);
    let response = api
        .post("webhooks")
        .json(&serde_json::json!({"url": receiver.url(), "eventTypes": []}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // The second node looks every 50 ms: twenty looks' time.
    std::thread::sleep(Duration::from_secs(1));
    let id = with_token_of(&second, &api).submit(serde_json::json!({
        "messageType": "EMAIL",
        "senderAddress": "app@shop.example",
        "recipientAddress": "ann@example.net",
        "subject": "Order 42",
        "text": "Your order ships today.",
    }));
    receiver.wait_until("SUBMITTED and PROCESSED", |requests| {
        let kinds: Vec<String> = requests.iter().map(Request::kind).collect();
        kinds.iter().any(|kind| kind == "SUBMITTED") && kinds.iter().any(|kind| kind == "PROCESSED")
    });
    // Time for a second call of any event to arrive, if one were made.
    std::thread::sleep(Duration::from_secs(2));
    let requests = receiver.requests();
    let mut event_ids: Vec<&str> = requests
        .iter()
        .map(|request| request.header("sluice-event-id"))
        .collect();
    assert!(requests.iter().all(|request| request.message_id() == id));
    event_ids.sort_unstable();
    let calls = event_ids.len();
    event_ids.dedup();
    assert_eq!(
        calls,
        event_ids.len(),
        "an event was called twice: {event_ids:?}"
    );
}

/// A node stopped with SIGTERM (what systemd and container runtimes send) leaves the cluster
/// before it exits, as one stopped with Ctrl-C does: the other nodes stop counting it at once,
/// not a node timeout later.
#[test]
fn a_node_stopped_with_sigterm_leaves_the_cluster_and_exits_cleanly() {
    use sluice_test_support::postgres::TestDatabase;

    let Some(database) = TestDatabase::create(module_path!()) else {
        return;
    };
    let url = database.url().to_string();
    let observer = TestServer::start(|config| config.store.url = Some(url.clone()));
    let master_key = observer.dir().join("keys").join("master.key");
    let mut node = NodeProcess::start("leaving", &url, &master_key, "127.0.0.1:9");
    let listed = || {
        observer
            .store()
            .live_nodes(0)
            .unwrap()
            .iter()
            .any(|record| record.id == "leaving")
    };
    eventually("the node's heartbeat", listed);

    let status = terminate(&mut node);
    assert!(status.success(), "{status:?}");
    assert!(!listed(), "the node's heartbeat is still there");
}

/// A node stopped with SIGTERM while it delivers to a slow receiver lets the attempts under
/// way finish and records them before it exits, so they are not sent again; the messages it
/// had claimed but not attempted it gives back at once, and another node sends them.
#[test]
fn a_node_stopped_with_sigterm_records_the_deliveries_under_way_and_gives_back_the_rest() {
    use sluice::store::MessageStatus;
    use sluice_test_support::postgres::TestDatabase;
    use sluice_test_support::sink::{SinkOptions, SmtpSink};

    let Some(database) = TestDatabase::create(module_path!()) else {
        return;
    };
    let url = database.url().to_string();
    let setup = TestServer::start(|config| config.store.url = Some(url.clone()));
    let (user, password) = setup.demo_login();
    let setup_dir = setup.stop();
    let master_key = setup_dir.path().join("keys").join("master.key");
    let sink = SmtpSink::start_with(SinkOptions {
        tls: false,
        ..SinkOptions::default()
    });
    // Each message's end is answered five seconds later: the stop comes in the middle.
    sink.set_delay(Duration::from_secs(5));
    let sink_addr = sink.addr().to_string();
    // Leases of 30 s, renewed every 10 s: one kept through the stop ends long after it.
    let mut node = NodeProcess::start_leasing("stopping", &url, &master_key, &sink_addr, 30);

    // Four connections to the one destination (the default; two while the set-up server
    // still counts as a node) take four or two; the others wait their turn.
    let client = smtp_client_of(&node, &user, &password);
    let recipients: Vec<String> = (0..6).map(|n| format!("r{n}@customer.test")).collect();
    let ids: Vec<String> = recipients
        .iter()
        .map(|recipient| send_order(&client, recipient, "order"))
        .collect();
    eventually("attempts under way", || {
        recipients
            .iter()
            .map(|recipient| sink.attempts_for(recipient))
            .sum::<usize>()
            >= 2
    });
    let store = sluice::store::Store::open_postgres(&url, Default::default()).unwrap();
    // (On a slow machine the first ones may be recorded by then: they leave the queue.)
    eventually("all six claimed", || {
        ids.iter().all(|id| {
            let delivered = store.message(id).unwrap().unwrap().status == MessageStatus::Delivered;
            let state = store.delivery_state(id).unwrap();
            delivered || state.is_some_and(|state| state.lease.is_some())
        })
    });
    let signalled_at = sluice::store::now_millis();
    let status = terminate(&mut node);
    assert!(status.success(), "{status:?}");

    let received = sink.received();
    assert!(received.len() >= 2, "the attempts under way were cut off");
    let mut given_back = 0;
    for id in &ids {
        let sent = received
            .iter()
            .any(|message| message.mail_from.contains(id.as_str()));
        let status = store.message(id).unwrap().unwrap().status;
        if sent {
            assert_eq!(status, MessageStatus::Delivered, "{id} was sent unrecorded");
        } else {
            assert_eq!(status, MessageStatus::Processed, "{id}");
            // Given back at the stop: a lease kept would end at least 20 s after the signal.
            let lease = store.delivery_state(id).unwrap().unwrap().lease;
            assert!(
                lease
                    .as_ref()
                    .is_some_and(|lease| lease.until < signalled_at + 10_000),
                "{id} was not given back: {lease:?}"
            );
            given_back += 1;
        }
    }
    assert!(given_back > 0, "nothing was left to give back");

    // The two given back go out through another node, and nothing twice.
    sink.set_delay(Duration::ZERO);
    let _other = NodeProcess::start("other", &url, &master_key, &sink_addr);
    let received = sink.wait_for(6, Duration::from_secs(60));
    assert_eq!(received.len(), 6);
    for id in &ids {
        let copies = received
            .iter()
            .filter(|message| message.mail_from.contains(id.as_str()))
            .count();
        assert_eq!(copies, 1, "{id}");
    }
}
