//! Which imports a Flowstep may have: the contract's own interfaces, an inert subset of WASI,
//! and the privileged capabilities the operator granted. Checked when a plugin is loaded, so a
//! component that reaches for anything else is refused with the import named.

use std::collections::BTreeSet;
use std::fmt;

/// The version of the contract this host implements.
pub const CONTRACT_PACKAGE: &str = "sluice:flowstep";
/// Major.minor of each contract version the host binds; imports of any patch of them match.
const CONTRACT_VERSIONS: [&str; 2] = ["0.1.", "0.2."];

/// A privileged host capability, granted per plugin by the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// DKIM signing with keys held by the host.
    Dkim,
    /// Storing the final message.
    Archive,
    /// Signed click and open tracking links.
    Tracking,
    /// The 'view online' link.
    OnlineLink,
    /// The account's templates.
    Templates,
}

impl Capability {
    /// Every privileged capability.
    pub const ALL: [Capability; 5] = [
        Capability::Dkim,
        Capability::Archive,
        Capability::Tracking,
        Capability::OnlineLink,
        Capability::Templates,
    ];

    /// The interface name in the contract.
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Dkim => "dkim",
            Capability::Archive => "archive",
            Capability::Tracking => "tracking",
            Capability::OnlineLink => "online-link",
            Capability::Templates => "templates",
        }
    }

    /// The capability with this interface name.
    pub fn from_interface(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|cap| cap.interface() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}

/// The privileged capabilities an operator granted one plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Granted capabilities.
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
}

impl Grants {
    /// No privileges: what every customer plugin gets.
    pub fn none() -> Self {
        Self::default()
    }

    /// Grants these capabilities.
    pub fn of(capabilities: impl IntoIterator<Item = Capability>) -> Self {
        Self {
            capabilities: capabilities.into_iter().collect(),
        }
    }
}

/// WASI interfaces a Rust (or other language's) standard library imports by itself. They are
/// linked, but inert: no environment, no arguments, no preopened directories (so no file can be
/// opened), stdin empty, stdout/stderr captured into the step's log, `exit` ends the call.
const INERT_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Why one import is not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("import `{import}` is not allowed: {reason}")]
pub struct ForbiddenImport {
    /// The import as the component names it.
    pub import: String,
    /// Why it is refused, in words an author can act on.
    pub reason: String,
}

/// Checks one import name against the policy.
pub fn check_import(import: &str, grants: &Grants) -> Result<(), ForbiddenImport> {
    let refuse = |reason: String| {
        Err(ForbiddenImport {
            import: import.to_string(),
            reason,
        })
    };
    let (path, version) = match import.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (import, None),
    };
    let Some((package, interface)) = path.split_once('/') else {
        return refuse(
            "a Flowstep may import only interfaces of sluice:flowstep and a few inert WASI ones"
                .into(),
        );
    };

    if package == CONTRACT_PACKAGE {
        let Some(version) =
            version.filter(|v| CONTRACT_VERSIONS.iter().any(|known| v.starts_with(known)))
        else {
            return refuse(format!(
                "this host implements {CONTRACT_PACKAGE}@0.2.0 (and 0.1.0); rebuild the plugin \
                 against 0.2.0"
            ));
        };
        return match interface {
            "types" | "log" => Ok(()),
            // 0.2 leaves the time to wasi:clocks.
            "clock" if version.starts_with("0.1.") => Ok(()),
            other => match Capability::from_interface(other) {
                Some(cap) if !grants.capabilities.contains(&cap) => refuse(format!(
                    "`{cap}` is a privileged capability and the operator has not granted it \
                     to this plugin"
                )),
                Some(_) => Ok(()),
                None => refuse(format!("{CONTRACT_PACKAGE} has no interface `{other}`")),
            },
        };
    }

    if package.starts_with("wasi:") && INERT_WASI.contains(&path) {
        return if version.is_some_and(|v| v.starts_with("0.2.")) {
            Ok(())
        } else {
            refuse("only WASI 0.2 interfaces are linked".into())
        };
    }
    match package {
        "wasi:sockets" | "wasi:http" => refuse("Flowsteps have no network access".into()),
        "wasi:filesystem" | "wasi:cli" | "wasi:clocks" | "wasi:io" | "wasi:random" => {
            refuse("this WASI interface is not linked for Flowsteps".into())
        }
        _ => refuse(format!(
            "a Flowstep may import only {CONTRACT_PACKAGE} interfaces (and the WASI ones a \
             standard library needs), not `{package}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_and_inert_wasi_are_allowed() {
        let none = Grants::none();
        for import in [
            "sluice:flowstep/types@0.1.0",
            "sluice:flowstep/log@0.1.0",
            "wasi:cli/environment@0.2.6",
            "wasi:io/streams@0.2.0",
        ] {
            assert_eq!(check_import(import, &none), Ok(()), "{import}");
        }
    }

    #[test]
    fn network_and_unknown_imports_are_refused_with_a_reason() {
        let none = Grants::none();
        let error = check_import("wasi:sockets/tcp@0.2.0", &none).unwrap_err();
        assert!(error.to_string().contains("no network access"), "{error}");
        assert!(check_import("acme:evil/thing@1.0.0", &none).is_err());
        assert_eq!(check_import("sluice:flowstep/types@0.2.0", &none), Ok(()));
        assert!(check_import("sluice:flowstep/clock@0.2.0", &none).is_err());
        assert!(check_import("sluice:flowstep/types@0.3.0", &none).is_err());
        assert!(check_import("wasi:cli/environment@0.3.0", &none).is_err());
    }

    #[test]
    fn privileged_capabilities_need_a_grant() {
        let error = check_import("sluice:flowstep/dkim@0.1.0", &Grants::none()).unwrap_err();
        assert!(error.reason.contains("not granted"), "{error}");
        let granted = Grants::of([Capability::Dkim]);
        assert_eq!(check_import("sluice:flowstep/dkim@0.1.0", &granted), Ok(()));
        let error = check_import("sluice:flowstep/archive@0.1.0", &granted).unwrap_err();
        assert!(error.reason.contains("not granted"), "{error}");
        let granted = Grants::of([Capability::Tracking]);
        assert_eq!(
            check_import("sluice:flowstep/tracking@0.1.0", &granted),
            Ok(())
        );
        assert!(check_import("sluice:flowstep/tracking@0.1.0", &Grants::none()).is_err());
    }
}
