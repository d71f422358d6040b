//! The account's dashboard users and their roles, read over the API as Flowmailer's
//! `AccountUser` (`username`, `roles`) and `Role` (`id`, `name`, `description`). Reading them
//! is a read of the account, which `crate::access` grants an API credential; adding or
//! changing users is not (owners and admins do it in the dashboard), so `POST /users` stays
//! unsupported.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use crate::access;
use crate::store::Role;

/// A dashboard user as Flowmailer's `AccountUser` shows one.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AccountUser)]
#[serde(rename_all = "camelCase")]
pub struct AccountUserView {
    /// Extension: the user's id.
    id: u64,
    /// The address it logs in with.
    username: String,
    /// Its one role's name.
    roles: Vec<&'static str>,
    /// Extension: whether it has set a password yet (an invited user has not).
    active: bool,
}

/// A role of an account's users as Flowmailer's `Role` shows one; its name is its id.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Role)]
pub struct RoleView {
    id: &'static str,
    name: &'static str,
    description: &'static str,
}

/// The roles an account's users can have, most powerful first (operators are the platform's).
const ACCOUNT_ROLES: [Role; 4] = [Role::Owner, Role::Admin, Role::Editor, Role::Viewer];

/// `GET /{account}/users`: the account's dashboard users, oldest first.
#[utoipa::path(
    get,
    path = "/{account}/users",
    tags = ["Users"],
    responses((status = 200, description = "The account's dashboard users", body = Vec<AccountUserView>))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<AccountUserView>>, ApiError> {
    caller.require(account_id)?;
    let users = state.store.users_of(Some(account_id))?;
    Ok(Json(
        users
            .into_iter()
            .map(|user| AccountUserView {
                id: user.id,
                username: user.email,
                roles: vec![user.role.as_str()],
                active: user.password_hash.is_some(),
            })
            .collect(),
    ))
}

/// `GET /{account}/roles`.
#[utoipa::path(
    get,
    path = "/{account}/roles",
    tags = ["Users"],
    responses((status = 200, description = "The roles a user may have", body = Vec<RoleView>))
)]
pub async fn roles(
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<RoleView>>, ApiError> {
    caller.require(account_id)?;
    Ok(Json(
        ACCOUNT_ROLES
            .into_iter()
            .map(|role| RoleView {
                id: role.as_str(),
                name: role.as_str(),
                description: access::summary(role),
            })
            .collect(),
    ))
}
