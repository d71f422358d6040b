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
    message_reads!();

    fn set_envelope_recipient(
        &mut self,
        msg: Resource<MessageDraft>,
        address: String,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::set_envelope_recipient(self, &msg, &address), self)
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

    async fn set_html(
        &mut self,
        msg: Resource<MessageDraft>,
        html: String,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::set_html(self, &msg, html).await, self)
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

    async fn set_raw(
        &mut self,
        msg: Resource<MessageDraft>,
        raw: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::EditError>> {
        refusal(super::set_raw(self, &msg, raw).await, self)
    }
}

log_and_returned!();

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
