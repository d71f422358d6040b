//! The host side of each version of the contract. The work is done once, here; each version's
//! trait impls convert its own types and decide how a refusal reaches the guest: 0.1.0 traps
//! (the step fails and the message is kept), 0.2 returns an `edit-error` or a
//! `capability-error` the step can handle.

/// The methods of `types::HostMessage` that read the message, the same in every version: each
/// version's impl expands them where its own `types` is in scope.
macro_rules! message_reads {
    () => {
        fn envelope_sender(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<String> {
            Ok(self.draft(&msg)?.message().envelope().sender.clone())
        }

        fn envelope_recipient(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<String> {
            Ok(self.draft(&msg)?.message().envelope().recipient.clone())
        }

        fn header(
            &mut self,
            msg: Resource<MessageDraft>,
            name: String,
        ) -> wasmtime::Result<Option<String>> {
            Ok(self.draft(&msg)?.message().header(&name))
        }

        fn header_all(
            &mut self,
            msg: Resource<MessageDraft>,
            name: String,
        ) -> wasmtime::Result<Vec<String>> {
            Ok(self.draft(&msg)?.message().header_all(&name))
        }

        fn headers(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<Vec<types::Header>> {
            Ok(self
                .draft(&msg)?
                .message()
                .headers()
                .into_iter()
                .map(|(name, value)| types::Header { name, value })
                .collect())
        }

        fn remove_header(
            &mut self,
            msg: Resource<MessageDraft>,
            name: String,
        ) -> wasmtime::Result<()> {
            self.draft_mut(&msg)?.remove_header(&name);
            Ok(())
        }

        fn html(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<Option<String>> {
            Ok(self.draft(&msg)?.message().html())
        }

        fn text(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<Option<String>> {
            Ok(self.draft(&msg)?.message().text())
        }

        fn attachment_content(
            &mut self,
            msg: Resource<MessageDraft>,
            index: u32,
        ) -> wasmtime::Result<Option<Vec<u8>>> {
            Ok(self
                .draft(&msg)?
                .message()
                .attachment_content(index as usize))
        }

        fn data(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<Option<String>> {
            Ok(self.draft(&msg)?.message().data().map(str::to_string))
        }

        fn size(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<u64> {
            Ok(self.draft(&msg)?.message().size() as u64)
        }

        fn raw(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<Vec<u8>> {
            super::raw(self, &msg)
        }

        fn drop(&mut self, _msg: Resource<MessageDraft>) -> wasmtime::Result<()> {
            // The host owns every message; a guest only ever holds borrows, which it cannot
            // drop.
            Ok(())
        }
    };
}

/// The `log` interface and the conversion of what `process` returned, the same in every
/// version but for the types.
macro_rules! log_and_returned {
    () => {
        impl log::Host for StepState {
            fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
                let level = match level {
                    log::Level::Trace => "trace",
                    log::Level::Debug => "debug",
                    log::Level::Info => "info",
                    log::Level::Warn => "warn",
                    log::Level::Error => "error",
                };
                self.write_log(level, message);
                Ok(())
            }
        }

        /// What the step returned, in the host's terms.
        pub(super) fn returned(
            returned: Result<types::Outcome, types::StepError>,
        ) -> super::Returned {
            use crate::plugin::{StepError, StepOutcome};
            match returned {
                Ok(types::Outcome::Continue) => Ok(StepOutcome::Continue),
                Ok(types::Outcome::Hold(reason)) => Ok(StepOutcome::Hold(reason)),
                Ok(types::Outcome::Discard(reason)) => Ok(StepOutcome::Discard(reason)),
                Err(types::StepError::InvalidConfig(text)) => Err(StepError::InvalidConfig(text)),
                Err(types::StepError::MissingData(text)) => Err(StepError::MissingData(text)),
                Err(types::StepError::UnsupportedMessage(text)) => {
                    Err(StepError::UnsupportedMessage(text))
                }
                Err(types::StepError::CapabilityFailed(text)) => {
                    Err(StepError::CapabilityFailed(text))
                }
                Err(types::StepError::Other(text)) => Err(StepError::Other(text)),
            }
        }
    };
}

mod v0_1;
mod v0_2;

use std::sync::Arc;

use wasmtime::component::Resource;

use super::state::{ArchiveRequest, MAX_RETENTION_DAYS, MessageDraft, StepState, TemplateParts};
use crate::message::{MessageError, NewAttachment};

/// A change the host may refuse: the outer error ends the call (the deadline, a bad handle),
/// the inner one is the refusal, after which the message is as it was.
type Edit<T> = wasmtime::Result<Result<T, MessageError>>;

/// Why a privileged capability did not do what was asked.
#[derive(Debug)]
enum CapabilityRefusal {
    /// The call runs outside any stored message.
    NoMessageContext,
    /// An argument is out of range.
    InvalidArgument(String),
    /// The host could not do it.
    Failed(String),
}

impl std::fmt::Display for CapabilityRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CapabilityRefusal::NoMessageContext => {
                f.write_str("this call runs outside any stored message (no message context)")
            }
            CapabilityRefusal::InvalidArgument(why) | CapabilityRefusal::Failed(why) => {
                f.write_str(why)
            }
        }
    }
}

fn set_envelope_recipient(
    state: &mut StepState,
    msg: &Resource<MessageDraft>,
    address: &str,
) -> Edit<()> {
    Ok(state
        .draft_mut(msg)?
        .edit(|message| message.set_envelope_recipient(address)))
}

fn set_header(
    state: &mut StepState,
    msg: &Resource<MessageDraft>,
    name: &str,
    value: &str,
) -> Edit<()> {
    Ok(state
        .draft_mut(msg)?
        .edit(|message| message.set_header(name, value)))
}

fn append_header(
    state: &mut StepState,
    msg: &Resource<MessageDraft>,
    name: &str,
    value: &str,
) -> Edit<()> {
    Ok(state
        .draft_mut(msg)?
        .edit(|message| message.append_header(name, value)))
}

async fn set_html(state: &mut StepState, msg: &Resource<MessageDraft>, html: String) -> Edit<()> {
    let cpu = Arc::clone(&state.cpu);
    let draft = state.draft_mut(msg)?;
    if let Err(refused) = draft.check_input(html.len()) {
        return Ok(Err(refused));
    }
    draft
        .edit_rebuilding(&cpu, html.len(), move |message| message.set_html(&html))
        .await
}

async fn set_text(state: &mut StepState, msg: &Resource<MessageDraft>, text: String) -> Edit<()> {
    let cpu = Arc::clone(&state.cpu);
    let draft = state.draft_mut(msg)?;
    if let Err(refused) = draft.check_input(text.len()) {
        return Ok(Err(refused));
    }
    draft
        .edit_rebuilding(&cpu, text.len(), move |message| message.set_text(&text))
        .await
}

async fn add_attachment(
    state: &mut StepState,
    msg: &Resource<MessageDraft>,
    attachment: NewAttachment,
) -> Edit<()> {
    let cpu = Arc::clone(&state.cpu);
    let draft = state.draft_mut(msg)?;
    let size = attachment.content.len();
    if let Err(refused) = draft.check_input(size) {
        return Ok(Err(refused));
    }
    draft
        .edit_rebuilding(&cpu, size, move |message| {
            message.add_attachment(attachment)
        })
        .await
}

/// Removes one attachment; `Ok(false)` when there is none at that index.
async fn remove_attachment(
    state: &mut StepState,
    msg: &Resource<MessageDraft>,
    index: u32,
) -> Edit<bool> {
    let cpu = Arc::clone(&state.cpu);
    state
        .draft_mut(msg)?
        .edit_rebuilding(&cpu, 0, move |message| {
            message.remove_attachment(index as usize)
        })
        .await
}

fn raw(state: &mut StepState, msg: &Resource<MessageDraft>) -> wasmtime::Result<Vec<u8>> {
    state.check_deadline()?;
    Ok(state.draft(msg)?.message().to_bytes())
}

async fn set_raw(state: &mut StepState, msg: &Resource<MessageDraft>, raw: Vec<u8>) -> Edit<()> {
    let cpu = Arc::clone(&state.cpu);
    let draft = state.draft_mut(msg)?;
    let size = raw.len();
    if let Err(refused) = draft.check_input(size) {
        return Ok(Err(refused));
    }
    draft
        .edit_rebuilding(&cpu, size, move |message| message.set_raw(raw))
        .await
}

/// The link a click on link number `index` of the message goes through.
fn click_url(state: &StepState, url: &str, index: u32) -> Result<String, CapabilityRefusal> {
    let context = state.context().ok_or(CapabilityRefusal::NoMessageContext)?;
    Ok(context.links.click_url(&context.message_id, index, url))
}

/// The message's open-tracking pixel.
fn open_pixel_url(state: &StepState) -> Result<String, CapabilityRefusal> {
    let context = state.context().ok_or(CapabilityRefusal::NoMessageContext)?;
    Ok(context.links.open_url(&context.message_id))
}

/// The message's 'view online' link.
fn online_url(state: &StepState) -> Result<String, CapabilityRefusal> {
    let context = state.context().ok_or(CapabilityRefusal::NoMessageContext)?;
    Ok(context.links.online_url(&context.message_id))
}

/// Asks for the message as it is now to be archived when the flow's outcome is recorded.
fn archive(
    state: &mut StepState,
    msg: &Resource<MessageDraft>,
    retention_days: u32,
) -> wasmtime::Result<Result<String, CapabilityRefusal>> {
    let Some(context) = state.context() else {
        return Ok(Err(CapabilityRefusal::NoMessageContext));
    };
    if !(1..=MAX_RETENTION_DAYS).contains(&retention_days) {
        return Ok(Err(CapabilityRefusal::InvalidArgument(format!(
            "retention must be 1 to {MAX_RETENTION_DAYS} days, not {retention_days}"
        ))));
    }
    let message_id = context.message_id.clone();
    let message = raw(state, msg)?;
    state.effects.archive = Some(ArchiveRequest {
        message,
        retention_days,
    });
    Ok(Ok(message_id))
}

/// Signs the message with the platform's and the account's keys, adding the signature fields.
fn sign(
    state: &mut StepState,
    msg: &Resource<MessageDraft>,
) -> wasmtime::Result<Result<(), CapabilityRefusal>> {
    let (account_id, services) = match services(state) {
        Ok(found) => found,
        Err(refused) => return Ok(Err(refused)),
    };
    let message = raw(state, msg)?;
    let signed = match services.sign(account_id, &message) {
        Ok(signed) => signed,
        Err(error) => return Ok(Err(CapabilityRefusal::Failed(error))),
    };
    let added = state
        .draft_mut(msg)?
        .edit(|message| message.prepend_fields(&signed.fields));
    if let Err(refused) = added {
        return Ok(Err(CapabilityRefusal::Failed(refused.to_string())));
    }
    state.effects.dmarc = Some(signed.report);
    Ok(Ok(()))
}

/// The account's template with this name.
fn template(state: &StepState, name: &str) -> Result<Option<TemplateParts>, CapabilityRefusal> {
    let (account_id, services) = services(state)?;
    services
        .template(account_id, name)
        .map_err(CapabilityRefusal::Failed)
}

/// The account and the services privileged capabilities work with.
fn services(
    state: &StepState,
) -> Result<(u64, std::sync::Arc<dyn super::HostServices>), CapabilityRefusal> {
    if state.context().is_none() {
        return Err(CapabilityRefusal::NoMessageContext);
    }
    state.services().map_err(CapabilityRefusal::Failed)
}

/// A Flowstep component prepared for instantiation, by the contract version it was built for.
pub(super) enum FlowstepPre {
    /// Exports `sluice:flowstep/handler@0.2.x`.
    V0_2(super::bindings::v0_2::FlowstepPre<StepState>),
    /// Exports the bare `process` function of 0.1.0.
    V0_1(super::bindings::v0_1::FlowstepPre<StepState>),
}

/// What a step returned, before the host caps its texts.
pub(super) type Returned = Result<super::StepOutcome, super::StepError>;

impl FlowstepPre {
    /// Takes the version whose exports the component has: 0.2 first, then 0.1.0.
    pub(super) fn new(
        instance_pre: wasmtime::component::InstancePre<StepState>,
    ) -> Result<Self, String> {
        let current = match super::bindings::v0_2::FlowstepPre::new(instance_pre.clone()) {
            Ok(pre) => return Ok(FlowstepPre::V0_2(pre)),
            Err(error) => error,
        };
        super::bindings::v0_1::FlowstepPre::new(instance_pre)
            .map(FlowstepPre::V0_1)
            .map_err(|_| {
                format!(
                    "it must export `sluice:flowstep/handler@0.2.0` (or the `process` \
                     function of 0.1.0): {current:#}"
                )
            })
    }

    /// The contract version the component was built for.
    pub(super) fn version(&self) -> &'static str {
        match self {
            FlowstepPre::V0_2(_) => "0.2.0",
            FlowstepPre::V0_1(_) => "0.1.0",
        }
    }

    /// Instantiates the component in `store` and calls its `process`. An `Err` is wasmtime's
    /// (a trap, a failed start) with whether it happened while instantiating.
    pub(super) async fn process(
        &self,
        store: &mut wasmtime::Store<StepState>,
        msg: &Resource<MessageDraft>,
        config: &str,
    ) -> Result<Returned, (wasmtime::Error, bool)> {
        let borrowed = || Resource::new_borrow(msg.rep());
        match self {
            FlowstepPre::V0_2(pre) => {
                let instance = pre
                    .instantiate_async(&mut *store)
                    .await
                    .map_err(|error| (error, true))?;
                let returned = instance
                    .sluice_flowstep_handler()
                    .call_process(&mut *store, borrowed(), config)
                    .await
                    .map_err(|error| (error, false))?;
                Ok(v0_2::returned(returned))
            }
            FlowstepPre::V0_1(pre) => {
                let instance = pre
                    .instantiate_async(&mut *store)
                    .await
                    .map_err(|error| (error, true))?;
                let returned = instance
                    .call_process(&mut *store, borrowed(), config)
                    .await
                    .map_err(|error| (error, false))?;
                Ok(v0_1::returned(returned))
            }
        }
    }
}
