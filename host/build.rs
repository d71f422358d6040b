//! Builds the guest crates (example and test Flowsteps, built-in plugins) for `wasm32-wasip2`,
//! so a plain `cargo build` or `cargo test` needs no manual step. The components land in
//! `target/guests/wasm32-wasip2/guest/`, whose path reaches the host's code, tests and benches
//! as `SLUICE_GUESTS_DIR`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";
/// Folders whose every sub-folder with a Cargo.toml is a guest crate.
const GUEST_FOLDERS: &[&str] = &["examples", "plugins", "tests/components"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();

    for watched in ["wit", "plugin-sdk", "Cargo.lock", ".cargo/config.toml"]
        .into_iter()
        .chain(GUEST_FOLDERS.iter().copied())
    {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let packages = guest_packages(&workspace);
    let target_dir = workspace.join("target").join("guests");
    let out_dir = target_dir.join(WASM_TARGET).join("guest");
    println!("cargo:rustc-env=SLUICE_GUESTS_DIR={}", out_dir.display());
    if packages.is_empty() {
        return;
    }

    ensure_wasm_target();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--target", WASM_TARGET, "--profile", "guest"])
        .arg("--target-dir")
        .arg(&target_dir);
    for package in &packages {
        command.args(["-p", package]);
    }
    // The outer build's settings (rustflags for the host, clippy's wrapper, its target dir)
    // must not leak into the guest build; the jobserver (CARGO_MAKEFLAGS) may, to share cores.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = key == "CARGO_HOME" || key == "CARGO_MAKEFLAGS" || key == "CARGO_NET_OFFLINE";
        if (key.starts_with("CARGO_") && !keep)
            || matches!(
                key.as_str(),
                "RUSTFLAGS" | "RUSTC" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER" | "RUSTDOC"
            )
        {
            command.env_remove(&key);
        }
    }
    let status = command
        .status()
        .expect("cargo could not be started to build the guest components");
    assert!(
        status.success(),
        "building the guest components for {WASM_TARGET} failed (see the output above)"
    );
}

/// The package names of the guest crates, read from their manifests.
fn guest_packages(workspace: &Path) -> Vec<String> {
    let mut packages = Vec::new();
    for folder in GUEST_FOLDERS {
        let Ok(entries) = std::fs::read_dir(workspace.join(folder)) else {
            continue;
        };
        let mut manifests: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("Cargo.toml"))
            .filter(|manifest| manifest.is_file())
            .collect();
        manifests.sort();
        for manifest in manifests {
            let text = std::fs::read_to_string(&manifest).expect("readable guest manifest");
            let name = text
                .lines()
                .find_map(|line| {
                    let value = line.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
                    Some(value.trim().trim_matches('"').to_string())
                })
                .unwrap_or_else(|| panic!("{} has no package name", manifest.display()));
            packages.push(name);
        }
    }
    packages
}

/// Installs the wasm32-wasip2 standard library through rustup when it is missing.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .is_dir()
    {
        return;
    }
    println!("cargo:warning=installing the {WASM_TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .expect("rustup is needed to install the wasm32-wasip2 target");
    assert!(status.success(), "rustup target add {WASM_TARGET} failed");
}
