//! An account's own bounce classifier: a component of the `bounce-classifier` world, run in
//! the Flowstep sandbox with the same limits and a fresh store per call. It may replace the
//! built-in verdict on a returned recipient; when it fails, the built-in verdict stands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{Store as DataStore, StoreError};

use super::bindings::{v0_1, v0_2};
use super::health::Health;
use super::state::StepState;
use super::{Grants, LoadError, PluginRuntime, StepFailure, policy};
use crate::fairness::FairShare;

/// One returned recipient as the built-in classifier judged it: what the account's
/// classifier is asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnedRecipient {
    /// What kind of report it is.
    pub kind: crate::bounce::Kind,
    /// The recipient the report names.
    pub recipient: Option<String>,
    /// The enhanced status code.
    pub status: Option<String>,
    /// The SMTP reply code.
    pub reply_code: Option<u16>,
    /// The remote's words.
    pub diagnostic: Option<String>,
    /// The built-in reason.
    pub reason: String,
    /// The built-in verdict.
    pub hard: bool,
}

/// The verdict an account's classifier gives instead of the built-in one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassifierVerdict {
    /// The reason to record.
    pub reason: String,
    /// Hard: the recipient goes on the filter list.
    pub hard: bool,
}

/// A loaded bounce classifier.
pub struct ClassifierPlugin {
    sha256: String,
    pre: ClassifierPre,
    runtime: Arc<PluginRuntime>,
    health: Health,
}

impl std::fmt::Debug for ClassifierPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierPlugin")
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// Checks, compiles and prepares a bounce classifier. This compiles code: call it off
    /// async workers.
    pub fn load_classifier(
        self: &Arc<Self>,
        bytes: &[u8],
    ) -> Result<Arc<ClassifierPlugin>, LoadError> {
        let compiled = self.compile(bytes)?;
        for import in &compiled.summary.imports {
            policy::check_import(import, &Grants::none())?;
        }
        let instance_pre = self
            .linker_for(&compiled.component, &Grants::none())?
            .instantiate_pre(&compiled.component)
            .map_err(|error| LoadError::WrongShape(format!("{error:#}")))?;
        let pre = ClassifierPre::new(instance_pre).map_err(LoadError::WrongShape)?;
        Ok(Arc::new(ClassifierPlugin {
            sha256: compiled.sha256,
            pre,
            runtime: Arc::clone(self),
            health: Health::new(self.limits.failures_before_disable),
        }))
    }
}

impl ClassifierPlugin {
    /// The component's sha256.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Asks the classifier about one returned recipient: a verdict replaces the built-in
    /// one, none keeps it. The call ends at its deadline whatever the classifier is doing.
    pub async fn classify(
        &self,
        returned: &ReturnedRecipient,
    ) -> Result<Option<ClassifierVerdict>, StepFailure> {
        let runtime = &self.runtime;
        let mut store = runtime.store(None);
        let answer = runtime
            .within_deadline(&mut store, |store| async {
                self.pre
                    .classify(store, returned)
                    .await
                    .map_err(|(error, instantiating)| runtime.classify(store, error, instantiating))
            })
            .await?;
        Ok(answer.map(|verdict| ClassifierVerdict {
            reason: crate::truncate::cut_to(verdict.reason, super::MAX_REASON_BYTES),
            hard: verdict.hard,
        }))
    }
}

/// A classifier component prepared for instantiation, by the contract version it was built
/// for.
enum ClassifierPre {
    /// Exports `sluice:flowstep/classifier@0.2.x`.
    V0_2(v0_2::classifier::BounceClassifierPre<StepState>),
    /// Exports the bare `classify` function of 0.1.0.
    V0_1(v0_1::classifier::BounceClassifierPre<StepState>),
}

impl ClassifierPre {
    /// Takes the version whose exports the component has: 0.2 first, then 0.1.0.
    fn new(instance_pre: wasmtime::component::InstancePre<StepState>) -> Result<Self, String> {
        let current = match v0_2::classifier::BounceClassifierPre::new(instance_pre.clone()) {
            Ok(pre) => return Ok(ClassifierPre::V0_2(pre)),
            Err(error) => error,
        };
        v0_1::classifier::BounceClassifierPre::new(instance_pre)
            .map(ClassifierPre::V0_1)
            .map_err(|_| {
                format!(
                    "it must export `sluice:flowstep/classifier@0.2.0` (or the `classify` \
                     function of 0.1.0): {current:#}"
                )
            })
    }

    /// Instantiates the component in `store` and asks it. An `Err` is wasmtime's, with
    /// whether it happened while instantiating.
    async fn classify(
        &self,
        store: &mut wasmtime::Store<StepState>,
        returned: &ReturnedRecipient,
    ) -> Result<Option<ClassifierVerdict>, (wasmtime::Error, bool)> {
        match self {
            ClassifierPre::V0_2(pre) => {
                use v0_2::classifier::exports::sluice::flowstep::classifier as wit;
                let kind = match returned.kind {
                    crate::bounce::Kind::Bounce => wit::ReportKind::Bounce,
                    crate::bounce::Kind::Complaint => wit::ReportKind::Complaint,
                    crate::bounce::Kind::Autoreply => wit::ReportKind::Autoreply,
                    crate::bounce::Kind::DeliveryReport => wit::ReportKind::DeliveryReport,
                    crate::bounce::Kind::NotABounce => wit::ReportKind::NotABounce,
                };
                let asked = wit::ReturnedRecipient {
                    kind,
                    recipient: returned.recipient.clone(),
                    status: returned.status.clone(),
                    reply_code: returned.reply_code,
                    diagnostic: returned.diagnostic.clone(),
                    reason: returned.reason.clone(),
                    hard: returned.hard,
                };
                let instance = pre
                    .instantiate_async(&mut *store)
                    .await
                    .map_err(|error| (error, true))?;
                let answer = instance
                    .sluice_flowstep_classifier()
                    .call_classify(&mut *store, &asked)
                    .await
                    .map_err(|error| (error, false))?;
                Ok(answer.map(|verdict| ClassifierVerdict {
                    reason: verdict.reason,
                    hard: verdict.hard,
                }))
            }
            ClassifierPre::V0_1(pre) => {
                let asked = v0_1::classifier::ReturnedRecipient {
                    kind: returned.kind.as_str().to_string(),
                    recipient: returned.recipient.clone(),
                    status: returned.status.clone(),
                    reply_code: returned.reply_code,
                    diagnostic: returned.diagnostic.clone(),
                    reason: returned.reason.clone(),
                    hard: returned.hard,
                };
                let instance = pre
                    .instantiate_async(&mut *store)
                    .await
                    .map_err(|error| (error, true))?;
                let answer = instance
                    .call_classify(&mut *store, &asked)
                    .await
                    .map_err(|error| (error, false))?;
                Ok(answer.map(|verdict| ClassifierVerdict {
                    reason: verdict.reason,
                    hard: verdict.hard,
                }))
            }
        }
    }
}

/// The accounts' own classifiers: which one an account installed, compiled once per
/// component, asked off the async workers.
pub struct AccountClassifiers {
    store: DataStore,
    runtime: Arc<PluginRuntime>,
    loaded: Mutex<HashMap<String, Arc<ClassifierPlugin>>>,
    share: Arc<FairShare>,
}

/// Classifier calls that may run at once, and how many of them one account may hold.
const CLASSIFIER_CALLS: usize = 16;
const CLASSIFIER_CALLS_PER_ACCOUNT: usize = 4;

impl std::fmt::Debug for AccountClassifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountClassifiers").finish_non_exhaustive()
    }
}

/// A verdict an account's classifier gave, with the component that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountVerdict {
    /// The verdict.
    pub verdict: ClassifierVerdict,
    /// The classifier's sha256.
    pub plugin: String,
}

impl AccountClassifiers {
    /// The classifiers of the accounts in `store`, run by `runtime`.
    pub fn new(store: DataStore, runtime: Arc<PluginRuntime>) -> Arc<Self> {
        Arc::new(Self {
            store,
            runtime,
            loaded: Mutex::new(HashMap::new()),
            share: FairShare::new(CLASSIFIER_CALLS, CLASSIFIER_CALLS_PER_ACCOUNT),
        })
    }

    /// The verdict of the account's classifier on one returned recipient, when the account
    /// installed one and it gives one. A classifier that cannot be loaded or fails leaves the
    /// built-in verdict, and says so in the log; one that fails too often in a row is
    /// disabled for the account until it installs a classifier again. An account's calls
    /// wait for its own share of the calls running at once.
    pub async fn verdict(
        &self,
        account_id: u64,
        returned: ReturnedRecipient,
    ) -> Option<AccountVerdict> {
        let sha256 = self
            .store
            .account(account_id)
            .ok()
            .flatten()?
            .bounce_classifier?;
        let plugin = match self.load(&sha256).await {
            Ok(plugin) => plugin,
            Err(error) => {
                tracing::warn!(account = account_id, %sha256, %error, "bounce classifier not loaded");
                return None;
            }
        };
        let tenant = Some(account_id);
        if let Some(reason) = plugin.health.disabled(tenant) {
            tracing::debug!(account = account_id, %sha256, %reason, "bounce classifier disabled; the built-in verdict stands");
            return None;
        }
        let _slot = self.share.acquire(account_id).await.ok()?;
        match plugin.classify(&returned).await {
            Ok(verdict) => {
                plugin.health.record_success(tenant);
                verdict.map(|verdict| AccountVerdict {
                    verdict,
                    plugin: sha256,
                })
            }
            Err(failure) => {
                tracing::warn!(account = account_id, %sha256, %failure, "bounce classifier failed; the built-in verdict stands");
                if failure.is_sandbox_fault()
                    && let Some(reason) = plugin.health.record_fault(tenant, &failure.to_string())
                {
                    tracing::warn!(account = account_id, %sha256, %reason, "bounce classifier disabled");
                }
                None
            }
        }
    }

    /// Drops the loaded classifiers no longer stored among `changed` (every loaded one when
    /// `None`): removed through another node.
    pub fn plugins_changed(&self, changed: Option<&[String]>) -> Result<(), StoreError> {
        let loaded: Vec<String> = lock(&self.loaded)
            .keys()
            .filter(|sha256| changed.is_none_or(|changed| changed.contains(*sha256)))
            .cloned()
            .collect();
        for sha256 in loaded {
            if !self.store.has_plugin(&sha256)? {
                lock(&self.loaded).remove(&sha256);
            }
        }
        Ok(())
    }

    async fn load(&self, sha256: &str) -> anyhow::Result<Arc<ClassifierPlugin>> {
        if let Some(plugin) = lock(&self.loaded).get(sha256) {
            return Ok(Arc::clone(plugin));
        }
        let bytes = self
            .store
            .plugin(sha256)?
            .ok_or_else(|| anyhow::anyhow!("plugin {sha256} is gone"))?;
        let runtime = Arc::clone(&self.runtime);
        let plugin = tokio::task::spawn_blocking(move || runtime.load_classifier(&bytes)).await??;
        lock(&self.loaded).insert(sha256.to_string(), Arc::clone(&plugin));
        Ok(plugin)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
