//! An account's own bounce classifier: a component of the `bounce-classifier` world, run in
//! the Flowstep sandbox with the same limits and a fresh store per call. It may replace the
//! built-in verdict on a returned recipient; when it fails, the built-in verdict stands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::Store as DataStore;

use super::bindings::classifier::{self as wit, BounceClassifierPre};
use super::health::Health;
use super::state::StepState;
use super::{Grants, LoadError, PluginRuntime, StepFailure, policy};
use crate::fairness::FairShare;

/// One returned recipient as the built-in classifier judged it: what the account's
/// classifier is asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnedRecipient {
    /// bounce, complaint, autoreply, delivery-report or not-a-bounce.
    pub kind: String,
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
    pre: BounceClassifierPre<StepState>,
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
        let pre = BounceClassifierPre::new(instance_pre)
            .map_err(|error| LoadError::WrongShape(format!("{error:#}")))?;
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
        let asked = wit::ReturnedRecipient {
            kind: returned.kind.clone(),
            recipient: returned.recipient.clone(),
            status: returned.status.clone(),
            reply_code: returned.reply_code,
            diagnostic: returned.diagnostic.clone(),
            reason: returned.reason.clone(),
            hard: returned.hard,
        };
        let answer = runtime
            .within_deadline(&mut store, |store| async {
                let instance = match self.pre.instantiate_async(&mut *store).await {
                    Ok(instance) => instance,
                    Err(error) => return Err(runtime.classify(store, error, true)),
                };
                match instance.call_classify(&mut *store, &asked).await {
                    Ok(answer) => Ok(answer),
                    Err(error) => Err(runtime.classify(store, error, false)),
                }
            })
            .await?;
        Ok(answer.map(|verdict| ClassifierVerdict {
            reason: crate::truncate::cut_to(verdict.reason, super::MAX_REASON_BYTES),
            hard: verdict.hard,
        }))
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
