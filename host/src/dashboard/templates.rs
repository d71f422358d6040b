//! Templates: list, make and edit an account's templates, with a preview rendered by the
//! built-in `template` step itself (the same call as the API's preview), so what the page
//! shows is what a flow sends. Checks on save are the API's.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::pages::render_page;
use super::session::{Refusal, Viewer, internal};
use crate::access::Action;
use crate::api::{SampleMessage, TemplateInput, check_template, render_preview};
use crate::store::{StoreError, Template};

/// The largest sample data accepted for a preview.
const MAX_SAMPLE_BYTES: usize = 64 << 10;

/// `GET /templates`.
pub(super) async fn list(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    let account_id = match viewer.account_for(Action::Read) {
        Ok(account) => account,
        Err(refusal) => return refusal.into_response(),
    };
    let templates = match state.store.templates_of(account_id) {
        Ok(templates) => templates,
        Err(error) => return internal(error),
    };
    render_page(
        &state,
        &viewer,
        "templates.html",
        "templates",
        context! {
            templates => templates.iter().map(|template| context! {
                id => template.id, name => &template.name, updated_at => template.updated_at,
            }).collect::<Vec<_>>(),
        },
    )
}

/// The template form (also for a new one, with id 0).
#[derive(Debug, Default, Deserialize)]
pub(super) struct TemplateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    html: String,
    #[serde(default)]
    text: String,
    /// JSON data to preview with.
    #[serde(default)]
    data: String,
    /// `preview` or `save`.
    #[serde(default)]
    action: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

fn own_template(state: &DashboardState, account_id: u64, id: u64) -> Result<Template, Refusal> {
    match state.store.template(id) {
        Ok(Some(template)) if template.account_id == account_id => Ok(template),
        Ok(_) => Err(Refusal::NotFound("No such template.")),
        Err(error) => Err(Refusal::store(error)),
    }
}

fn part(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_string())
}

/// The edit page, with what the form holds, errors and a preview when there are.
fn edit_page(
    state: &DashboardState,
    viewer: &Viewer,
    id: u64,
    form: &TemplateForm,
    errors: Vec<String>,
    preview: Option<crate::api::PreviewView>,
) -> Response {
    render_page(
        state,
        viewer,
        "template.html",
        "templates",
        context! {
            id => id,
            template => context! {
                name => &form.name, subject => &form.subject, html => &form.html,
                text => &form.text, data => &form.data,
            },
            errors => errors,
            preview => preview.map(|view| context! {
                subject => view.subject, html => view.html, text => view.text,
            }),
        },
    )
}

/// `GET /templates/{id}` (0: a new template).
pub(super) async fn edit(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
) -> Response {
    let account_id = match viewer.account_for(Action::Read) {
        Ok(account) => account,
        Err(refusal) => return refusal.into_response(),
    };
    let form = if id == 0 {
        TemplateForm::default()
    } else {
        match own_template(&state, account_id, id) {
            Ok(template) => TemplateForm {
                name: template.name,
                subject: template.subject.unwrap_or_default(),
                html: template.html.unwrap_or_default(),
                text: template.text.unwrap_or_default(),
                ..TemplateForm::default()
            },
            Err(refusal) => return refusal.into_response(),
        }
    };
    edit_page(&state, &viewer, id, &form, Vec::new(), None)
}

/// `POST /templates/{id}`: previews the form's template, or saves it (0 makes a new one).
pub(super) async fn change(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<TemplateForm>,
) -> Result<Response, Refusal> {
    // A preview runs the template step on a sample: a simulation, which access.rs puts
    // under Send (a viewer reads templates but runs nothing).
    let action = if form.action == "save" {
        Action::Edit
    } else {
        Action::Send
    };
    let account_id = viewer.form_account(action, &form.csrf)?;
    if id != 0 {
        own_template(&state, account_id, id)?;
    }
    if form.action == "save" {
        let input = TemplateInput {
            name: form.name.trim().to_string(),
            subject: part(&form.subject),
            html: part(&form.html),
            text: part(&form.text),
        };
        let template = match check_template(input, account_id, id) {
            Ok(template) => template,
            Err(error) => {
                let errors = error
                    .errors()
                    .iter()
                    .map(|field| match &field.field {
                        Some(field_name) => format!("{field_name}: {}", field.default_message),
                        None => field.default_message.clone(),
                    })
                    .collect();
                return Ok(edit_page(&state, &viewer, id, &form, errors, None));
            }
        };
        return Ok(match state.store.put_template(template).await {
            Ok(saved) => Redirect::to(&format!("/templates/{}", saved.id)).into_response(),
            Err(StoreError::Conflict(_)) => edit_page(
                &state,
                &viewer,
                id,
                &form,
                vec!["Another template has this name.".into()],
                None,
            ),
            Err(StoreError::Full(why)) => edit_page(&state, &viewer, id, &form, vec![why], None),
            Err(error) => internal(error),
        });
    }
    let data = if form.data.trim().is_empty() {
        None
    } else if form.data.len() > MAX_SAMPLE_BYTES {
        return Ok((
            StatusCode::PAYLOAD_TOO_LARGE,
            "The sample data is too large.",
        )
            .into_response());
    } else {
        match serde_json::from_str::<serde_json::Value>(&form.data) {
            Ok(data) => Some(data),
            Err(error) => {
                let errors = vec![format!("Sample data: not JSON ({error}).")];
                return Ok(edit_page(&state, &viewer, id, &form, errors, None));
            }
        }
    };
    let config = serde_json::json!({ "inline": {
        "subject": part(&form.subject), "html": part(&form.html), "text": part(&form.text),
    }});
    let sample = SampleMessage {
        subject: Some("Sample message".into()),
        html: Some("<p>The submitted message's own html.</p>".into()),
        text: Some("The submitted message's own text.".into()),
    };
    Ok(
        match render_preview(
            &state.pipeline,
            &state.plugins,
            account_id,
            config,
            data,
            sample,
        )
        .await
        {
            Ok(view) => edit_page(&state, &viewer, id, &form, Vec::new(), Some(view)),
            Err(error) => {
                let errors = error
                    .errors()
                    .iter()
                    .map(|field| field.default_message.clone())
                    .collect();
                edit_page(&state, &viewer, id, &form, errors, None)
            }
        },
    )
}
