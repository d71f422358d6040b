//! Templates (`/{account}/templates`): the subject, html and text sources the `template` step
//! renders, checked for syntax when saved, and a preview that renders through the same step.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mail_builder::MessageBuilder;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::messages::{header_text_error, parse_json};
use super::representation::created;
use crate::message::{Envelope, Message};
use crate::plugin::StepOutcome;
use crate::store::Template;
use crate::timestamp::iso8601;

/// A template as the API takes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateInput {
    /// The name steps refer to it by.
    pub name: String,
    /// The Subject template.
    #[serde(default)]
    pub subject: Option<String>,
    /// The html template.
    #[serde(default)]
    pub html: Option<String>,
    /// The text template.
    #[serde(default)]
    pub text: Option<String>,
}

/// The engine Sluice renders templates with, as a template's `templateEngine` names it.
const TEMPLATE_ENGINE: &str = "minijinja";

/// A template as the API takes it: Flowmailer's `Template` (`description`, `mimeType`, `data`,
/// `templateEngine`, `decodeBase64`), or Sluice's parts (`name`, `subject`, `html`, `text`), or
/// both as a read answers them, so that a template read can be written back unchanged.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TemplateInput)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateBody {
    /// Ignored: the path names the template.
    #[serde(default)]
    id: Option<serde_json::Value>,
    /// Flowmailer's label: the template's name when `name` is not given.
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// `text/html` or `text/plain`: which part `data` is.
    #[serde(default)]
    mime_type: Option<String>,
    /// The content of the part `mimeType` names.
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    decode_base64: Option<bool>,
    #[serde(default)]
    template_engine: Option<String>,
    /// Attachment templates' fields: refused when given (Sluice's templates are message parts).
    #[serde(default)]
    content_id: Option<String>,
    #[serde(default)]
    disposition: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    /// Flowmailer's account copies; Sluice has none, so nothing to keep from.
    #[serde(default, rename = "doNotUpdateOnCopy")]
    _do_not_update_on_copy: Option<bool>,
    /// As a read answers it; ignored.
    #[serde(default, rename = "updatedOn")]
    _updated_on: Option<String>,
}

fn refused(field: &str, code: &str, message: impl Into<String>, value: &str) -> ApiError {
    ApiError::field(field, code, message.into(), Some(value.into()))
}

impl TemplateBody {
    /// The template's parts, from whichever of the two shapes the body uses.
    fn into_input(self) -> Result<TemplateInput, ApiError> {
        let _ = self.id;
        if let Some(engine) = self.template_engine.as_deref()
            && !engine.eq_ignore_ascii_case(TEMPLATE_ENGINE)
        {
            return Err(refused(
                "templateEngine",
                "unsupportedTemplateEngine",
                format!(
                    "Sluice renders templates with {TEMPLATE_ENGINE} (Jinja syntax: {{{{ name }}}}, \
                     {{% if %}}); a {engine} template would not render as written: rewrite it and \
                     send templateEngine \"{TEMPLATE_ENGINE}\""
                ),
                engine,
            ));
        }
        for (field, value) in [
            ("contentId", &self.content_id),
            ("disposition", &self.disposition),
            ("filename", &self.filename),
        ] {
            if let Some(value) = value {
                return Err(refused(
                    field,
                    "notSupported",
                    "Sluice's templates are message parts (subject, html, text), not attachments",
                    value,
                ));
            }
        }
        let (mut html, mut text) = (self.html, self.text);
        if let Some(data) = self.data {
            let data = if self.decode_base64 == Some(true) {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|_| {
                        ApiError::field("data", "invalidBase64", "data is not base64", None)
                    })?;
                String::from_utf8(bytes).map_err(|_| {
                    ApiError::field("data", "invalidText", "data is not UTF-8 text", None)
                })?
            } else {
                data
            };
            let mime_type = self.mime_type.as_deref().unwrap_or("");
            let part = match mime_type.to_ascii_lowercase().as_str() {
                "text/html" => &mut html,
                "text/plain" => &mut text,
                _ => {
                    return Err(refused(
                        "mimeType",
                        "unsupportedMimeType",
                        "a template's data is text/html or text/plain",
                        mime_type,
                    ));
                }
            };
            match part {
                Some(given) if *given != data => {
                    return Err(ApiError::field(
                        "data",
                        "conflictingContent",
                        format!("data and the {mime_type} part differ: give one"),
                        None,
                    ));
                }
                _ => *part = Some(data),
            }
        }
        let name = self.name.or(self.description).ok_or_else(|| {
            ApiError::field(
                "description",
                "required",
                "a template needs a description (or name)",
                None,
            )
        })?;
        Ok(TemplateInput {
            name,
            subject: self.subject,
            html,
            text,
        })
    }
}

/// A template as the API shows it: Flowmailer's `Template` (its `data` the html part, else
/// the text part), and Sluice's parts beside it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Template)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    id: u64,
    description: String,
    template_engine: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    decode_base64: bool,
    name: String,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    updated_on: String,
}

impl From<Template> for TemplateView {
    fn from(template: Template) -> Self {
        let (mime_type, data) = match (&template.html, &template.text) {
            (Some(html), _) => (Some("text/html"), Some(html.clone())),
            (None, Some(text)) => (Some("text/plain"), Some(text.clone())),
            (None, None) => (None, None),
        };
        Self {
            id: template.id,
            description: template.name.clone(),
            template_engine: TEMPLATE_ENGINE,
            mime_type,
            data,
            decode_base64: false,
            name: template.name,
            subject: template.subject,
            html: template.html,
            text: template.text,
            updated_on: iso8601(template.updated_at),
        }
    }
}

/// Refuses a template whose parts do not parse, naming the part and the line; also checks
/// the name is one a flow can refer to.
pub(crate) fn checked(
    input: TemplateInput,
    account_id: u64,
    id: u64,
) -> Result<Template, ApiError> {
    let mut errors = Vec::new();
    // Flowmailer's clients name a template by its description ("Order confirmation"): any
    // text a step's configuration can quote, without control characters or outer spaces.
    let name_ok = !input.name.is_empty()
        && input.name.chars().count() <= 100
        && input.name.trim() == input.name
        && !input.name.chars().any(char::is_control);
    if !name_ok {
        errors.push(FieldError {
            code: "invalidName".into(),
            default_message: "1 to 100 characters, no control characters, no spaces at either end"
                .into(),
            field: Some("name".into()),
            object_name: Some("template".into()),
            rejected_value: Some(input.name.clone().into()),
        });
    }
    if input.subject.is_none() && input.html.is_none() && input.text.is_none() {
        errors.push(FieldError {
            code: "emptyTemplate".into(),
            default_message: "a template needs a subject, html or text part".into(),
            field: None,
            object_name: Some("template".into()),
            rejected_value: None,
        });
    }
    for (part, source) in [
        ("subject", &input.subject),
        ("html", &input.html),
        ("text", &input.text),
    ] {
        let Some(source) = source else { continue };
        errors.extend(syntax_error(part, source));
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    Ok(Template {
        id,
        account_id,
        name: input.name,
        subject: input.subject,
        html: input.html,
        text: input.text,
        updated_at: crate::store::now_millis(),
    })
}

/// Parses one part with the same template language the step renders with; the error, if any.
fn syntax_error(part: &str, source: &str) -> Option<FieldError> {
    let environment = minijinja::Environment::new();
    match environment.template_from_named_str(part, source) {
        Ok(_) => None,
        Err(error) => {
            let line = error.line();
            let detail = error.detail().unwrap_or("syntax error").to_string();
            Some(FieldError {
                code: "templateSyntax".into(),
                default_message: match line {
                    Some(line) => format!("{part} line {line}: {detail}"),
                    None => format!("{part}: {detail}"),
                },
                field: Some(part.into()),
                object_name: Some("template".into()),
                rejected_value: line.map(|line| serde_json::json!({ "line": line })),
            })
        }
    }
}

fn own_template(state: &ApiState, account_id: u64, id: u64) -> Result<Template, ApiError> {
    state
        .store
        .template(id)?
        .filter(|template| template.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("template"))
}

/// `GET /{account}/templates`.
#[utoipa::path(
    get,
    path = "/{account}/templates",
    tags = ["Templates"],
    responses((status = 200, description = "The account's templates", body = Vec<TemplateView>))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<TemplateView>>, ApiError> {
    caller.require(account_id)?;
    let templates = state.store.templates_of(account_id)?;
    Ok(Json(
        templates.into_iter().map(TemplateView::from).collect(),
    ))
}

/// `POST /{account}/templates`.
#[utoipa::path(
    post,
    path = "/{account}/templates",
    tags = ["Templates"],
    request_body = TemplateBody,
    responses((status = 201, description = "The template", body = TemplateView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    let body: TemplateBody = parse_json(&body)?;
    let template = checked(body.into_input()?, account_id, 0)?;
    let template = state.store.put_template(template).await?;
    created(
        format!("/{account_id}/templates/{}", template.id),
        TemplateView::from(template),
    )
}

/// `GET /{account}/templates/{id}`.
#[utoipa::path(
    get,
    path = "/{account}/templates/{id}",
    tags = ["Templates"],
    responses((status = 200, description = "The template", body = TemplateView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<TemplateView>, ApiError> {
    caller.require(account_id)?;
    Ok(Json(own_template(&state, account_id, id)?.into()))
}

/// `PUT /{account}/templates/{id}`.
#[utoipa::path(
    put,
    path = "/{account}/templates/{id}",
    tags = ["Templates"],
    request_body = TemplateBody,
    responses((status = 200, description = "The template", body = TemplateView))
)]
pub async fn update(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<TemplateView>, ApiError> {
    caller.require(account_id)?;
    own_template(&state, account_id, id)?;
    let body: TemplateBody = parse_json(&body)?;
    let template = checked(body.into_input()?, account_id, id)?;
    let template = state.store.put_template(template).await?;
    Ok(Json(template.into()))
}

/// `DELETE /{account}/templates/{id}`.
#[utoipa::path(
    delete,
    path = "/{account}/templates/{id}",
    tags = ["Templates"],
    responses((status = 204, description = "Done"), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    let template = own_template(&state, account_id, id)?;
    state.store.delete_template(template).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a preview renders: a stored template (by name) or one given here, with sample data
/// and, optionally, a sample of the submitted message it may reuse.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TemplatePreview)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreviewInput {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<SampleMessage>,
}

/// The submitted message a preview pretends to wrap.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampleMessage {
    /// Its subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Its html part.
    #[serde(default)]
    pub html: Option<String>,
    /// Its text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// The rendered parts.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TemplatePreviewResult)]
#[serde(rename_all = "camelCase")]
pub struct PreviewView {
    /// The rendered Subject.
    pub subject: Option<String>,
    /// The rendered html part.
    pub html: Option<String>,
    /// The rendered text part.
    pub text: Option<String>,
}

/// `POST /{account}/templates/preview`: renders through the built-in `template` step itself,
/// so a preview and a sent message cannot disagree. A template error answers 422 with the
/// part and line.
#[utoipa::path(
    post,
    path = "/{account}/templates/preview",
    tags = ["Sluice extensions", "Templates"],
    request_body = PreviewInput,
    responses((status = 200, description = "The rendered subject, html and text", body = PreviewView), (status = 422, description = "The template does not render: allErrors names the part and line"))
)]
pub async fn preview(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<PreviewView>, ApiError> {
    caller.require(account_id)?;
    let input: PreviewInput = parse_json(&body)?;
    let config = match &input.name {
        Some(name) => serde_json::json!({ "template": name }),
        None => serde_json::json!({ "inline": {
            "subject": input.subject, "html": input.html, "text": input.text,
        }}),
    };
    let sample = input.message.unwrap_or_default();
    render_preview(
        &state.pipeline,
        &state.plugins,
        account_id,
        config,
        input.data,
        sample,
    )
    .await
    .map(Json)
}

/// Renders a template step's `config` over a sample message with `data`, through the
/// built-in `template` step itself (the API's and the dashboard's previews alike).
pub(crate) async fn render_preview(
    pipeline: &crate::flow::PipelineHandle,
    plugins: &crate::plugin::registry::PluginRegistry,
    account_id: u64,
    config: serde_json::Value,
    data: Option<serde_json::Value>,
    sample: SampleMessage,
) -> Result<PreviewView, ApiError> {
    if let Some(error) = sample
        .subject
        .as_deref()
        .and_then(|subject| header_text_error("previewInput", "message.subject", subject))
    {
        return Err(ApiError::fields(vec![error]));
    }
    let mut builder = MessageBuilder::new()
        .from("preview@sluice.invalid")
        .to("preview@sluice.invalid")
        .subject(sample.subject.unwrap_or_default());
    if let Some(text) = sample.text {
        builder = builder.text_body(text);
    }
    builder = builder.html_body(sample.html.unwrap_or_default());
    let raw = builder.write_to_vec().map_err(ApiError::internal)?;
    let envelope = Envelope {
        sender: "preview@sluice.invalid".into(),
        recipient: "preview@sluice.invalid".into(),
    };
    let message = Message::parse(raw, envelope)
        .map_err(ApiError::internal)?
        .with_data(data.map(|data| data.to_string()));
    let plugin = plugins
        .get("template")
        .ok_or_else(|| ApiError::internal("the built-in template step is not loaded"))?;
    let run = pipeline
        .run_dry(plugin, message, config.to_string(), account_id, "preview")
        .await?;
    let unprocessable =
        |reason: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "templateError", reason);
    match run {
        Ok(run) => match run.outcome {
            StepOutcome::Continue => Ok(PreviewView {
                subject: run.message.header("Subject"),
                html: run.message.html(),
                text: run.message.text(),
            }),
            StepOutcome::Hold(reason) | StepOutcome::Discard(reason) => Err(unprocessable(reason)),
        },
        Err(failed) => Err(unprocessable(failed.failure.to_string())),
    }
}
