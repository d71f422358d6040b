//! Mail the platform sends to people (login codes, invitations, reset links). It goes
//! through Sluice's own pipeline like any customer's: from the platform's own account, whose
//! flow "system mail" sorts it, so each code is a message with events an operator can follow.

use tokio::sync::Mutex;

use crate::flow::PipelineHandle;
use crate::store::model::Routing;
use crate::store::{Flow, Source, Store, StoreError};
use crate::submit::{Submission, SubmitError, accept};

const ACCOUNT: &str = "system-account";
const SOURCE: &str = "system-source";
const FLOW: &str = "system-flow";

/// Why system mail could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SystemMailError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The submission was refused.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The message could not be built.
    #[error("building the message: {0}")]
    Build(#[from] std::io::Error),
}

/// Sends the platform's own mail.
pub struct SystemMail {
    store: Store,
    pipeline: PipelineHandle,
    from: String,
    /// Held while the platform account is made, so two first logins make one.
    source: Mutex<Option<Source>>,
}

impl std::fmt::Debug for SystemMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemMail")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl SystemMail {
    /// Mail from `from`, through `pipeline`.
    pub fn new(store: Store, pipeline: PipelineHandle, from: String) -> Self {
        Self {
            store,
            pipeline,
            from,
            source: Mutex::new(None),
        }
    }

    /// The platform's account, made on first use (not at start, so a fresh server's first
    /// customer account is still number 1 and the next one 2).
    pub async fn account_id(&self) -> Result<u64, SystemMailError> {
        Ok(self.source().await?.account_id)
    }

    async fn source(&self) -> Result<Source, SystemMailError> {
        let mut cached = self.source.lock().await;
        if let Some(source) = cached.as_ref() {
            return Ok(source.clone());
        }
        let store = &self.store;
        let account_id = match store.platform_record(ACCOUNT)? {
            Some(id) => id,
            None => {
                let account = store.create_account("platform (system mail)").await?;
                store.set_platform_record(ACCOUNT, account.id).await?;
                account.id
            }
        };
        let source = match store.platform_record(SOURCE)?.map(|id| store.source(id)) {
            Some(found) => found?.ok_or_else(|| StoreError::NotFound("system source".into()))?,
            None => {
                let source = store
                    .create_source(Source {
                        id: 0,
                        account_id,
                        name: "dashboard".into(),
                        // No credential exists for it, and no network may log in with one.
                        allowed_networks: Some(Vec::new()),
                        max_message_bytes: 1 << 20,
                        require_tls: true,
                        allow_plain_auth: false,
                        feedback_address: None,
                    })
                    .await?;
                store.set_platform_record(SOURCE, source.id).await?;
                source
            }
        };
        if store.platform_record(FLOW)?.is_none() {
            let flow = store
                .create_flow(Flow {
                    id: 0,
                    account_id,
                    name: "system mail".into(),
                    steps: Vec::new(),
                    expiry_hours: Some(1),
                })
                .await?;
            store
                .set_routing(
                    account_id,
                    Routing {
                        rules: Vec::new(),
                        default_flow_id: flow.id,
                    },
                )
                .await?;
            store.set_platform_record(FLOW, flow.id).await?;
        }
        *cached = Some(source.clone());
        Ok(source)
    }

    /// Sends a plain-text message to one person; returns its message id once it is spooled.
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        text: &str,
    ) -> Result<String, SystemMailError> {
        let source = self.source().await?;
        let content = mail_builder::MessageBuilder::new()
            .from(("Sluice", self.from.as_str()))
            .to(to)
            .subject(subject)
            .text_body(text)
            .write_to_vec()?;
        let ids = accept(
            &self.store,
            &self.pipeline,
            Submission {
                source,
                over: "system",
                sender: self.from.clone(),
                recipients: vec![to.to_string()],
                content,
                data: None,
                flow_selector: None,
                tags: vec!["system".into()],
                schedule_at: None,
            },
        )
        .await?;
        Ok(ids.into_iter().next().unwrap_or_default())
    }
}
