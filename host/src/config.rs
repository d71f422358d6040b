//! The server's configuration: an embedded default, overridden by a TOML file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::ApiConfig;
use crate::delivery::DeliveryConfig;
use crate::dkim::DkimConfig;
use crate::dns::DnsConfig;
use crate::inbound::InboundConfig;
use crate::plugin::RuntimeLimits;
use crate::smtp::SmtpConfig;
use crate::webhooks::WebhookConfig;

/// The configuration `sluice serve` starts with when given no file.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Everything `sluice serve` reads from its configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the store, the compiled-code cache and (by default) the plugin folder live.
    pub data_dir: PathBuf,
    /// The folder operators drop plugins into; relative paths are under `data_dir`.
    pub plugins_dir: PathBuf,
    /// Flows that may run at once. A flow waiting on its steps costs an instance slot, not
    /// a thread.
    #[serde(default = "default_pipeline_workers")]
    pub pipeline_workers: usize,
    /// Flows one account may run at once, its simulations and previews included; absent,
    /// half of `pipeline_workers`, so one account's slow steps leave the other half to the
    /// rest.
    #[serde(default)]
    pub pipeline_account_share: Option<usize>,
    /// Limits for every plugin call.
    #[serde(default)]
    pub runtime: RuntimeLimits,
    /// The SMTP submission server.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// The REST API.
    #[serde(default)]
    pub api: ApiConfig,
    /// The web dashboard.
    #[serde(default)]
    pub dashboard: crate::dashboard::DashboardConfig,
    /// DKIM keys and the DNS names customers point their records at.
    #[serde(default)]
    pub dkim: DkimConfig,
    /// The nameservers for MX lookups and DKIM/SPF/DMARC checks.
    #[serde(default)]
    pub dns: DnsConfig,
    /// Outbound delivery.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Webhook calls.
    #[serde(default)]
    pub webhooks: WebhookConfig,
    /// The MX for returned mail (bounces, feedback reports).
    #[serde(default)]
    pub inbound: InboundConfig,
    /// What the first start makes for a first try.
    #[serde(default)]
    pub demo: DemoConfig,
    /// How long finished messages are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Where the store is kept: the redb file in `data_dir`, or a PostgreSQL database.
    #[serde(default)]
    pub store: StoreConfig,
    /// This node among the nodes of one platform.
    #[serde(default)]
    pub cluster: crate::cluster::ClusterConfig,
}

/// The `[store]` section: absent `url`, the store is the embedded redb file in `data_dir`;
/// with `url`, a PostgreSQL database (which several nodes may share).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The PostgreSQL database: a `postgres://user@host/db` URL or `host=... dbname=...`
    /// pairs.
    pub url: Option<String>,
    /// The most connections this node holds open to PostgreSQL.
    pub max_connections: usize,
    /// How long a store operation waits for a connection before it fails ("10s").
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// The longest a statement may run, and a session may sit idle inside a transaction,
    /// before PostgreSQL ends it ("60s").
    #[serde(deserialize_with = "duration")]
    pub statement_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let pool = crate::store::kv::postgres::PoolSettings::default();
        Self {
            url: None,
            max_connections: pool.max_connections,
            connect_timeout: pool.wait,
            statement_timeout: pool.statement_timeout,
        }
    }
}

impl StoreConfig {
    /// The pool the PostgreSQL backend opens with these settings.
    pub fn pool_settings(&self) -> crate::store::kv::postgres::PoolSettings {
        crate::store::kv::postgres::PoolSettings {
            max_connections: self.max_connections,
            wait: self.connect_timeout,
            statement_timeout: self.statement_timeout,
        }
    }
}

/// The URL may carry a password: never print it.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// The `[retention]` section: how long a finished message is kept, and how often the purge
/// that removes messages, archives and kept copies past their retention runs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// From submission to the purge of a finished message ("30d", "12h"...).
    #[serde(deserialize_with = "duration")]
    pub messages: Duration,
    /// Time between two purges ("1h").
    #[serde(deserialize_with = "duration")]
    pub purge_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            messages: Duration::from_secs(MESSAGE_RETENTION_DAYS * 86_400),
            purge_interval: Duration::from_secs(3600),
        }
    }
}

/// Days a finished message is kept by default: a month, as transactional-mail platforms keep
/// message details (Flowmailer's shortest archive retention, P1M, is the same).
pub const MESSAGE_RETENTION_DAYS: u64 = 30;

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    let parsed = crate::webhooks::parse_duration(&text).map_err(serde::de::Error::custom)?;
    if parsed.is_zero() {
        return Err(serde::de::Error::custom(
            "a retention or interval of 0 is not one",
        ));
    }
    Ok(parsed)
}

/// The `[demo]` section: the account made on the first start.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// The plugins of the demo account's default flow, in order, each with its default
    /// configuration.
    pub flow_steps: Vec<String>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            flow_steps: vec!["archive".into(), "dkim".into()],
        }
    }
}

fn default_pipeline_workers() -> usize {
    16
}

impl Config {
    /// The embedded default, overridden key by key by the file at `path` when given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut merged: toml::Table = toml::from_str(DEFAULT_CONFIG)?;
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
            let overrides: toml::Table = toml::from_str(&text)
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            merge(&mut merged, overrides);
        }
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
        Ok(config)
    }

    /// Flows one account may run at once.
    pub fn account_share(&self) -> usize {
        self.pipeline_account_share
            .unwrap_or(self.pipeline_workers / 2)
            .max(1)
    }

    /// The plugin folder, resolved against the data folder.
    pub fn plugins_path(&self) -> PathBuf {
        self.data_dir.join(&self.plugins_dir)
    }

    /// The database file.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("sluice.redb")
    }

    /// The STARTTLS certificate and key: configured, or made in the data folder.
    pub fn tls_paths(&self) -> (PathBuf, PathBuf) {
        match (&self.smtp.tls_cert, &self.smtp.tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => (
                self.data_dir.join("tls").join("cert.pem"),
                self.data_dir.join("tls").join("key.pem"),
            ),
        }
    }

    /// The compiled-code cache folder.
    pub fn compiled_cache_path(&self) -> PathBuf {
        self.data_dir.join("cache").join("compiled")
    }
}

fn merge(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(table)) => {
                merge(base_table, table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.runtime, RuntimeLimits::default());
        assert_eq!(config.smtp, SmtpConfig::default());
        assert_eq!(config.api, ApiConfig::default());
        assert_eq!(
            config.dashboard,
            crate::dashboard::DashboardConfig::default()
        );
        assert_eq!(config.dkim, DkimConfig::default());
        assert_eq!(config.dns, DnsConfig::default());
        assert_eq!(config.delivery, DeliveryConfig::default());
        assert_eq!(config.webhooks, WebhookConfig::default());
        assert_eq!(config.demo, DemoConfig::default());
        assert_eq!(config.retention, RetentionConfig::default());
        assert_eq!(config.store, StoreConfig::default());
        assert_eq!(
            config.store.url, None,
            "redb unless PostgreSQL is configured"
        );
        assert_eq!(config.cluster, crate::cluster::ClusterConfig::default());
        assert_eq!(config.plugins_path(), Path::new("sluice-data/plugins"));
    }

    #[test]
    fn a_file_overrides_single_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/sluice\"\n[runtime]\ndeadline = 250\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.data_dir, Path::new("/srv/sluice"));
        assert_eq!(config.runtime.deadline.as_millis(), 250);
        assert_eq!(
            config.runtime.memory_bytes,
            RuntimeLimits::default().memory_bytes
        );
    }

    #[test]
    fn a_store_url_selects_postgresql_in_either_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        for url in [
            "postgres://sluice@db.internal/sluice",
            "host=/var/run/postgresql dbname=sluice",
        ] {
            std::fs::write(
                &path,
                format!("[store]\nurl = \"{url}\"\nmax_connections = 4\n"),
            )
            .unwrap();
            let config = Config::load(Some(&path)).unwrap();
            assert_eq!(config.store.url.as_deref(), Some(url));
            assert_eq!(config.store.pool_settings().max_connections, 4);
            assert!(
                !format!("{config:?}").contains(url),
                "the URL may hold a password"
            );
        }
    }

    #[test]
    fn the_message_retention_reads_as_a_duration_and_refuses_nothing_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "[retention]\nmessages = \"7d\"\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.retention.messages, Duration::from_secs(7 * 86_400));
        assert_eq!(config.retention.purge_interval, Duration::from_secs(3600));
        std::fs::write(&path, "[retention]\nmessages = \"0s\"\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "[runtime]\ndeadlin = 250\n").unwrap();
        let error = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("deadlin"), "{error}");
    }
}
