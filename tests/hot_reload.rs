//! The plugin folder: loading, swapping under load, refusing a broken file, unloading.

use std::sync::mpsc;
use std::time::Duration;

use sluice::plugin::registry::{FolderChange, PluginFolder, PluginRegistry};
use sluice::plugin::{RuntimeLimits, StepOutcome, hex_sha256};

use crate::util::guests;
use crate::util::{guest_bytes, message, runtime, test_limits};

/// Waits for the folder watch to report a change, passing over the `Unchanged` reports of
/// events that changed nothing (a rename can arrive as more than one batch).
fn next_change(changes: &mpsc::Receiver<FolderChange>) -> FolderChange {
    loop {
        match changes.recv_timeout(Duration::from_secs(30)) {
            Ok(FolderChange::Unchanged { .. }) => continue,
            Ok(change) => return change,
            Err(error) => panic!("the folder watch reported no change: {error}"),
        }
    }
}

/// Replaces a file the way operators should: write aside, then rename over it.
fn install(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let staged = dir.join(format!(".{name}.partial"));
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(&staged, dir.join(name)).unwrap();
}

#[test]
fn plugins_are_hot_swapped_while_calls_are_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let first = guest_bytes(guests::TEST_MISBEHAVE);
    let second = guest_bytes(guests::SUBJECT_PREFIX);
    install(dir.path(), "step.wasm", &first);

    let runtime = runtime(RuntimeLimits {
        deadline: Duration::from_secs(20),
        cpu_budget: Duration::from_secs(20),
        ..test_limits()
    });
    let registry = PluginRegistry::new();
    let (sender, changes) = mpsc::channel();
    let _watch = PluginFolder::new(dir.path(), runtime, registry.clone())
        .watch(Duration::from_millis(50), move |change| {
            let _ = sender.send(change.clone());
        })
        .unwrap();
    assert!(matches!(next_change(&changes), FolderChange::Loaded { name, .. } if name == "step"));
    assert_eq!(registry.get("step").unwrap().sha256(), hex_sha256(&first));

    // A long call starts on the first version...
    let in_flight = {
        let plugin = registry.get("step").unwrap();
        std::thread::spawn(move || {
            plugin.run(
                &message("plain.eml"),
                r#"{"behaviour": "busy", "millis": 3000, "version": "first"}"#,
            )
        })
    };
    std::thread::sleep(Duration::from_millis(100));

    // ...and the file is replaced while it runs.
    install(dir.path(), "step.wasm", &second);
    match next_change(&changes) {
        FolderChange::Loaded { name, sha256 } => {
            assert_eq!(name, "step");
            assert_eq!(sha256, hex_sha256(&second));
        }
        other => panic!("expected the new version to load, got {other:?}"),
    }
    assert!(
        !in_flight.is_finished(),
        "the swap must happen during the call"
    );

    // New calls get the new version at once.
    let run = registry
        .get("step")
        .unwrap()
        .run(&message("plain.eml"), r#"{"prefix": "[v2]"}"#)
        .unwrap();
    assert_eq!(
        run.message.header("Subject").as_deref(),
        Some("[v2] Your order")
    );

    // The call in flight finished on the version it started with.
    let finished = in_flight.join().unwrap().unwrap();
    assert_eq!(finished.outcome, StepOutcome::Continue);
    assert_eq!(
        finished.message.header("X-Version").as_deref(),
        Some("first")
    );

    // A broken file is refused and the working version stays in service.
    install(dir.path(), "step.wasm", b"\0asm broken");
    match next_change(&changes) {
        FolderChange::Rejected { name, error } => {
            assert_eq!(name, "step");
            assert!(error.contains("not a WebAssembly component"), "{error}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(registry.get("step").unwrap().sha256(), hex_sha256(&second));

    // Deleting the file unloads the plugin.
    std::fs::remove_file(dir.path().join("step.wasm")).unwrap();
    loop {
        match next_change(&changes) {
            FolderChange::Unloaded { name } if name == "step" => break,
            // Deleting may be preceded by events for the earlier write.
            FolderChange::Rejected { .. } => continue,
            other => panic!("expected the plugin to unload, got {other:?}"),
        }
    }
    assert!(registry.get("step").is_none());
}

#[test]
fn a_manifest_beside_the_component_states_its_grants() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "prefix.wasm",
        &guest_bytes(guests::SUBJECT_PREFIX),
    );
    std::fs::write(
        dir.path().join("prefix.toml"),
        "capabilities = [\"dkim\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("typo.toml"), "capabilitys = 1\n").unwrap();
    install(
        dir.path(),
        "typo.wasm",
        &guest_bytes(guests::SUBJECT_PREFIX),
    );

    let registry = PluginRegistry::new();
    let folder = PluginFolder::new(dir.path(), runtime(test_limits()), registry.clone());
    let changes = folder.load_all().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    let prefix = registry.get("prefix").unwrap();
    assert!(
        prefix
            .grants()
            .capabilities
            .contains(&sluice::plugin::Capability::Dkim)
    );
    assert!(registry.get("typo").is_none());
    assert!(changes.iter().any(|change| matches!(
        change,
        FolderChange::Rejected { name, error } if name == "typo" && error.contains("capabilitys")
    )));
}
