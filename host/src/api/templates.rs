//! Templates (`/{account}/templates`): the subject, html and text sources the `template` step
//! renders, checked for syntax when saved, and a preview that renders through the same step.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mail_builder::MessageBuilder;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::messages::{header_text_error, parse_json};
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

/// A template as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    id: u64,
    name: String,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    updated_on: String,
}

impl From<Template> for TemplateView {
    fn from(template: Template) -> Self {
        Self {
            id: template.id,
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
    let name_ok = !input.name.is_empty()
        && input.name.len() <= 100
        && input
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        errors.push(FieldError {
            code: "invalidName".into(),
            default_message: "1 to 100 characters: letters, digits, '-', '_' and '.'".into(),
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
pub async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<TemplateView>), ApiError> {
    caller.require(account_id)?;
    let template = checked(parse_json(&body)?, account_id, 0)?;
    let template = state.store.put_template(template).await?;
    Ok((StatusCode::CREATED, Json(template.into())))
}

/// `GET /{account}/templates/{id}`.
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<TemplateView>, ApiError> {
    caller.require(account_id)?;
    Ok(Json(own_template(&state, account_id, id)?.into()))
}

/// `PUT /{account}/templates/{id}`.
pub async fn update(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<TemplateView>, ApiError> {
    caller.require(account_id)?;
    own_template(&state, account_id, id)?;
    let template = checked(parse_json(&body)?, account_id, id)?;
    let template = state.store.put_template(template).await?;
    Ok(Json(template.into()))
}

/// `DELETE /{account}/templates/{id}`.
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
#[derive(Deserialize)]
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
#[derive(Default, Deserialize)]
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
#[derive(Serialize)]
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
