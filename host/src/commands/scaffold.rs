//! `sluice plugin new`: a Flowstep project that builds with one command and passes
//! `sluice plugin check` as it is. The project carries what it needs (the contract's WIT and,
//! for Rust, the SDK's source), so it builds outside this repository.

use std::path::{Path, PathBuf};

/// The language of a new Flowstep project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// A Rust crate on the Sluice SDK, built with cargo.
    Rust,
}

/// The contract every new project is built against.
const CONTRACT_WIT: &str = include_str!("../../../wit/flowstep.wit");

/// The Rust SDK, copied into each Rust project.
const RUST_SDK_SOURCE: &str = include_str!("../../../plugin-sdk/src/lib.rs");

/// The versions the SDK is built and tested with here, given to a project's copy of it: the
/// template's hole, the crate, its version.
const RUST_SDK_DEPENDENCIES: &[(&str, &str, &str)] = &[
    ("serde", "serde", "1"),
    ("serde_json", "serde_json", "1"),
    ("wit_bindgen", "wit-bindgen", "0.61"),
];

/// One file of a template: where it goes in the project, and its text with `{{…}}` holes.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

const RUST_TEMPLATE: &[TemplateFile] = &[
    TemplateFile {
        path: "Cargo.toml",
        text: include_str!("../../../plugin-sdk/templates/rust/Cargo.toml.tmpl"),
    },
    TemplateFile {
        path: "src/lib.rs",
        text: include_str!("../../../plugin-sdk/templates/rust/lib.rs.tmpl"),
    },
    TemplateFile {
        path: "README.md",
        text: include_str!("../../../plugin-sdk/templates/rust/README.md.tmpl"),
    },
    TemplateFile {
        path: ".cargo/config.toml",
        text: include_str!("../../../plugin-sdk/templates/rust/cargo-config.toml.tmpl"),
    },
    TemplateFile {
        path: "rust-toolchain.toml",
        text: include_str!("../../../plugin-sdk/templates/rust/rust-toolchain.toml.tmpl"),
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../../../plugin-sdk/templates/rust/gitignore.tmpl"),
    },
    TemplateFile {
        path: "sluice-plugin-sdk/Cargo.toml",
        text: include_str!("../../../plugin-sdk/templates/rust/sdk-Cargo.toml.tmpl"),
    },
    TemplateFile {
        path: "sluice-plugin-sdk/src/lib.rs",
        text: RUST_SDK_SOURCE,
    },
    TemplateFile {
        path: "wit/flowstep.wit",
        text: CONTRACT_WIT,
    },
];

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a package name in every language's toolchain.
    #[error(
        "{0:?} cannot be a Flowstep's name: use lowercase ASCII letters, digits and '-', \
         starting with a letter (at most 64 characters)"
    )]
    InvalidName(String),
    /// The folder is there already; nothing is overwritten.
    #[error("{0} exists already; choose another name or folder")]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Creates the project `name` of `language` in `parent`/`name`; returns its folder.
pub fn create(language: Language, name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    if !is_valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_string()));
    }
    let root = parent.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let template = match language {
        Language::Rust => RUST_TEMPLATE,
    };
    let holes = holes(name);
    for file in template {
        let path = root.join(file.path);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            std::fs::write(path, fill(file.text, &holes))
        };
        write(&path).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(root)
}

/// A name every toolchain takes as a package name: a Cargo package, an npm package, a Python
/// project, and a file name.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// What the `{{…}}` holes of the templates are filled with.
fn holes(name: &str) -> Vec<(&'static str, String)> {
    let mut holes = vec![
        ("name", name.to_string()),
        ("crate_name", name.replace('-', "_")),
        ("sdk_version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    holes.extend(
        RUST_SDK_DEPENDENCIES
            .iter()
            .map(|(hole, _, version)| (*hole, version.to_string())),
    );
    holes
}

fn fill(text: &str, holes: &[(&str, String)]) -> String {
    holes.iter().fold(text.to_string(), |text, (hole, value)| {
        text.replace(&format!("{{{{{hole}}}}}"), value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_every_toolchain_takes_are_accepted() {
        for good in ["my-step", "footer2", "a"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "", "My-Step", "2step", "my_step", "my step", "../up", "step-", "é",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_hole_of_every_template_is_filled() {
        let holes = holes("my-step");
        for file in RUST_TEMPLATE {
            let filled = fill(file.text, &holes);
            // The SDK's own source has no holes; its bindgen macros use braces of their own.
            if file.text == RUST_SDK_SOURCE || file.text == CONTRACT_WIT {
                continue;
            }
            assert!(!filled.contains("{{"), "{}: {filled}", file.path);
        }
    }

    #[test]
    fn the_sdk_copy_depends_on_the_versions_the_workspace_builds_it_with() {
        let workspace: toml::Table = include_str!("../../../Cargo.toml")
            .parse()
            .expect("Cargo.toml");
        let dependencies = &workspace["workspace"]["dependencies"];
        for (_, dependency, version) in RUST_SDK_DEPENDENCIES {
            let entry = &dependencies[*dependency];
            let used = entry
                .as_str()
                .or_else(|| entry.get("version").and_then(|v| v.as_str()))
                .expect("a version");
            assert_eq!(used, *version, "{dependency}");
        }
    }
}
