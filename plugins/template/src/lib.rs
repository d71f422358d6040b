//! Built-in Flowstep `template`: renders a template (subject, html and text parts) with
//! minijinja from the message's submitted `data` and the message itself, and writes the
//! results into the message.
//!
//! Configuration, exactly one of:
//! - `{"template": "<name>"}`: the account's stored template (host `templates` capability);
//!   a name the account does not have holds the message;
//! - `{"inline": {"subject": "...", "html": "...", "text": "..."}}`: the template itself
//!   (each part optional), as the API's preview sends it.
//!
//! A template that does not render (a syntax error, an undefined value) holds the message with
//! the part and line in the reason: a message is never sent half rendered. See README.md for
//! the variables and functions a template can use.

mod render;
mod text;

use serde::Deserialize;
use sluice_plugin_sdk::privileged::{online_link, templates};
use sluice_plugin_sdk::{Disposition, Flowstep, Message, Outcome, StepError, export_flowstep, log};

pub use render::{
    AttachmentView, MessageView, Part, RenderContext, RenderError, Rendered, TemplateParts, render,
    single_line,
};
pub use text::html_to_text;

/// The step's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawConfig")]
pub enum Config {
    /// One of the account's stored templates, by name.
    Stored(String),
    /// A template given in the configuration.
    Inline(TemplateParts),
}

/// The configuration as written; [`Config`] checks that exactly one source is given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    template: Option<String>,
    inline: Option<TemplateParts>,
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Config, String> {
        match (raw.template, raw.inline) {
            (Some(name), None) if name.trim().is_empty() => {
                Err("`template` must name a template".into())
            }
            (Some(name), None) => Ok(Config::Stored(name)),
            (None, Some(parts)) => Ok(Config::Inline(parts)),
            (Some(_), Some(_)) => Err("give either `template` or `inline`, not both".into()),
            (None, None) => Err("give `template` (a stored template's name) or `inline`".into()),
        }
    }
}

struct Template;

impl Flowstep for Template {
    type Config = Config;

    fn process(message: &Message, config: Config) -> Result<Outcome, StepError> {
        let (label, name, parts) = match config {
            Config::Stored(name) => {
                // A configuration naming no template is wrong the same way at save time (where
                // the host refuses it) and at send time (where the message is held).
                let Some(stored) = templates::lookup(&name)? else {
                    return Err(StepError::InvalidConfig(format!(
                        "template `{name}` does not exist"
                    )));
                };
                let parts = TemplateParts {
                    subject: stored.subject,
                    html: stored.html,
                    text: stored.text,
                };
                (format!("template `{name}`"), name, parts)
            }
            Config::Inline(parts) => ("inline template".to_owned(), "inline".to_owned(), parts),
        };
        let context = gather(message, &parts)?;
        let rendered = match render(&name, &parts, &context) {
            Ok(rendered) => rendered,
            Err(error) => return Ok(Outcome::Hold(format!("{label} {error}"))),
        };
        if let Some(subject) = &rendered.subject {
            message.set_header("Subject", subject)?;
        }
        if let Some(html) = &rendered.html {
            message.set_html(html)?;
        }
        if let Some(text) = &rendered.text {
            message.set_text(text)?;
        }
        log::debug(&format!("rendered {label}"));
        Ok(Outcome::Continue)
    }
}

/// Reads from the host what the template can use. The message's bodies, its header fields and
/// the online link are fetched only when a part's source mentions them: a template cannot
/// reach `message`, `header` or `online_link` without naming them.
fn gather(message: &Message, parts: &TemplateParts) -> Result<RenderContext, StepError> {
    let sources = [&parts.subject, &parts.html, &parts.text];
    let mentions = |word: &str| sources.iter().copied().flatten().any(|s| s.contains(word));
    let data = message
        .data()
        .map(|data| serde_json::from_str::<serde_json::Value>(&data))
        .transpose()
        .map_err(|error| {
            StepError::MissingData(format!("the submitted data is not JSON: {error}"))
        })?;
    let mut context = RenderContext {
        data,
        ..RenderContext::default()
    };
    if mentions("message") {
        context.message = MessageView {
            subject: message.header("Subject"),
            html: message.html(),
            text: message.text(),
            sender: message.envelope_sender(),
            recipient: message.envelope_recipient(),
            attachments: message
                .attachments()
                .into_iter()
                .map(|info| AttachmentView {
                    filename: info.filename,
                    content_type: info.content_type,
                    disposition: match info.disposition {
                        Disposition::Inline => "inline".into(),
                        Disposition::Attachment => "attachment".into(),
                    },
                    content_id: info.content_id,
                    size: info.size,
                })
                .collect(),
        };
    }
    if mentions("header") {
        context.headers = message
            .headers()
            .into_iter()
            .map(|header| (header.name, header.value))
            .collect();
    }
    if mentions("online_link") {
        context.online_link = Some(online_link::url(message)?);
    }
    Ok(context)
}

export_flowstep!(Template);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        serde_json::from_str::<Config>(json).map_err(|error| error.to_string())
    }

    #[test]
    fn stored_template_config() {
        assert_eq!(
            parse(r#"{"template": "welcome"}"#),
            Ok(Config::Stored("welcome".into()))
        );
    }

    #[test]
    fn inline_template_config() {
        assert_eq!(
            parse(r#"{"inline": {"subject": "Hi", "html": "<p>Hi</p>"}}"#),
            Ok(Config::Inline(TemplateParts {
                subject: Some("Hi".into()),
                html: Some("<p>Hi</p>".into()),
                text: None,
            }))
        );
        assert_eq!(
            parse(r#"{"inline": {}}"#),
            Ok(Config::Inline(TemplateParts::default()))
        );
    }

    #[test]
    fn both_sources_are_refused() {
        let error = parse(r#"{"template": "welcome", "inline": {"text": "x"}}"#).unwrap_err();
        assert!(error.contains("not both"), "{error}");
    }

    #[test]
    fn no_source_is_refused() {
        let error = parse("{}").unwrap_err();
        assert!(error.contains("give `template`"), "{error}");
        assert!(parse("null").is_err());
        let error = parse(r#"{"template": " "}"#).unwrap_err();
        assert!(error.contains("must name"), "{error}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = parse(r#"{"template": "welcome", "locale": "de"}"#).unwrap_err();
        assert!(error.contains("unknown field `locale`"), "{error}");
        let error = parse(r#"{"inline": {"body": "x"}}"#).unwrap_err();
        assert!(error.contains("unknown field `body`"), "{error}");
    }
}
