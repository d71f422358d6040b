//! `sluice:flowstep@0.1.0`, kept so components built against it run unchanged: a refused
//! change traps (the step fails as invalid output and the message is kept), and the privileged
//! capabilities answer with text errors.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::component::Resource;

use super::super::bindings::v0_1::privileged::sluice::flowstep::{
    archive, dkim, online_link, templates, tracking,
};
use super::super::bindings::v0_1::sluice::flowstep::{clock, log, types};
use super::Edit;
use crate::message::NewAttachment;
use crate::plugin::state::{MessageDraft, StepState};

/// A refused change ends the call as a trap that carries the typed refusal.
fn trap_on_refusal<T>(edit: Edit<T>) -> wasmtime::Result<T> {
    edit?.map_err(wasmtime::Error::new)
}

impl types::Host for StepState {}

impl types::HostMessage for StepState {
    message_reads!();

    fn set_envelope_recipient(
        &mut self,
        msg: Resource<MessageDraft>,
        address: String,
    ) -> wasmtime::Result<()> {
        trap_on_refusal(super::set_envelope_recipient(self, &msg, &address))
    }

    fn set_header(
        &mut self,
        msg: Resource<MessageDraft>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        trap_on_refusal(super::set_header(self, &msg, &name, &value))
    }

    fn append_header(
        &mut self,
        msg: Resource<MessageDraft>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        trap_on_refusal(super::append_header(self, &msg, &name, &value))
    }

    async fn set_html(
        &mut self,
        msg: Resource<MessageDraft>,
        html: String,
    ) -> wasmtime::Result<()> {
        trap_on_refusal(super::set_html(self, &msg, html).await)
    }

    async fn set_text(
        &mut self,
        msg: Resource<MessageDraft>,
        text: String,
    ) -> wasmtime::Result<()> {
        trap_on_refusal(super::set_text(self, &msg, text).await)
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
                disposition: info.disposition,
                content_id: info.content_id,
                size: info.size as u64,
            })
            .collect())
    }

    async fn add_attachment(
        &mut self,
        msg: Resource<MessageDraft>,
        attachment: types::NewAttachment,
    ) -> wasmtime::Result<()> {
        let attachment = NewAttachment {
            filename: attachment.filename,
            content_type: attachment.content_type,
            content: attachment.content,
            inline: attachment.inline,
            content_id: attachment.content_id,
        };
        trap_on_refusal(super::add_attachment(self, &msg, attachment).await)
    }

    async fn remove_attachment(
        &mut self,
        msg: Resource<MessageDraft>,
        index: u32,
    ) -> wasmtime::Result<bool> {
        trap_on_refusal(super::remove_attachment(self, &msg, index).await)
    }

    async fn set_raw(&mut self, msg: Resource<MessageDraft>, raw: Vec<u8>) -> wasmtime::Result<()> {
        trap_on_refusal(super::set_raw(self, &msg, raw).await)
    }
}

log_and_returned!();

impl clock::Host for StepState {
    fn now_millis(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64))
    }
}

impl tracking::Host for StepState {
    fn click_url(
        &mut self,
        _msg: Resource<MessageDraft>,
        url: String,
        index: u32,
    ) -> wasmtime::Result<String> {
        super::click_url(self, &url, index).map_err(wasmtime::Error::msg)
    }

    fn open_pixel_url(&mut self, _msg: Resource<MessageDraft>) -> wasmtime::Result<String> {
        super::open_pixel_url(self).map_err(wasmtime::Error::msg)
    }
}

impl online_link::Host for StepState {
    fn url(&mut self, _msg: Resource<MessageDraft>) -> wasmtime::Result<String> {
        super::online_url(self).map_err(wasmtime::Error::msg)
    }
}

impl archive::Host for StepState {
    fn store(
        &mut self,
        msg: Resource<MessageDraft>,
        retention_days: u32,
    ) -> wasmtime::Result<Result<String, String>> {
        Ok(super::archive(self, &msg, retention_days)?.map_err(|refused| refused.to_string()))
    }
}

impl dkim::Host for StepState {
    fn sign(&mut self, msg: Resource<MessageDraft>) -> wasmtime::Result<Result<(), String>> {
        Ok(super::sign(self, &msg)?.map_err(|refused| refused.to_string()))
    }
}

impl templates::Host for StepState {
    fn lookup(&mut self, name: String) -> wasmtime::Result<Option<templates::Template>> {
        let found = super::template(self, &name).map_err(wasmtime::Error::msg)?;
        Ok(found.map(|parts| templates::Template {
            subject: parts.subject,
            html: parts.html,
            text: parts.text,
        }))
    }
}
