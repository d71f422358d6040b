//! The DNS records a sender identity needs, and checking them against what DNS answers.

use super::{DkimConfig, dkim_record_value};
use crate::store::{IdentityValidation, RecordCheck, SenderIdentity};

/// What validation asks DNS. A lookup error other than "no such record" is reported as an
/// empty answer: the record is then simply not confirmed.
pub trait RecordLookup {
    /// The TXT records at `name`, each record's strings joined.
    fn txt(&self, name: &str) -> impl Future<Output = Vec<String>> + Send;
    /// The CNAME target at `name`, if any.
    fn cname(&self, name: &str) -> impl Future<Output = Option<String>> + Send;
}

impl RecordLookup for crate::dns::Resolver {
    async fn txt(&self, name: &str) -> Vec<String> {
        crate::dns::Resolver::txt(self, name)
            .await
            .unwrap_or_default()
    }

    async fn cname(&self, name: &str) -> Option<String> {
        crate::dns::Resolver::cname(self, name).await.ok().flatten()
    }
}

/// The records the customer publishes for an identity, none checked yet.
pub fn expected_records(config: &DkimConfig, identity: &SenderIdentity) -> Vec<RecordCheck> {
    let domain = &identity.domain;
    let record =
        |purpose: &str, kind: &str, name: String, value: String, required: bool| RecordCheck {
            purpose: purpose.into(),
            kind: kind.into(),
            name,
            value,
            required,
            found: Vec::new(),
            ok: false,
        };
    vec![
        record(
            "dkim",
            "TXT",
            format!("{}._domainkey.{domain}", identity.selector),
            dkim_record_value(identity.algorithm, &identity.public_key),
            true,
        ),
        record(
            "spf",
            "TXT",
            domain.clone(),
            format!("v=spf1 include:{} ~all", config.spf_include),
            false,
        ),
        record(
            "dmarc",
            "TXT",
            format!("_dmarc.{domain}"),
            "v=DMARC1; p=none; adkim=r; aspf=r".to_string(),
            false,
        ),
        record(
            "return-path",
            "CNAME",
            format!("{}.{domain}", config.return_path_label),
            config.return_path_domain.clone(),
            false,
        ),
        record(
            "web-domain",
            "CNAME",
            format!("{}.{domain}", config.web_label),
            config.web_domain.clone(),
            false,
        ),
    ]
}

/// Looks every record up and says which are published as expected.
pub async fn validate(
    config: &DkimConfig,
    identity: &SenderIdentity,
    dns: &impl RecordLookup,
) -> IdentityValidation {
    let mut records = expected_records(config, identity);
    for record in &mut records {
        match record.kind.as_str() {
            "TXT" => {
                record.found = dns.txt(&record.name).await;
                record.ok = record
                    .found
                    .iter()
                    .any(|found| txt_matches(&record.purpose, &record.value, found, config));
            }
            _ => {
                let target = dns.cname(&record.name).await;
                record.ok = target
                    .as_deref()
                    .is_some_and(|target| same_name(target, &record.value));
                record.found = target.into_iter().collect();
            }
        }
    }
    let ok = |purpose: &str| records.iter().any(|r| r.purpose == purpose && r.ok);
    IdentityValidation {
        checked_at: crate::store::now_millis(),
        valid: records.iter().all(|record| record.ok || !record.required),
        dkim: ok("dkim"),
        return_path: ok("return-path"),
        records,
    }
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Whether a published TXT value does what the expected one asks; not a byte comparison, since
/// people add tags, spaces and other includes.
fn txt_matches(purpose: &str, expected: &str, found: &str, config: &DkimConfig) -> bool {
    match purpose {
        "dkim" => {
            tag(found, "p").is_some_and(|p| Some(p) == tag(expected, "p"))
                && tag(found, "v").is_none_or(|v| v == "DKIM1")
        }
        "spf" => {
            let lower = found.to_ascii_lowercase();
            lower.starts_with("v=spf1")
                && lower.split_ascii_whitespace().any(|term| {
                    term.trim_start_matches(['+', '~', '?'])
                        == format!("include:{}", config.spf_include.to_ascii_lowercase())
                })
        }
        "dmarc" => tag(found, "v") == Some("DMARC1".into()) && tag(found, "p").is_some(),
        _ => false,
    }
}

/// A tag's value in a `k=v; k=v` record, whitespace removed (a long `p=` may be folded).
fn tag(record: &str, name: &str) -> Option<String> {
    record.split(';').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        (key.trim() == name).then(|| value.split_whitespace().collect())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::dkim::KeyAlgorithm;

    struct FakeDns {
        txt: HashMap<String, Vec<String>>,
        cname: HashMap<String, String>,
    }

    impl RecordLookup for FakeDns {
        async fn txt(&self, name: &str) -> Vec<String> {
            self.txt.get(name).cloned().unwrap_or_default()
        }
        async fn cname(&self, name: &str) -> Option<String> {
            self.cname.get(name).cloned()
        }
    }

    fn identity() -> SenderIdentity {
        SenderIdentity {
            id: 1,
            account_id: 1,
            domain: "shop.example".into(),
            selector: "sl1".into(),
            algorithm: KeyAlgorithm::Ed25519,
            public_key: "AAAAbbbb".into(),
            sealed_private_key: String::new(),
            created_at: 0,
            validation: None,
        }
    }

    fn run(dns: &FakeDns) -> IdentityValidation {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(validate(&DkimConfig::default(), &identity(), dns))
    }

    #[test]
    fn nothing_published_is_invalid_and_names_each_record() {
        let validation = run(&FakeDns {
            txt: HashMap::new(),
            cname: HashMap::new(),
        });
        assert!(!validation.valid && !validation.dkim && !validation.return_path);
        let names: Vec<_> = validation.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sl1._domainkey.shop.example",
                "shop.example",
                "_dmarc.shop.example",
                "bounce.shop.example",
                "links.shop.example"
            ]
        );
    }

    #[test]
    fn published_records_are_recognised_despite_formatting() {
        let dns = FakeDns {
            txt: HashMap::from([
                (
                    "sl1._domainkey.shop.example".into(),
                    vec!["v=DKIM1;k=ed25519; p=AAAA bbbb".into()],
                ),
                (
                    "shop.example".into(),
                    vec![
                        "google-site-verification=x".into(),
                        "v=spf1 mx include:_spf.sluice.example -all".into(),
                    ],
                ),
                (
                    "_dmarc.shop.example".into(),
                    vec!["v=DMARC1; p=reject".into()],
                ),
            ]),
            cname: HashMap::from([(
                "bounce.shop.example".into(),
                "Bounce.Sluice.Example.".into(),
            )]),
        };
        let validation = run(&dns);
        assert!(validation.valid && validation.dkim && validation.return_path);
        let web = validation
            .records
            .iter()
            .find(|r| r.purpose == "web-domain")
            .unwrap();
        assert!(!web.ok);
        assert!(
            validation
                .records
                .iter()
                .filter(|r| r.purpose != "web-domain")
                .all(|r| r.ok)
        );
    }

    #[test]
    fn a_different_key_does_not_validate() {
        let dns = FakeDns {
            txt: HashMap::from([(
                "sl1._domainkey.shop.example".into(),
                vec!["v=DKIM1; k=ed25519; p=CCCC".into()],
            )]),
            cname: HashMap::new(),
        };
        let validation = run(&dns);
        assert!(!validation.dkim && !validation.valid);
        assert_eq!(validation.records[0].found, ["v=DKIM1; k=ed25519; p=CCCC"]);
    }
}
