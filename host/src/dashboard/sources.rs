//! Sources and their credentials: make a source, change its settings and the networks it may
//! connect from, and give it API clients and SMTP users. A new or rotated secret is shown on
//! the answer to the form that made it, once; the store keeps only its hash. Admins and
//! owners only (`Action::Configure`); settings are checked by the API's own `source_from`.

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use ipnet::IpNet;
use minijinja::{Value, context};
use serde::Deserialize;
use serde_json::json;

use super::DashboardState;
use super::pages::{MAX_ERRORS_SHOWN, error_lines, path_choice, quoted, render_form_page};
use super::session::{CsrfOnly, Refusal, Viewer};
use crate::access::Action;
use crate::api::{SourceInput, source_from};
use crate::store::{CredentialKind, Source, StoreError};

/// The most networks an allowlist holds.
const MAX_NETWORKS: usize = 256;
/// The longest username taken (as the API's SMTP users).
const MAX_USERNAME_CHARS: usize = 256;
/// Random bytes of a made secret (hex-encoded: 36 characters).
const SECRET_BYTES: usize = 18;
/// The largest message a source may be allowed, in bytes (the API's request limit is 40 MB).
const MAX_MESSAGE_BYTES: usize = 40 << 20;

fn kind_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Api => "api",
        CredentialKind::Smtp => "smtp",
    }
}

fn random_hex(bytes: usize) -> Result<String, Refusal> {
    crate::store::random_hex(bytes).map_err(Refusal::store)
}

/// `GET /sources`.
pub(super) async fn list(
    State(state): State<DashboardState>,
    viewer: Viewer,
) -> Result<Response, Refusal> {
    let account_id = viewer.account_for(Action::Configure)?;
    Ok(page(&state, &viewer, account_id, Vec::new(), None))
}

/// The page, with errors of the last form or the secret it made.
fn page(
    state: &DashboardState,
    viewer: &Viewer,
    account_id: u64,
    errors: Vec<String>,
    issued: Option<Value>,
) -> Response {
    let sources = match state.store.sources_of(account_id) {
        Ok(sources) => sources,
        Err(error) => return super::session::internal(error),
    };
    let credentials_of = |source: &Source, kind: CredentialKind| -> Vec<String> {
        let mut names: Vec<String> = state
            .store
            .credentials_of_source(source.id, kind)
            .unwrap_or_default()
            .into_iter()
            .map(|credential| credential.username)
            .collect();
        names.sort();
        names
    };
    render_form_page(
        state,
        viewer,
        "sources.html",
        "sources",
        errors,
        context! {
            issued => issued,
            sources => sources.iter().map(|source| context! {
                id => source.id,
                name => &source.name,
                anywhere => source.allowed_networks.is_none(),
                networks => source.allowed_networks.as_ref()
                    .map(|networks| networks.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default(),
                max_message_bytes => source.max_message_bytes,
                require_tls => source.require_tls,
                allow_plain_auth => source.allow_plain_auth,
                feedback_address => source.feedback_address.clone().unwrap_or_default(),
                api_clients => credentials_of(source, CredentialKind::Api),
                smtp_users => credentials_of(source, CredentialKind::Smtp),
            }).collect::<Vec<_>>(),
        },
    )
}

/// The account's source `id`; another account's looks missing.
fn own_source(state: &DashboardState, account_id: u64, id: u64) -> Result<Source, Refusal> {
    match state.store.source(id) {
        Ok(Some(source)) if source.account_id == account_id => Ok(source),
        Ok(_) => Err(Refusal::NotFound("No such source.")),
        Err(error) => Err(Refusal::store(error)),
    }
}

/// Reads an allowlist typed one network a line: CIDR (`192.0.2.0/24`, `2001:db8::/32`) or a
/// single address. Every line that is neither is named.
fn networks(text: &str) -> Result<Vec<IpNet>, Vec<String>> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    // Counted before any is parsed or quoted back.
    if lines.len() > MAX_NETWORKS {
        return Err(vec![format!("Allowlist: at most {MAX_NETWORKS} networks.")]);
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for line in lines {
        let parsed = line.parse::<IpNet>().or_else(|_| {
            line.parse::<std::net::IpAddr>()
                .map(IpNet::from)
                .map_err(|_| ())
        });
        match parsed {
            // A network is kept as written by its first address (192.0.2.7/24 is 192.0.2.0/24).
            Ok(network) => found.push(network.trunc()),
            Err(()) if errors.len() < MAX_ERRORS_SHOWN => errors.push(format!(
                "Allowlist: {} is not a network (192.0.2.0/24, 2001:db8::/32) or an address.",
                quoted(line)
            )),
            Err(()) => {}
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// A source's settings form (also the "new source" form, which has only the name).
#[derive(Deserialize)]
pub(super) struct SourceForm {
    #[serde(default)]
    name: String,
    /// `anywhere` or `listed`; absent on the "new source" form (anywhere).
    #[serde(default)]
    access: String,
    #[serde(default)]
    networks: String,
    #[serde(default)]
    max_message_bytes: String,
    /// Checkboxes: present when ticked.
    #[serde(default)]
    require_tls: Option<String>,
    #[serde(default)]
    allow_plain_auth: Option<String>,
    #[serde(default)]
    feedback_address: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// The form as the API's `SourceInput`, or what is wrong with it.
fn input_of(form: &SourceForm, full: bool) -> Result<SourceInput, Vec<String>> {
    let mut body = json!({ "description": form.name.trim() });
    if !full {
        return serde_json::from_value(body).map_err(|error| vec![error.to_string()]);
    }
    let mut errors = Vec::new();
    body["allowedNetworks"] = match form.access.as_str() {
        "anywhere" => serde_json::Value::Null,
        "listed" => match networks(&form.networks) {
            Ok(found) => json!(found),
            Err(mut wrong) => {
                errors.append(&mut wrong);
                json!([])
            }
        },
        _ => {
            errors.push("Choose who may connect.".into());
            serde_json::Value::Null
        }
    };
    match form.max_message_bytes.trim().parse::<usize>() {
        Ok(bytes) if (1..=MAX_MESSAGE_BYTES).contains(&bytes) => {
            body["maxMessageSize"] = json!(bytes)
        }
        _ => errors.push(format!(
            "Largest message: a number of bytes from 1 to {MAX_MESSAGE_BYTES}."
        )),
    }
    body["requireTls"] = json!(form.require_tls.is_some());
    body["allowPlainAuth"] = json!(form.allow_plain_auth.is_some());
    let feedback = form.feedback_address.trim();
    body["feedbackAddress"] = if feedback.is_empty() {
        serde_json::Value::Null
    } else {
        json!(feedback)
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_json::from_value(body).map_err(|error| vec![error.to_string()])
}

/// The API's check of the settings, as page lines.
fn checked(source: Source, input: SourceInput) -> Result<Source, Vec<String>> {
    source_from(source, input).map_err(|error| super::pages::error_lines(&error))
}

/// `POST /sources`: a new source that anyone may connect to until its allowlist says
/// otherwise, without credentials yet.
pub(super) async fn create(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<SourceForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    let defaults = Source {
        id: 0,
        account_id,
        name: String::new(),
        allowed_networks: None,
        max_message_bytes: 25 << 20,
        require_tls: false,
        allow_plain_auth: false,
        feedback_address: None,
    };
    let source = match input_of(&form, false).and_then(|input| checked(defaults, input)) {
        Ok(source) => source,
        Err(errors) => return Ok(page(&state, &viewer, account_id, errors, None)),
    };
    let source = match state.store.create_source(source).await {
        Ok(source) => source,
        Err(StoreError::Full(why)) => {
            return Ok(page(&state, &viewer, account_id, vec![why], None));
        }
        Err(error) => return Err(Refusal::store(error)),
    };
    Ok(Redirect::to(&format!("/sources#source-{}", source.id)).into_response())
}

/// `POST /sources/{id}`: changes the source's settings; its credentials stay.
pub(super) async fn update(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<SourceForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    let current = own_source(&state, account_id, id)?;
    let source = match input_of(&form, true).and_then(|input| checked(current, input)) {
        Ok(source) => source,
        Err(errors) => return Ok(page(&state, &viewer, account_id, errors, None)),
    };
    state
        .store
        .update_source(source)
        .await
        .map_err(Refusal::store)?;
    Ok(Redirect::to(&format!("/sources#source-{id}")).into_response())
}

/// `POST /sources/{id}/delete`: as the API's `DELETE sources/{id}`: its SMTP users and API
/// clients end with it; refused (and said why) while a flow rule names it.
pub(super) async fn delete(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    own_source(&state, account_id, id)?;
    match crate::api::deletion::delete_source(&state.api, account_id, id).await {
        Ok(()) => Ok(Redirect::to("/sources").into_response()),
        Err(error) => Ok(page(&state, &viewer, account_id, error_lines(&error), None)),
    }
}

/// The credential forms: the kind and username (a username left empty is made up).
#[derive(Deserialize)]
pub(super) struct CredentialForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    username: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

fn kind_of(form: &CredentialForm) -> Result<CredentialKind, Refusal> {
    match form.kind.as_str() {
        "api" => Ok(CredentialKind::Api),
        "smtp" => Ok(CredentialKind::Smtp),
        _ => Err(Refusal::BadRequest("Choose an API client or an SMTP user.")),
    }
}

/// The page showing a secret, this once.
fn issued_page(
    state: &DashboardState,
    viewer: &Viewer,
    source: &Source,
    kind: CredentialKind,
    username: &str,
    secret: &str,
    rotated: bool,
) -> Response {
    page(
        state,
        viewer,
        source.account_id,
        Vec::new(),
        Some(context! {
            source => &source.name,
            kind => kind_name(kind),
            username => username,
            secret => secret,
            rotated => rotated,
        }),
    )
}

/// `POST /sources/{id}/credentials`: a new API client or SMTP user with a made secret.
pub(super) async fn add_credential(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<CredentialForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    let source = own_source(&state, account_id, id)?;
    let kind = kind_of(&form)?;
    let username = match form.username.trim() {
        "" => format!("source{}-{}-{}", source.id, kind_name(kind), random_hex(4)?),
        typed => typed.to_string(),
    };
    if username.chars().count() > MAX_USERNAME_CHARS
        || username
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        let errors = vec![format!(
            "Username: 1 to {MAX_USERNAME_CHARS} characters, no spaces or control characters."
        )];
        return Ok(page(&state, &viewer, account_id, errors, None));
    }
    let secret = random_hex(SECRET_BYTES)?;
    match state
        .store
        .add_credential(&source, kind, &username, &secret)
        .await
    {
        Ok(_) => Ok(issued_page(
            &state, &viewer, &source, kind, &username, &secret, false,
        )),
        Err(StoreError::Conflict(_)) => {
            let errors = vec![format!("The username {username:?} is taken.")];
            Ok(page(&state, &viewer, account_id, errors, None))
        }
        Err(StoreError::Full(why)) => Ok(page(&state, &viewer, account_id, vec![why], None)),
        Err(error) => Err(Refusal::store(error)),
    }
}

/// What a credential's forms ask for.
#[derive(Clone, Copy)]
enum CredentialChange {
    /// A new secret; the old one stops working at once.
    Rotate,
    /// The credential can no longer log in.
    Revoke,
}

/// `POST /sources/{id}/credentials/rotate` gives a credential of the source a new secret (the
/// old one stops working at once); `POST /sources/{id}/credentials/revoke` ends it.
pub(super) async fn change_credential(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((id, change)): Path<(u64, String)>,
    Form(form): Form<CredentialForm>,
) -> Result<Response, Refusal> {
    let change = path_choice(
        &change,
        &[
            ("rotate", CredentialChange::Rotate),
            ("revoke", CredentialChange::Revoke),
        ],
    )?;
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    let source = own_source(&state, account_id, id)?;
    match change {
        CredentialChange::Rotate => {
            let secret = random_hex(SECRET_BYTES)?;
            match state
                .store
                .rotate_credential(source.id, &form.username, &secret)
                .await
            {
                Ok(credential) => Ok(issued_page(
                    &state,
                    &viewer,
                    &source,
                    credential.kind,
                    &credential.username,
                    &secret,
                    true,
                )),
                Err(StoreError::NotFound(_)) => Err(Refusal::NotFound("No such credential.")),
                Err(error) => Err(Refusal::store(error)),
            }
        }
        CredentialChange::Revoke => {
            // Only a credential of this source: a username is global, another account's must
            // stay.
            match state.store.credential(&form.username) {
                Ok(Some(credential)) if credential.source_id == source.id => {}
                Ok(_) => return Err(Refusal::NotFound("No such credential.")),
                Err(error) => return Err(Refusal::store(error)),
            }
            state
                .store
                .remove_credential(&form.username)
                .await
                .map_err(Refusal::store)?;
            Ok(Redirect::to(&format!("/sources#source-{id}")).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_take_networks_and_addresses_and_name_every_wrong_line() {
        let found = networks("192.0.2.7/24\n\n 2001:db8::1 \n10.0.0.1").unwrap();
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["192.0.2.0/24", "2001:db8::1/128", "10.0.0.1/32"]);
        let errors = networks("192.0.2.0/33\nexample.com\n10.0.0.0/8").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("192.0.2.0/33") && errors[1].contains("example.com"));
        assert!(networks("").unwrap().is_empty());
    }

    #[test]
    fn a_huge_allowlist_is_answered_with_a_few_errors_not_one_per_line() {
        let too_many = "x\n".repeat(100_000);
        assert_eq!(
            networks(&too_many).unwrap_err(),
            [format!("Allowlist: at most {MAX_NETWORKS} networks.")]
        );
        let long_line = "y".repeat(1 << 20);
        let wrong = format!("{long_line}\n{}", "x\n".repeat(MAX_NETWORKS - 1));
        let errors = networks(&wrong).unwrap_err();
        assert_eq!(errors.len(), MAX_ERRORS_SHOWN);
        assert!(errors[0].len() < 200, "{}", errors[0].len());
    }
}
