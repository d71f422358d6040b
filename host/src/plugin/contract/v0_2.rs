//! `sluice:flowstep@0.2.0`: a refused change comes back to the step as an `edit-error`, a
//! capability that cannot help as a `capability-error`; only the deadline ends the call.

use wasmtime::component::Resource;

use super::super::bindings::v0_2::privileged::sluice::flowstep::{
    archive, dkim, online_link, templates, tracking,
};
use super::super::bindings::v0_2::sluice::flowstep::{log, types};
use super::{CapabilityRefusal, Edit};
use crate::message::{MessageError, NewAttachment};
use crate::plugin::state::{MessageDraft, StepState};

/// The refusal as the step sees it.
fn edit_error(refused: MessageError) -> types::EditError {
    match refused {
        MessageError::InvalidHeaderName(name) => types::EditError::InvalidHeaderName(name),
        MessageError::HeaderInjection { name } | MessageError::ControlCharacter { name, .. } => {
            types::EditError::InvalidHeaderValue(name)
        }
        MessageError::InvalidAddress(address) => types::EditError::InvalidAddress(address),
        MessageError::TooLarge { limit, .. } => types::EditError::TooLarge(limit as u64),
        MessageError::Malformed(why) => types::EditError::MalformedMessage(why),
    }
}

/// Hands a refusal to the step, and notes it in the step's log in the host's words (which
/// say more than the typed error: the size reached, the character found).
fn refusal<T>(
    edit: Edit<T>,
    state: &mut StepState,
) -> wasmtime::Result<Result<T, types::EditError>> {
    Ok(edit?.map_err(|refused| {
        state.write_log("warn", format!("the host refused a change: {refused}"));
        edit_error(refused)
    }))
}

fn capability_error(refused: CapabilityRefusal) -> types::CapabilityError {
    match refused {
        CapabilityRefusal::NoMessageContext => types::CapabilityError::NoMessageContext,
        CapabilityRefusal::InvalidArgument(why) => types::CapabilityError::InvalidArgument(why),
        CapabilityRefusal::Failed(why) => types::CapabilityError::Failed(why),
    }
}

/// The disposition of a part, from the name the message model gives it.
pub(in crate::plugin) fn disposition(name: &str) -> types::Disposition {
    if name.eq_ignore_ascii_case("inline") {
        types::Disposition::Inline
    } else {
        types::Disposition::Attachment
    }
}

impl types::Host for StepState {}

impl types::HostMessage for StepState {
    fn envelope_sender(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<String> {
        Ok(self.draft(&msg)?.message().envelope().sender.clone())
    }

    fn envelope_recipient(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<String> {
        Ok(self.draft(&msg)?.message().envelope().recipient.clone())
    }

    fn set_envelope_recipient(
        &mut self,
        msg: Resource<MessageDraft>,
        address: String,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::set_envelope_recipient(self, &msg, &address), self)
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

    fn set_header(
        &mut self,
        msg: Resource<MessageDraft>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::set_header(self, &msg, &name, &value), self)
    }

    fn append_header(
        &mut self,
        msg: Resource<MessageDraft>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::append_header(self, &msg, &name, &value), self)
    }

    fn remove_header(&mut self, msg: Resource<MessageDraft>, name: String) -> wasmtime::Result<()> {
        super::remove_header(self, &msg, &name)
    }

    fn html(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<Option<String>> {
        Ok(self.draft(&msg)?.message().html())
    }

    async fn set_html(
        &mut self,
        msg: Resource<MessageDraft>,
        html: String,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::set_html(self, &msg, html).await, self)
    }

    fn text(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<Option<String>> {
        Ok(self.draft(&msg)?.message().text())
    }

    async fn set_text(
        &mut self,
        msg: Resource<MessageDraft>,
        text: String,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::set_text(self, &msg, text).await, self)
    }

    fn attachments(
        &mut self,
        msg: Resource<MessageDraft>,
    ) -> wasmtime::Result<Vec<types::AttachmentInfo>> {
        Ok(self
            .draft(&msg)?
            .message()
            .attachments()
            .into_iter()
            .map(|info| types::AttachmentInfo {
                index: info.index as u32,
                filename: info.filename,
                content_type: info.content_type,
                disposition: disposition(&info.disposition),
                content_id: info.content_id,
                size: info.size as u64,
            })
            .collect())
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

    async fn add_attachment(
        &mut self,
        msg: Resource<MessageDraft>,
        attachment: types::NewAttachment,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        let attachment = NewAttachment {
            filename: attachment.filename,
            content_type: attachment.content_type,
            content: attachment.content,
            inline: attachment.disposition == types::Disposition::Inline,
            content_id: attachment.content_id,
        };
        refusal(super::add_attachment(self, &msg, attachment).await, self)
    }

    async fn remove_attachment(
        &mut self,
        msg: Resource<MessageDraft>,
        index: u32,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        Ok(
            match refusal(super::remove_attachment(self, &msg, index).await, self)? {
                Ok(true) => Ok(()),
                Ok(false) => Err(types::EditError::NoSuchAttachment(index)),
                Err(refused) => Err(refused),
            },
        )
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

    async fn set_raw(
        &mut self,
        msg: Resource<MessageDraft>,
        raw: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::set_raw(self, &msg, raw).await, self)
    }

    fn drop(&mut self, _msg: Resource<MessageDraft>) -> wasmtime::Result<()> {
        // The host owns every message; a guest only ever holds borrows, which it cannot drop.
        Ok(())
    }
}

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

impl tracking::Host for StepState {
    fn click_url(
        &mut self,
        _msg: Resource<MessageDraft>,
        url: String,
        index: u32,
    ) -> wasmtime::Result<Result<String, types::CapabilityError>> {
        Ok(super::click_url(self, &url, index).map_err(capability_error))
    }

    fn open_pixel_url(
        &mut self,
        _msg: Resource<MessageDraft>,
    ) -> wasmtime::Result<Result<String, types::CapabilityError>> {
        Ok(super::open_pixel_url(self).map_err(capability_error))
    }
}

impl online_link::Host for StepState {
    fn url(
        &mut self,
        _msg: Resource<MessageDraft>,
    ) -> wasmtime::Result<Result<String, types::CapabilityError>> {
        Ok(super::online_url(self).map_err(capability_error))
    }
}

impl archive::Host for StepState {
    fn store(
        &mut self,
        msg: Resource<MessageDraft>,
        retention_days: u32,
    ) -> wasmtime::Result<Result<String, types::CapabilityError>> {
        Ok(super::archive(self, &msg, retention_days)?.map_err(capability_error))
    }
}

impl dkim::Host for StepState {
    fn sign(
        &mut self,
        msg: Resource<MessageDraft>,
    ) -> wasmtime::Result<Result<(), types::CapabilityError>> {
        Ok(super::sign(self, &msg)?.map_err(capability_error))
    }
}

impl templates::Host for StepState {
    fn lookup(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Option<templates::Template>, types::CapabilityError>> {
        Ok(super::template(self, &name)
            .map(|found| {
                found.map(|parts| templates::Template {
                    subject: parts.subject,
                    html: parts.html,
                    text: parts.text,
                })
            })
            .map_err(capability_error))
    }
}

/// What the step returned, in the host's terms.
pub(super) fn returned(returned: Result<types::Outcome, types::StepError>) -> super::Returned {
    use crate::plugin::{StepError, StepOutcome};
    match returned {
        Ok(types::Outcome::Continue) => Ok(StepOutcome::Continue),
        Ok(types::Outcome::Hold(reason)) => Ok(StepOutcome::Hold(reason)),
        Ok(types::Outcome::Discard(reason)) => Ok(StepOutcome::Discard(reason)),
        Err(types::StepError::InvalidConfig(text)) => Err(StepError::InvalidConfig(text)),
        Err(types::StepError::MissingData(text)) => Err(StepError::MissingData(text)),
        Err(types::StepError::UnsupportedMessage(text)) => Err(StepError::UnsupportedMessage(text)),
        Err(types::StepError::CapabilityFailed(text)) => Err(StepError::CapabilityFailed(text)),
        Err(types::StepError::Other(text)) => Err(StepError::Other(text)),
    }
}
