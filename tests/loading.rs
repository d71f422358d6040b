//! What is refused at load time, and the compiled-code cache.

use sluice::plugin::{Capability, CompiledCache, Grants, LoadError, PluginRuntime};

use crate::util::guests;
use crate::util::{guest_bytes, message, test_limits};

fn fresh_runtime() -> std::sync::Arc<PluginRuntime> {
    PluginRuntime::new(test_limits(), None).unwrap()
}

#[test]
fn a_component_importing_sockets_is_refused_with_the_import_named() {
    let runtime = fresh_runtime();
    let error = runtime
        .load(
            "phone-home",
            &guest_bytes(guests::TEST_FORBIDDEN_IMPORT),
            Grants::none(),
        )
        .unwrap_err();
    match &error {
        LoadError::ForbiddenImport(forbidden) => {
            assert!(forbidden.import.starts_with("wasi:sockets/"), "{error}");
            assert_eq!(forbidden.reason, "Flowsteps have no network access");
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
    // Granting every privilege does not open the network either.
    let all = Grants::of(Capability::ALL);
    assert!(
        runtime
            .load(
                "phone-home",
                &guest_bytes(guests::TEST_FORBIDDEN_IMPORT),
                all
            )
            .is_err()
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused_clearly() {
    let runtime = fresh_runtime();
    let core_module = b"\0asm\x01\0\0\0";
    let error = runtime
        .load("core", core_module, Grants::none())
        .unwrap_err();
    assert!(
        error.to_string().contains("core WebAssembly module"),
        "{error}"
    );
    let error = runtime.load("text", b"hello", Grants::none()).unwrap_err();
    assert!(error.to_string().contains("magic number"), "{error}");
}

#[test]
fn compiled_code_is_reused_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guest_bytes(guests::SUBJECT_PREFIX);
    let cache = CompiledCache::open(dir.path()).unwrap();
    let first = PluginRuntime::new(test_limits(), Some(cache.clone())).unwrap();
    first.load("p", &bytes, Grants::none()).unwrap();

    let entries = cache_entries(dir.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let written = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    // A second runtime (a restart) loads from the entry without writing it again.
    let second = PluginRuntime::new(test_limits(), Some(cache)).unwrap();
    let plugin = second.load("p", &bytes, Grants::none()).unwrap();
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap(),
        written
    );
    plugin
        .run(&message("plain.eml"), r#"{"prefix": "[x]"}"#)
        .unwrap();
}

#[test]
fn a_cache_entry_the_host_did_not_write_is_never_loaded() {
    let bytes = guest_bytes(guests::SUBJECT_PREFIX);
    // Another host (another key) writes an entry; this host must not trust it.
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = CompiledCache::open(foreign_dir.path()).unwrap();
    PluginRuntime::new(test_limits(), Some(foreign))
        .unwrap()
        .load("p", &bytes, Grants::none())
        .unwrap();
    let foreign_entry = cache_entries(foreign_dir.path()).remove(0);

    let own_dir = tempfile::tempdir().unwrap();
    let own = CompiledCache::open(own_dir.path()).unwrap();
    let relative = foreign_entry.strip_prefix(foreign_dir.path()).unwrap();
    let planted = own_dir.path().join(relative);
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::copy(&foreign_entry, &planted).unwrap();

    let plugin = PluginRuntime::new(test_limits(), Some(own))
        .unwrap()
        .load("p", &bytes, Grants::none())
        .unwrap();
    plugin
        .run(&message("plain.eml"), r#"{"prefix": "[x]"}"#)
        .unwrap();
    // The planted file was replaced by one this host compiled and authenticated.
    assert_ne!(
        std::fs::read(&planted).unwrap(),
        std::fs::read(&foreign_entry).unwrap()
    );
}

fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries = Vec::new();
    for folder in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        if folder.path().is_dir() {
            for entry in std::fs::read_dir(folder.path())
                .unwrap()
                .filter_map(Result::ok)
            {
                if entry.path().extension().is_some_and(|ext| ext == "cwasm") {
                    entries.push(entry.path());
                }
            }
        }
    }
    entries
}
