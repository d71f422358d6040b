//! Set-up shared by the benches that run a whole server: a no-op flow, the built-in flow and
//! its newsletter, data folders for `sluice serve`, the SMTP load generator and reading SMTP
//! replies.

use std::path::Path;

use sluice::config::Config;
use sluice::server::Server;
use sluice::store::{Flow, Flowstep};
use tokio::io::AsyncBufReadExt;

/// The guest components host/build.rs builds, one constant per crate (`TEST_MISBEHAVE`).
// A bench uses only some of them.
#[allow(dead_code)]
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The built-in flow and the message sent through it.
// Only the benches that run the built-in flow use it.
#[allow(dead_code)]
pub mod built_in_flow;

/// Data folders prepared in this process for a `sluice serve` process to run on.
// Only the benches that run the binary use it.
#[allow(dead_code)]
pub mod data_folder;

/// The SMTP load generator.
// The benches with a client of another shape do not use it.
#[allow(dead_code)]
pub mod smtp_load;

/// The embedded default configuration on a data folder, every listener on a free loopback
/// port.
pub fn config(data_dir: &Path) -> Config {
    let mut config = Config::load(None).expect("default config");
    config.data_dir = data_dir.to_path_buf();
    config.smtp.listen = "127.0.0.1:0".parse().unwrap();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.inbound.listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// Makes a flow of one step that only reads a header the demo account's default flow.
pub async fn no_op_flow(server: &Server) {
    let store = &server.store;
    let step = std::fs::read(guests::TEST_MISBEHAVE).expect("guest built");
    let sha = sluice::plugin::hex_sha256(&step);
    store.put_plugin(1, &sha, step).await.unwrap();
    make_default_flow(
        server,
        "no-op",
        vec![Flowstep {
            plugin: sha,
            config: serde_json::json!({"behaviour": "read-header"}),
            enabled_when: None,
        }],
    )
    .await;
}

/// Makes a flow of these steps the demo account's default.
pub async fn make_default_flow(server: &Server, name: &str, steps: Vec<Flowstep>) {
    let store = &server.store;
    let flow = store
        .create_flow(Flow {
            id: 0,
            account_id: 1,
            name: name.into(),
            steps,
            expiry_hours: None,
        })
        .await
        .expect("flow");
    let mut routing = store.routing(1).unwrap().unwrap();
    routing.default_flow_id = flow.id;
    store.set_routing(1, routing).await.unwrap();
}

/// Reads one (possibly multi-line) SMTP reply, checks its code, returns its last line.
pub async fn reply(
    replies: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: &str,
) -> String {
    loop {
        let mut line = String::new();
        replies.read_line(&mut line).await.expect("reply");
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_string();
        }
    }
}
