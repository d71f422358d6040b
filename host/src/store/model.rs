//! The records the store keeps, as they are serialized (JSON inside redb values).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A tenant. Everything else belongs to exactly one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    pub id: u64,
    /// A name for people.
    pub name: String,
    /// The sha256 of the account's own bounce classifier, if it installed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_classifier: Option<String>,
}

/// One sending application of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredSource")]
pub struct Source {
    /// Its id.
    pub id: u64,
    /// The account it belongs to.
    pub account_id: u64,
    /// A name for people.
    pub name: String,
    /// Networks it may connect from: `None` means anywhere, an empty list nobody. Kept under
    /// its own key: records written before it used `allowed_networks`, where empty meant
    /// anywhere.
    #[serde(rename = "allowlist")]
    pub allowed_networks: Option<Vec<IpNet>>,
    /// The largest message it may submit, in bytes.
    pub max_message_bytes: usize,
    /// Refuse mail from it over a connection without TLS.
    pub require_tls: bool,
    /// Allow AUTH before STARTTLS (for clients on a trusted network that cannot do TLS).
    pub allow_plain_auth: bool,
    /// Where spam complaints about its messages are forwarded, if anywhere.
    #[serde(default)]
    pub feedback_address: Option<String>,
}

impl Source {
    /// Whether a client at `ip` may use the source. An IPv4 client seen as an IPv6 address
    /// (`::ffff:192.0.2.7`, on a dual-stack socket or in a balancer's PROXY header) is
    /// matched as the IPv4 address it is.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed_networks
            .as_ref()
            .is_none_or(|networks| networks.iter().any(|net| net.contains(&ip)))
    }
}

/// A source as stored, old records included.
#[derive(Deserialize)]
struct StoredSource {
    id: u64,
    account_id: u64,
    name: String,
    /// The allowlist as written since empty lists mean nobody; absent in older records.
    #[serde(default, deserialize_with = "present")]
    allowlist: Option<Option<Vec<IpNet>>>,
    /// The allowlist of older records, where empty meant anywhere.
    #[serde(default)]
    allowed_networks: Vec<IpNet>,
    max_message_bytes: usize,
    require_tls: bool,
    allow_plain_auth: bool,
    #[serde(default)]
    feedback_address: Option<String>,
}

impl From<StoredSource> for Source {
    fn from(stored: StoredSource) -> Self {
        let allowed_networks = match stored.allowlist {
            Some(allowlist) => allowlist,
            None if stored.allowed_networks.is_empty() => None,
            None => Some(stored.allowed_networks),
        };
        Self {
            id: stored.id,
            account_id: stored.account_id,
            name: stored.name,
            allowed_networks,
            max_message_bytes: stored.max_message_bytes,
            require_tls: stored.require_tls,
            allow_plain_auth: stored.allow_plain_auth,
            feedback_address: stored.feedback_address,
        }
    }
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`, with
/// `#[serde(default)]`).
pub fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// How a credential may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// SMTP AUTH username/password.
    Smtp,
    /// REST API client id/secret.
    Api,
}

/// A username (SMTP) or client id (API) with the argon2 hash of its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The username or client id.
    pub username: String,
    /// SMTP or API.
    pub kind: CredentialKind,
    /// The source it authenticates as.
    pub source_id: u64,
    /// The account of that source.
    pub account_id: u64,
    /// The secret as an argon2 PHC string; the secret itself is never stored.
    pub secret_hash: String,
    /// What the account wrote about it (Flowmailer's `description`); records stored before
    /// credentials had one decode with none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One step of a flow: a plugin (by sha256) with its configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flowstep {
    /// The sha256 of the plugin component, or the name of a plugin in the operator's folder.
    pub plugin: String,
    /// The step's JSON configuration.
    #[serde(default = "empty_config")]
    pub config: serde_json::Value,
    /// Run the step only when this condition holds on the message.
    #[serde(default)]
    pub enabled_when: Option<Condition>,
}

fn empty_config() -> serde_json::Value {
    serde_json::json!({})
}

/// A message stream with its own steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Its id.
    pub id: u64,
    /// The account it belongs to.
    pub account_id: u64,
    /// A name for people.
    pub name: String,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<Flowstep>,
    /// How long its messages may keep failing temporarily before they soft-bounce (hours);
    /// the delivery default when unset.
    #[serde(default)]
    pub expiry_hours: Option<u64>,
}

impl Flow {
    /// The most steps one flow may have: the API refuses more, and a message keeps at most
    /// this many step results.
    pub const MAX_STEPS: usize = 64;
}

/// What one step of a message's flow did, kept with the message for its page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// The step's position in the flow, from 1.
    pub number: u16,
    /// The plugin the step named: a stored plugin's sha256 or a folder plugin's name.
    pub plugin: String,
    /// What the step came to.
    pub outcome: StepResultOutcome,
    /// Wall time of the call in microseconds, instantiation included (0 when it did not run).
    #[serde(default)]
    pub micros: u64,
    /// Fuel the call used, when fuel metering is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

/// What a step came to, as kept with the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepResultOutcome {
    /// Its condition did not hold; it did not run.
    Skipped,
    /// It passed the message on.
    Continued,
    /// It held the message.
    Held,
    /// It discarded the message.
    Discarded,
    /// It failed (or could not run); the code names the case (`trap`, `timeout`, ...).
    Failed(String),
}

impl StepResultOutcome {
    /// A word for people: the outcome, and a failure's code.
    pub fn describe(&self) -> String {
        match self {
            Self::Skipped => "skipped".into(),
            Self::Continued => "continued".into(),
            Self::Held => "held".into(),
            Self::Discarded => "discarded".into(),
            Self::Failed(code) => format!("failed ({code})"),
        }
    }
}

/// Where a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageStatus {
    /// Accepted and spooled, its flow not run yet.
    Submitted,
    /// Through its flow, ready for delivery.
    Processed,
    /// Stopped by a step or a failing step, kept for a person to look at.
    Held,
    /// Dropped by a step on purpose.
    Discarded,
    /// Accepted by the recipient's server.
    Delivered,
    /// Not delivered: the recipient's server refused it for now or for this message, or it
    /// kept failing until it expired.
    #[serde(rename = "SOFTBOUNCE")]
    SoftBounce,
    /// Not delivered: the address does not exist (the recipient is on the filter list now).
    #[serde(rename = "HARDBOUNCE")]
    HardBounce,
    /// Not sent: the recipient is on the account's filter list.
    Rejected,
}

/// One recipient's copy of a submitted mail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Its id: sortable by submission time.
    pub id: String,
    /// The account.
    pub account_id: u64,
    /// The source that submitted it.
    pub source_id: u64,
    /// SMTP or REST.
    pub submitted_over: String,
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipient.
    pub recipient: String,
    /// Milliseconds since the Unix epoch.
    pub submitted_at: u64,
    /// The submitted JSON data, if any.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// The flow selector given at submission, if any.
    #[serde(default)]
    pub flow_selector: Option<String>,
    /// The flow it was sorted into, once known.
    #[serde(default)]
    pub flow_id: Option<u64>,
    /// Where it stands.
    pub status: MessageStatus,
    /// Why it is held or discarded.
    #[serde(default)]
    pub status_reason: Option<String>,
    /// The Subject header, for lists.
    #[serde(default)]
    pub subject: Option<String>,
    /// Tags given at submission.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When the sender asked for it to be sent (ISO 8601), if not at once.
    #[serde(default)]
    pub schedule_at: Option<String>,
    /// Whether DMARC would pass by alignment, once the DKIM step signed it.
    #[serde(default)]
    pub dmarc: Option<DmarcReport>,
    /// The Message-ID header of the copy as sent, so returned mail that lost its return path
    /// can still be tied to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_message_id: Option<String>,
    /// The message this one is a resend of, made from its submitted copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_from: Option<String>,
    /// What each step of its flow did, in order, once the flow ran (at most
    /// [`Flow::MAX_STEPS`]); empty for records written before steps were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// The number its next event gets, kept here so appending an event needs no read of the
    /// events (the record's lock orders appends); none for a record written before it was
    /// kept, whose events tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_event: Option<u32>,
}

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// The kind of an event: Flowmailer's event names, and the host's own (DISCARDED,
        /// REDIRECTED, AUTOREPLY, DELAYED), spelled the same in the store, the API and webhooks.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum EventKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl EventKind {
            /// Every kind, in the order webhook subscriptions number them.
            pub const ALL: [EventKind; [$($name),*].len()] = [$(EventKind::$variant),*];

            /// The name as Flowmailer spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// The kind with this name, exactly as spelled.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    /// Accepted and stored.
    Submitted = "SUBMITTED",
    /// Through its flow, waiting for delivery.
    Processed = "PROCESSED",
    /// Stopped for a person: a step held it or failed.
    Held = "HELD",
    /// Something went wrong (a step's error, with its code).
    Error = "ERROR",
    /// A delivery attempt that will be retried.
    Attempt = "ATTEMPT",
    /// Accepted by the recipient's server.
    Delivered = "DELIVERED",
    /// A temporary failure that ended delivery (expiry) or a soft bounce.
    SoftBounce = "SOFTBOUNCE",
    /// A permanent failure: the recipient goes on the filter list.
    HardBounce = "HARDBOUNCE",
    /// Not sent: the recipient is on the filter list.
    Reject = "REJECT",
    /// The recipient complained (a feedback report).
    Complaint = "COMPLAINT",
    /// The open pixel was fetched.
    Opened = "OPENED",
    /// A tracked link was followed.
    Clicked = "CLICKED",
    /// The recipient unsubscribed.
    Unsubscribe = "UNSUBSCRIBE",
    /// A step discarded the message.
    Discarded = "DISCARDED",
    /// A step sent the copy to another recipient.
    Redirected = "REDIRECTED",
    /// The recipient's mailbox answered automatically (vacation, out of office).
    AutoReply = "AUTOREPLY",
    /// The recipient's server reported a delay.
    Delayed = "DELAYED",
    /// Sent again as a new message (named in the detail), made from the submitted copy.
    Resent = "RESENT",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a message, with Flowmailer's event names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// SUBMITTED, PROCESSED, HELD, ERROR, ...
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// Details for people (reason, step, error code...).
    #[serde(default)]
    pub detail: Option<String>,
}

/// A domain an account sends from, with the DKIM key the host made for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderIdentity {
    /// Its id.
    pub id: u64,
    /// The account it belongs to.
    pub account_id: u64,
    /// The From domain it signs for (lower case).
    pub domain: String,
    /// The DKIM selector.
    pub selector: String,
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The public key, base64, as published in `p=`.
    pub public_key: String,
    /// The private key (DER) sealed under the host's master key, hex.
    pub sealed_private_key: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// The last DNS check, if any.
    #[serde(default)]
    pub validation: Option<IdentityValidation>,
}

/// The result of checking an identity's DNS records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityValidation {
    /// When it was checked (milliseconds since the Unix epoch).
    pub checked_at: u64,
    /// Every required record is published as expected.
    pub valid: bool,
    /// The DKIM key is published: signatures with it verify.
    pub dkim: bool,
    /// The return-path CNAME points at the platform: bounces can use the customer's domain.
    pub return_path: bool,
    /// Each record, as expected and as found.
    pub records: Vec<RecordCheck>,
}

/// One DNS record to publish, and what DNS answered for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordCheck {
    /// What it is for: dkim, spf, dmarc, return-path, web-domain.
    pub purpose: String,
    /// TXT or CNAME.
    #[serde(rename = "type")]
    pub kind: String,
    /// The name to publish.
    pub name: String,
    /// The value to publish.
    pub value: String,
    /// Whether the record must be there for the identity to be valid.
    pub required: bool,
    /// What DNS answered (empty when nothing was found).
    #[serde(default)]
    pub found: Vec<String>,
    /// The answer matches.
    #[serde(default)]
    pub ok: bool,
}

/// A template of an account: template sources for the subject, the html and the text body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// Its id.
    pub id: u64,
    /// The account it belongs to.
    pub account_id: u64,
    /// The name template steps refer to it by; unique in the account.
    pub name: String,
    /// The Subject template.
    #[serde(default)]
    pub subject: Option<String>,
    /// The html body template.
    #[serde(default)]
    pub html: Option<String>,
    /// The text body template.
    #[serde(default)]
    pub text: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
}

/// A message's archived copy: when it was stored and until when it is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveEntry {
    /// The message.
    pub message_id: String,
    /// The account of the message.
    pub account_id: u64,
    /// Milliseconds since the Unix epoch.
    pub stored_at: u64,
    /// When it is purged (milliseconds since the Unix epoch).
    pub expires_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_stored_before_descriptions_decodes_and_stays_the_same_when_written() {
        let stored = r#"{"username":"c1","kind":"api","source_id":1,"account_id":1,"secret_hash":"$argon2id$x"}"#;
        let credential: Credential = serde_json::from_str(stored).unwrap();
        assert_eq!(credential.description, None);
        // Written again without a description, the record is what it was.
        assert_eq!(serde_json::to_string(&credential).unwrap(), stored);
        let described = Credential {
            description: Some("billing app".into()),
            ..credential
        };
        let again: Credential =
            serde_json::from_str(&serde_json::to_string(&described).unwrap()).unwrap();
        assert_eq!(again, described);
    }

    fn source(json: serde_json::Value) -> Source {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_empty_allowlist_admits_nobody_and_none_anybody() {
        let base = serde_json::json!({"id": 1, "account_id": 1, "name": "s",
            "max_message_bytes": 10, "require_tls": false, "allow_plain_auth": false});
        let ip = "192.0.2.7".parse().unwrap();
        let with = |key: &str, value: serde_json::Value| {
            let mut json = base.clone();
            json[key] = value;
            source(json)
        };
        assert!(!with("allowlist", serde_json::json!([])).admits(ip));
        assert!(with("allowlist", serde_json::Value::Null).admits(ip));
        assert!(with("allowlist", serde_json::json!(["192.0.2.0/24"])).admits(ip));
        assert!(!with("allowlist", serde_json::json!(["198.51.100.0/24"])).admits(ip));
        let mapped = "::ffff:192.0.2.7".parse().unwrap();
        assert!(with("allowlist", serde_json::json!(["192.0.2.0/24"])).admits(mapped));
        assert!(!with("allowlist", serde_json::json!(["198.51.100.0/24"])).admits(mapped));
        // Records written before the allowlist key: an empty list meant anywhere.
        assert!(with("allowed_networks", serde_json::json!([])).admits(ip));
        assert!(source(base.clone()).admits(ip));
        assert!(!with("allowed_networks", serde_json::json!(["198.51.100.0/24"])).admits(ip));
        // What is written reads back the same.
        let nobody = with("allowlist", serde_json::json!([]));
        let again: Source = serde_json::from_slice(&serde_json::to_vec(&nobody).unwrap()).unwrap();
        assert_eq!(again, nobody);
        let anybody = source(base);
        let again: Source = serde_json::from_slice(&serde_json::to_vec(&anybody).unwrap()).unwrap();
        assert_eq!(again, anybody);
    }
}

// ---- flow rules (evaluated in `flow::rules`)

/// One condition on a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Condition {
    /// Submitted by this source.
    Source {
        /// The source's id.
        source_id: u64,
    },
    /// Submitted with this flow selector (REST `flowSelector`, SMTP `X-Flow-Selector`).
    FlowSelector {
        /// The selector, compared exactly.
        equals: String,
    },
    /// The envelope sender matches: `user@example.com`, `*@example.com` or `example.com`
    /// (the domain and its subdomains).
    Sender {
        /// The pattern, case-insensitive.
        pattern: String,
    },
    /// A header is present, optionally with a value (case-insensitive) or containing text.
    Header {
        /// The header name.
        name: String,
        /// The whole decoded value must equal this.
        #[serde(default)]
        equals: Option<String>,
        /// The decoded value must contain this.
        #[serde(default)]
        contains: Option<String>,
    },
    /// A value in the submitted JSON data, found by JSON pointer (`/order/type`), equals this.
    Data {
        /// RFC 6901 pointer into the data.
        pointer: String,
        /// The value it must have.
        equals: serde_json::Value,
    },
}

/// A rule: when every condition holds, the message goes to `flow_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRule {
    /// The flow the message goes to.
    pub flow_id: u64,
    /// Conditions that must all hold; none means always.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// An account's flow rules, in order, and its default flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Tried in order.
    #[serde(default)]
    pub rules: Vec<FlowRule>,
    /// Where a message goes when no rule matches.
    pub default_flow_id: u64,
}

// ---- DKIM (keys made and used in `dkim`)

/// The signature algorithm of a DKIM key.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// RSA with a 2048-bit modulus: what every verifier understands.
    #[default]
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// Ed25519 (RFC 8463): small and fast, not yet verified everywhere.
    Ed25519,
}

/// One DKIM signature the host added, and whether its domain aligns with From.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureAlignment {
    /// The `d=` domain.
    pub domain: String,
    /// The `s=` selector.
    pub selector: String,
    /// Same organizational domain as the From domain (relaxed alignment).
    pub aligned: bool,
}

/// The DMARC alignment of one message, as shown on the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DmarcReport {
    /// The domain of the From address; none when the message has no parsable From.
    pub from_domain: Option<String>,
    /// The signatures added.
    pub signatures: Vec<SignatureAlignment>,
    /// Some signature's domain aligns with From.
    pub dkim_aligned: bool,
    /// The domain of the envelope sender delivery will use.
    pub return_path_domain: String,
    /// The return-path domain aligns with From (SPF alignment).
    pub spf_aligned: bool,
    /// DMARC passes by alignment: DKIM or SPF aligned.
    pub pass: bool,
    /// The account's sender identity for the From domain has its DNS records validated, so
    /// receivers can verify its signature.
    pub identity_validated: bool,
}

#[cfg(test)]
mod event_kind_tests {
    use super::EventKind;

    #[test]
    fn every_kind_is_spelled_as_flowmailer_spells_it_everywhere() {
        for kind in EventKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), kind);
            assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(EventKind::SoftBounce.as_str(), "SOFTBOUNCE");
        assert_eq!(EventKind::from_name("delivered"), None);
        // An event stored before kinds were typed reads back the same.
        let stored = r#"{"type":"HARDBOUNCE","at":1,"detail":null}"#;
        let event: super::Event = serde_json::from_str(stored).unwrap();
        assert_eq!(event.kind, EventKind::HardBounce);
    }
}

#[cfg(test)]
mod step_result_tests {
    use super::{MessageRecord, StepResult, StepResultOutcome};

    /// A record as stored before step results were kept.
    const OLD_RECORD: &str = r#"{"id":"m1","account_id":1,"source_id":1,"submitted_over":"api",
        "sender":"a@example.com","recipient":"b@example.net","submitted_at":1,
        "status":"DELIVERED"}"#;

    #[test]
    fn a_record_from_before_step_results_reads_with_none_and_new_ones_keep_them() {
        let mut record: MessageRecord = serde_json::from_str(OLD_RECORD).unwrap();
        assert!(record.steps.is_empty());
        // Nothing is added to a record without steps (one held before its flow ran).
        assert!(!serde_json::to_string(&record).unwrap().contains("steps"));
        record.steps = vec![
            StepResult {
                number: 1,
                plugin: "archive".into(),
                outcome: StepResultOutcome::Continued,
                micros: 420,
                fuel: Some(12_345),
            },
            StepResult {
                number: 2,
                plugin: "dkim".into(),
                outcome: StepResultOutcome::Failed("trap".into()),
                micros: 1_001,
                fuel: None,
            },
        ];
        let stored = serde_json::to_string(&record).unwrap();
        let read: MessageRecord = serde_json::from_str(&stored).unwrap();
        assert_eq!(read, record);
        assert_eq!(read.steps[1].outcome.describe(), "failed (trap)");
    }
}
