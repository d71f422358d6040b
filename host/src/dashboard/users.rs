//! The account's users (invite, change role, remove) and the login audit log. Who may give
//! which role is `crate::access::may_assign`: admins manage everyone but owners, owners
//! everyone; nobody makes an operator here.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::login::send_password_link;
use super::pages::render_page;
use super::session::{CsrfOnly, Refusal, Viewer, internal, refused};
use super::throttle::Attempt;
use crate::access::{Action, may_assign};
use crate::store::{NewUser, Role, StoreError, User};

/// Audit entries shown.
const AUDIT_SHOWN: usize = 200;

/// `GET /users`.
pub(super) async fn list(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    let account_id = match viewer.account_for(Action::Read) {
        Ok(account) => account,
        Err(refusal) => return refusal.into_response(),
    };
    let users = match state.store.users_of(Some(account_id)) {
        Ok(users) => users,
        Err(error) => return internal(error),
    };
    let principal = viewer.principal();
    let assignable: Vec<&str> = [Role::Owner, Role::Admin, Role::Editor, Role::Viewer]
        .into_iter()
        .filter(|role| may_assign(principal, *role, account_id))
        .map(Role::as_str)
        .collect();
    render_page(
        &state,
        &viewer,
        "users.html",
        "users",
        context! {
            users => users.iter().map(|user| context! {
                id => user.id,
                email => &user.email,
                role => user.role.as_str(),
                invited => user.password_hash.is_none(),
                created_at => user.created_at,
                changeable => user.id != viewer.user.id && may_assign(principal, user.role, account_id),
            }).collect::<Vec<_>>(),
            assignable => assignable,
        },
    )
}

/// The invitation form.
#[derive(Deserialize)]
pub(super) struct AddUser {
    email: String,
    role: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

fn valid_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && !email.chars().any(|c| c.is_control() || c.is_whitespace())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
}

/// `POST /users`: makes a user and mails it a link to choose its password.
pub(super) async fn add(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<AddUser>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::ManageUsers, &form.csrf)?;
    let Some(role) = Role::from_name(&form.role) else {
        return Err(Refusal::BadRequest("Unknown role."));
    };
    if !may_assign(viewer.principal(), role, account_id) {
        return Err(Refusal::Role);
    }
    if !valid_email(&form.email) {
        return Err(Refusal::BadRequest("That is not an e-mail address."));
    }
    if !state
        .throttle
        .allow(Attempt::Invitation, &account_id.to_string())
    {
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            "This account has sent many invitations in the last hour; try again later.",
        )
            .into_response());
    }
    let user = match state
        .store
        .create_user(NewUser {
            account_id: Some(account_id),
            email: form.email,
            role,
            password_hash: None,
        })
        .await
    {
        Ok(user) => user,
        Err(StoreError::Conflict(_)) => {
            return Ok((
                StatusCode::CONFLICT,
                "A user with this address exists already.",
            )
                .into_response());
        }
        Err(StoreError::Full(why)) => return Ok((StatusCode::CONFLICT, why).into_response()),
        Err(error) => return Err(Refusal::store(error)),
    };
    if let Err(error) = send_password_link(&state, &user, true).await {
        return Err(Refusal::store(error));
    }
    Ok(Redirect::to("/users").into_response())
}

/// The user `id` of `account_id`, when the viewer may change it.
fn changeable(
    state: &DashboardState,
    viewer: &Viewer,
    account_id: u64,
    id: u64,
) -> Result<User, Refusal> {
    let user = match state.store.user(id) {
        Ok(Some(user)) if user.account_id == Some(account_id) => user,
        Ok(_) => return Err(Refusal::NotFound("No such user.")),
        Err(error) => return Err(Refusal::store(error)),
    };
    if user.id == viewer.user.id || !may_assign(viewer.principal(), user.role, account_id) {
        return Err(Refusal::Role);
    }
    Ok(user)
}

/// The role form.
#[derive(Deserialize)]
pub(super) struct ChangeRole {
    role: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// `POST /users/{id}/role`.
pub(super) async fn change_role(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<ChangeRole>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::ManageUsers, &form.csrf)?;
    let user = changeable(&state, &viewer, account_id, id)?;
    let Some(role) = Role::from_name(&form.role) else {
        return Err(Refusal::BadRequest("Unknown role."));
    };
    if !may_assign(viewer.principal(), role, account_id) {
        return Err(Refusal::Role);
    }
    state
        .store
        .set_user_role(user.id, role)
        .await
        .map_err(Refusal::store)?;
    Ok(Redirect::to("/users").into_response())
}

/// `POST /users/{id}/remove`: the user and its sessions are gone at once.
pub(super) async fn remove(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::ManageUsers, &form.csrf)?;
    let user = changeable(&state, &viewer, account_id, id)?;
    state
        .store
        .remove_user(user.id)
        .await
        .map_err(Refusal::store)?;
    Ok(Redirect::to("/users").into_response())
}

/// `GET /audit`: the account's login audit log (an operator without a chosen account sees
/// the operators' own).
pub(super) async fn audit(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    let account = match viewer.account_id {
        Some(_) => match viewer.account_for(Action::ManageUsers) {
            Ok(account) => Some(account),
            Err(refusal) => return refusal.into_response(),
        },
        None if viewer.is_operator() => None,
        None => return refused(),
    };
    let entries = match state.store.login_audit(account, AUDIT_SHOWN) {
        Ok(entries) => entries,
        Err(error) => return internal(error),
    };
    render_page(
        &state,
        &viewer,
        "audit.html",
        "audit",
        context! {
            entries => entries.iter().map(|entry| context! {
                at => entry.at, email => &entry.email, address => &entry.address,
                outcome => entry.outcome.describe(), failed => entry.outcome.is_failure(),
            }).collect::<Vec<_>>(),
        },
    )
}
