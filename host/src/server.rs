//! The running server: store, plugin runtime and folder, pipeline and SMTP listener, started
//! together from a configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, ApiParts, ApiState};
use crate::cluster::secrets::{self, SharedKey};
use crate::cluster::{Leasing, Membership, plugins as plugin_changes, watch_shared_changes};
use crate::config::{Config, DemoConfig, RetentionConfig};
use crate::dashboard::{self, DashboardState};
use crate::delivery::capture::Capture;
use crate::delivery::verp::ReturnPath;
use crate::delivery::{Delivery, QueueSignal, RunningDelivery};
use crate::dkim::{Dkim, KeyVault};
use crate::dns::Resolver;
use crate::flow::rules::Routing;
use crate::flow::{Pipeline, PipelineHandle, PipelineParts};
use crate::inbound::Inbound;
use crate::plugin::builtin::load_builtins;
use crate::plugin::classifier::AccountClassifiers;
use crate::plugin::registry::{FolderWatch, PluginFolder, PluginRegistry};
use crate::plugin::{CompiledCache, PluginRuntime};
use crate::scans::Scans;
use crate::services::AccountServices;
use crate::smtp::{DataBudget, SmtpServer, tls};
use crate::store::{CredentialKind, Flow, Flowstep, NewUser, Role, Source, Store};
use crate::tracking::LinkSigner;
use crate::webhooks::WebhookDispatcher;

/// Quiet time after the last change in the plugin folder before it is applied.
const PLUGIN_DEBOUNCE: Duration = Duration::from_millis(300);

/// A started server. Dropping it stops the listeners' tasks.
pub struct Server {
    /// The store.
    pub store: Store,
    /// The address the SMTP server listens on.
    pub smtp_addr: SocketAddr,
    /// The address the REST API listens on.
    pub api_addr: SocketAddr,
    /// The address the dashboard listens on, when it runs.
    pub dashboard_addr: Option<SocketAddr>,
    /// The address the MX for returned mail listens on, when it runs.
    pub mx_addr: Option<SocketAddr>,
    /// Returned mail: what the MX takes and what it means.
    pub inbound: Arc<Inbound>,
    /// Hands spooled messages to the flows.
    pub pipeline: PipelineHandle,
    /// The operator's plugins.
    pub plugins: Arc<PluginRegistry>,
    /// The DKIM keys and signing.
    pub dkim: Arc<Dkim>,
    /// The memory held by messages still coming in over SMTP (submission and MX).
    pub data_budget: Arc<DataBudget>,
    /// The demo credentials made on first start, if this start made them.
    pub created_demo: Option<DemoCredentials>,
    /// The pool of heavy reads the API's statistics and the dashboard share.
    pub scans: Arc<Scans>,
    /// This node among the platform's nodes.
    pub membership: Membership,
    _watch: FolderWatch,
    plugin_changes_task: tokio::task::JoinHandle<()>,
    shared_changes_task: tokio::task::JoinHandle<()>,
    smtp_task: tokio::task::JoinHandle<()>,
    api_task: tokio::task::JoinHandle<()>,
    dashboard_task: Option<tokio::task::JoinHandle<()>>,
    purge_task: tokio::task::JoinHandle<()>,
    delivery: RunningDelivery,
    /// How long a clean stop waits for the deliveries under way.
    stop_grace: Duration,
    webhook_task: tokio::task::JoinHandle<()>,
    mx_task: Option<tokio::task::JoinHandle<()>>,
    inbound_task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("smtp_addr", &self.smtp_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.smtp_task.abort();
        self.api_task.abort();
        if let Some(task) = &self.dashboard_task {
            task.abort();
        }
        self.purge_task.abort();
        self.delivery.abort();
        self.inbound_task.abort();
        if let Some(task) = &self.mx_task {
            task.abort();
        }
        self.webhook_task.abort();
        self.plugin_changes_task.abort();
        self.shared_changes_task.abort();
    }
}

/// The account, source and SMTP login made for a first try.
#[derive(Clone, Debug)]
pub struct DemoCredentials {
    /// The demo account's id.
    pub account_id: u64,
    /// The SMTP username.
    pub username: String,
    /// The SMTP password (shown once; only its hash is stored).
    pub password: String,
    /// The API client id.
    pub client_id: String,
    /// The API client secret (shown once).
    pub client_secret: String,
    /// The dashboard login of the demo account's owner.
    pub dashboard_email: String,
    /// Its password (shown once).
    pub dashboard_password: String,
}

impl Server {
    /// Opens the store, loads the plugin folder and starts the pipeline and the SMTP listener.
    /// On an empty store it first makes a demo account that can send from this machine.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store_config = config.clone();
        let store =
            tokio::task::spawn_blocking(move || Store::open_configured(&store_config)).await??;
        Self::start_on(config, store).await
    }

    /// [`Server::start`] over a store already open: one more node of the platform whose
    /// store it is (its data folder holds what is per node).
    pub async fn start_on(config: Config, store: Store) -> anyhow::Result<Self> {
        crate::net::raise_open_file_limit(&[
            ("smtp.max_connections", config.smtp.max_connections),
            ("inbound.max_connections", config.inbound.max_connections),
            ("api.max_connections", config.api.max_connections),
        ]);
        std::fs::create_dir_all(&config.data_dir)?;
        // Before anything is written: a node whose master key is not the platform's refuses
        // to start rather than write what the others cannot read.
        let master_key_file = config.data_dir.join(&config.dkim.master_key_file);
        let vault = KeyVault::open_or_create(&master_key_file)?;
        secrets::check_master_key(&store, &vault, &master_key_file).await?;
        let plugins_dir = config.plugins_path();
        std::fs::create_dir_all(&plugins_dir)?;
        // Read before anything loads a plugin: a change made meanwhile is seen at the first poll.
        let plugin_changes_seen = store.latest_plugin_change()?;
        let membership = Membership::join(store.clone(), &config.cluster).await?;
        // On a store other nodes share, queued work is claimed before it is done.
        let leasing = store.is_shared().then(|| Leasing {
            holder: membership.holder(),
            duration: config.cluster.lease(),
        });
        // Nodes of a new platform starting together make one demo account between them.
        let created_demo = if store.account(1)?.is_none() && store.first_to("demo-account").await? {
            Some(create_demo(&store, &config.demo).await?)
        } else {
            None
        };

        let cache = CompiledCache::open(config.compiled_cache_path())?;
        let runtime = PluginRuntime::new(config.runtime.clone(), Some(cache))?;
        let plugins = PluginRegistry::new();
        let (builtin_runtime, builtin_registry) = (Arc::clone(&runtime), Arc::clone(&plugins));
        tokio::task::spawn_blocking(move || load_builtins(&builtin_runtime, &builtin_registry))
            .await??;
        let folder = PluginFolder::new(&plugins_dir, Arc::clone(&runtime), Arc::clone(&plugins));
        // Loading compiles; keep it off the async workers.
        let watch =
            tokio::task::spawn_blocking(move || folder.watch(PLUGIN_DEBOUNCE, |_| {})).await??;

        let api_listener = tokio::net::TcpListener::bind(config.api.listen).await?;
        let api_addr = api_listener.local_addr()?;
        let shared_key =
            |key: SharedKey| secrets::shared_key(&store, &vault, key, &config.data_dir);
        let links = Arc::new(LinkSigner::new(
            shared_key(SharedKey::Links).await?,
            &config.api.public_url(api_addr),
        ));
        let return_path = ReturnPath::new(shared_key(SharedKey::ReturnPath).await?);
        let token_key = shared_key(SharedKey::ApiTokens).await?;
        let (dkim_config, data_dir, dkim_store) =
            (config.dkim.clone(), config.data_dir.clone(), store.clone());
        let dkim = Arc::new(
            tokio::task::spawn_blocking(move || Dkim::open(dkim_config, &data_dir, dkim_store))
                .await??,
        );
        let services = Arc::new(AccountServices::new(store.clone(), Arc::clone(&dkim)));
        let queued = QueueSignal::default();
        let pipeline = Pipeline::start(PipelineParts {
            store: store.clone(),
            runtime: Arc::clone(&runtime),
            folder: Arc::clone(&plugins),
            links: Arc::clone(&links),
            services,
            workers: config.pipeline_workers,
            account_share: config.account_share(),
            delivery: config.delivery.clone(),
            queued: queued.clone(),
            // A live node runs the flows of what it accepted within seconds: a message spooled
            // a lease's time ago is one a dead node left.
            orphaned_after: leasing.as_ref().map(|leasing| leasing.duration),
        });
        let resolver = Resolver::new(&config.dns)?;
        let classifiers = AccountClassifiers::new(store.clone(), Arc::clone(&runtime));
        let delivery = Delivery::start(
            config.delivery.clone(),
            &config.data_dir,
            store.clone(),
            resolver.clone(),
            Arc::clone(&dkim),
            return_path.clone(),
            Arc::clone(&classifiers),
            queued,
            membership.nodes(),
            leasing.clone(),
        )?;
        let plugin_changes_task = plugin_changes::watch(
            store.clone(),
            pipeline.clone(),
            Arc::clone(&classifiers),
            plugin_changes_seen,
            config.cluster.plugin_poll(),
        );
        let shared_changes_task = watch_shared_changes(store.clone(), config.cluster.change_poll());
        let inbound = Inbound::new(
            store.clone(),
            pipeline.clone(),
            Arc::clone(&classifiers),
            return_path,
            &config.dkim.return_path_domain,
            &config.inbound,
        );
        let inbound_task = inbound.start();
        let webhook_task =
            WebhookDispatcher::start(config.webhooks.clone(), store.clone(), leasing)?;
        let purge_task = tokio::spawn(purge_expired(
            store.clone(),
            config.retention.clone(),
            config.inbound.keep_days,
        ));
        // Statistics in the API and the dashboard's heavy pages share one fair pool.
        let scans = Scans::new(store.clone());
        let api_state = ApiState::new(
            ApiParts {
                store: store.clone(),
                pipeline: pipeline.clone(),
                runtime,
                plugins: Arc::clone(&plugins),
                links,
                dkim: Arc::clone(&dkim),
                resolver,
                allow_private_webhooks: config.webhooks.allow_private_destinations,
                scans: Arc::clone(&scans),
            },
            token_key,
            &config.api,
        );
        let api_task = api::spawn(api_listener, &config.api, api_state.clone());
        let (dashboard_addr, dashboard_task) = if config.dashboard.enabled {
            let listener = tokio::net::TcpListener::bind(config.dashboard.listen).await?;
            let bound = listener.local_addr()?;
            // The folder even when the capture is off now: copies kept while it was on can
            // still be purged.
            let state = DashboardState::new(config.dashboard.clone(), bound, api_state)
                .with_capture(Capture::new(&config.data_dir));
            (
                Some(bound),
                Some(dashboard::spawn(listener, &config.api, state)),
            )
        } else {
            (None, None)
        };
        let (cert, key) = config.tls_paths();
        let acceptor = tls::acceptor(&cert, &key, &config.smtp.hostname)?;
        // One budget for the messages coming in on both SMTP listeners.
        let data_budget = DataBudget::new(config.smtp.max_data_memory_bytes);
        let smtp = SmtpServer::bind(
            config.smtp.clone(),
            acceptor.clone(),
            store.clone(),
            pipeline.clone(),
            Arc::clone(&data_budget),
        )
        .await?;
        let smtp_addr = smtp.local_addr()?;
        let smtp_task = tokio::spawn(smtp.run());
        let (mx_addr, mx_task) = if config.inbound.enabled {
            let mx = SmtpServer::bind_mx(
                config.inbound.smtp(),
                acceptor.clone(),
                store.clone(),
                Arc::clone(&inbound),
                Arc::clone(&data_budget),
            )
            .await?;
            (Some(mx.local_addr()?), Some(tokio::spawn(mx.run())))
        } else {
            (None, None)
        };
        Ok(Self {
            store,
            smtp_addr,
            api_addr,
            dashboard_addr,
            mx_addr,
            inbound,
            pipeline,
            plugins,
            dkim,
            data_budget,
            created_demo,
            scans,
            membership,
            _watch: watch,
            plugin_changes_task,
            shared_changes_task,
            smtp_task,
            api_task,
            dashboard_task,
            purge_task,
            delivery,
            stop_grace: Duration::from_secs(config.delivery.stop_grace_secs),
            webhook_task,
            mx_task,
            inbound_task,
        })
    }
}

impl Server {
    /// A clean stop: stops taking connections, leaves the platform's nodes at once (rather
    /// than after the other nodes' timeout, and before a service manager that waits less than
    /// the grace below ends the process), then lets the deliveries under way finish and be
    /// recorded, for at most `[delivery] stop_grace_secs`.
    pub async fn stop(&self) {
        self.smtp_task.abort();
        self.api_task.abort();
        if let Some(task) = &self.dashboard_task {
            task.abort();
        }
        if let Some(task) = &self.mx_task {
            task.abort();
        }
        if let Err(error) = self.membership.leave().await {
            tracing::warn!(%error, "removing this node's heartbeat failed");
        }
        let unrecorded = self.delivery.drain(self.stop_grace).await;
        if unrecorded > 0 {
            tracing::warn!(
                unrecorded,
                "deliveries under way were not recorded within the stop's grace: they may go out again"
            );
        }
    }
}

/// Removes messages, archives and kept copies past their retention and the content of old
/// returned mail, at start and then every `retention.purge_interval`. Each purge works in
/// bounded transactions, so the writer is never held for long.
async fn purge_expired(store: Store, retention: RetentionConfig, returned_keep_days: u64) {
    let mut interval = tokio::time::interval(retention.purge_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = crate::store::now_millis();
        match store.purge_messages(now, retention.messages).await {
            Ok(purged) if purged.messages > 0 || purged.postponed > 0 => tracing::info!(
                purged = purged.messages,
                postponed = purged.postponed,
                "purged messages past their retention"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "purging messages failed"),
        }
        match store.purge_archives(now).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "purged expired archives"),
            Err(error) => tracing::warn!(%error, "purging archives failed"),
        }
        let before = now.saturating_sub(returned_keep_days.saturating_mul(86_400_000));
        match store.purge_returned_bodies(before).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "dropped the content of old returned mail"),
            Err(error) => tracing::warn!(%error, "purging returned mail failed"),
        }
    }
}

/// The demo owner's dashboard login: a reserved domain (RFC 2606), so its login codes never
/// leave the machine (the capture keeps them, see `delivery::capture`).
pub const DEMO_DASHBOARD_EMAIL: &str = "demo@example.com";

/// Makes the demo account: a source that may send from this machine, an SMTP login, an API
/// client, a dashboard owner and a default flow of the configured steps.
async fn create_demo(store: &Store, demo: &DemoConfig) -> anyhow::Result<DemoCredentials> {
    let account = store.create_account("demo").await?;
    let source = store
        .create_source(Source {
            id: 0,
            account_id: account.id,
            name: "demo".into(),
            allowed_networks: Some(vec!["127.0.0.0/8".parse()?, "::1/128".parse()?]),
            max_message_bytes: 25 << 20,
            require_tls: false,
            // Only from this machine, so a first test with swaks needs no certificate.
            allow_plain_auth: true,
            feedback_address: None,
        })
        .await?;
    let password = random_secret()?;
    store
        .add_credential(&source, CredentialKind::Smtp, "demo", &password)
        .await?;
    let client_secret = random_secret()?;
    store
        .add_credential(&source, CredentialKind::Api, "demo-api", &client_secret)
        .await?;
    let flow = store
        .create_flow(Flow {
            id: 0,
            account_id: account.id,
            name: "default".into(),
            steps: demo
                .flow_steps
                .iter()
                .map(|plugin| Flowstep {
                    plugin: plugin.clone(),
                    config: serde_json::json!({}),
                    enabled_when: None,
                })
                .collect(),
            expiry_hours: None,
        })
        .await?;
    store
        .set_routing(
            account.id,
            Routing {
                rules: Vec::new(),
                default_flow_id: flow.id,
            },
        )
        .await?;
    let dashboard_password = random_secret()?;
    let hash = {
        let password = dashboard_password.clone();
        tokio::task::spawn_blocking(move || crate::store::hash_secret(&password)).await??
    };
    let owner = store
        .create_user(NewUser {
            account_id: Some(account.id),
            email: DEMO_DASHBOARD_EMAIL.into(),
            role: Role::Owner,
            password_hash: Some(hash),
        })
        .await?;
    Ok(DemoCredentials {
        account_id: account.id,
        username: "demo".into(),
        password,
        client_id: "demo-api".into(),
        client_secret,
        dashboard_email: owner.email,
        dashboard_password,
    })
}

fn random_secret() -> anyhow::Result<String> {
    let mut secret = [0u8; 12];
    getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(hex::encode(secret))
}
