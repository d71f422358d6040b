//! Flowmailer's own PHP SDK against the server: every call a customer's code can make, sent
//! and read by the SDK itself (its models, its range parsing, its id-from-`Location`), so a
//! shape that only our transcription of the models accepts cannot pass.
//!
//! The SDK and three of its dependencies (php-http's discovery, client-common and message)
//! are not in Debian and come from their source trees: clone `flowmailer/flowmailer-php-sdk`,
//! `php-http/discovery`, `php-http/client-common` and `php-http/message` into one folder as
//! `flowmailer-php-sdk/`, `discovery/`, `client-common/`, `message/`, and set
//! `SLUICE_FLOWMAILER_PHP_SDK` to it. The rest is Debian's: `apt-get install php-cli php-curl
//! php-xml php-mbstring php-http-httplug php-http-promise php-doctrine-collections
//! php-phpdocumentor-reflection-docblock php-psr-http-client php-psr-http-factory
//! php-psr-http-message php-psr-log php-psr-simple-cache php-symfony-cache
//! php-symfony-serializer php-symfony-property-access php-symfony-property-info
//! php-symfony-options-resolver php-symfony-string php-symfony-http-client php-nyholm-psr7`.
//! Without them the test says SKIPPED (the SDK cannot be fetched where the suite runs).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::TestServer;

/// Calls the SDK is expected to refuse, and why: each is a documented `not` or a refusal by
/// design in docs/flowmailer-compatibility.md.
const EXPECTED_REFUSALS: &[(&str, &str)] = &[
    (
        "createTemplate(freemarker)",
        "Sluice renders minijinja; a Freemarker template is refused by name",
    ),
    (
        "getMessageErrorArchive",
        "no step held the walked message: 404 as Flowmailer's for a message without one",
    ),
];

/// The folder of the SDK's sources, or why the test cannot run.
fn sdk_sources() -> Result<PathBuf, String> {
    let folder = std::env::var_os("SLUICE_FLOWMAILER_PHP_SDK")
        .map(PathBuf::from)
        .ok_or("SLUICE_FLOWMAILER_PHP_SDK is not set")?;
    for tree in [
        "flowmailer-php-sdk",
        "discovery",
        "client-common",
        "message",
    ] {
        if !folder.join(tree).join("src").is_dir() {
            return Err(format!("{} has no {tree}/src", folder.display()));
        }
    }
    let php = Command::new("php").arg("--version").output();
    if !php.is_ok_and(|output| output.status.success()) {
        return Err("php is not installed (apt-get install php-cli)".into());
    }
    if !Path::new("/usr/share/php/Symfony/Component/Serializer").is_dir() {
        return Err(
            "Debian's php-symfony-serializer and the SDK's other packages are missing".into(),
        );
    }
    Ok(folder)
}

#[test]
fn flowmailer_s_php_sdk_makes_every_call_and_reads_every_answer() {
    let sources = match sdk_sources() {
        Ok(sources) => sources,
        Err(why) => {
            // Straight to the process's stderr, past the test harness's capture: a skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED flowmailer_sdk::flowmailer_s_php_sdk_makes_every_call_and_reads_every_answer: {why}"
            );
            return;
        }
    };
    // The default flow archives, so the SDK's archive calls have something to read.
    let server = TestServer::start(|config| {
        config.demo.flow_steps = sluice::config::DemoConfig::default().flow_steps;
    });
    let demo = server.server.created_demo.clone().unwrap();
    let walk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/php-sdk/walk.php");
    let output = Command::new("php")
        .arg(&walk)
        .arg(format!("http://{}", server.server.api_addr))
        .arg(demo.account_id.to_string())
        .arg(&demo.client_id)
        .arg(&demo.client_secret)
        .env("SLUICE_FLOWMAILER_PHP_SDK", &sources)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut failed = BTreeMap::new();
    let mut answered = 0;
    for line in printed.lines() {
        if line.starts_with("OK   ") {
            answered += 1;
        } else if let Some(call) = line.strip_prefix("FAIL ") {
            let (name, error) = call.split_once(": ").unwrap_or((call, ""));
            failed.insert(name.to_string(), error.to_string());
        }
    }
    let expected: BTreeMap<&str, &str> = EXPECTED_REFUSALS.iter().copied().collect();
    let unexpected: Vec<_> = failed
        .iter()
        .filter(|(name, _)| !expected.contains_key(name.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}\n\n{printed}");
    for (name, why) in &expected {
        assert!(
            failed.contains_key(*name),
            "{name} was expected to be refused ({why}) but answered:\n{printed}"
        );
    }
    assert!(answered >= 70, "only {answered} calls answered:\n{printed}");
}
