//! Several nodes over one store act as one platform: they see each other, sign with the same
//! keys, and a plugin changed through one node is brought up to date on the other within a
//! poll; a node with another master key refuses to start.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::util::{Api, TestServer, guest_bytes, guests};

/// How long a change made through one node may take to reach the other, at the tests' poll
/// of 50 ms: far more than it needs, so a slow machine does not fail the test.
const WITHIN: Duration = Duration::from_secs(20);

fn fast_polls(config: &mut sluice::config::Config) {
    config.cluster.plugin_poll_millis = 50;
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
        let store = sluice::store::Store::open(&data.join("sluice.redb")).unwrap();
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
    let refused = runtime.block_on(sluice::server::Server::start(crate::util::test_config(
        &data,
    )));
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
