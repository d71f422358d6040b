//! `GET /{account}/flow_templates`: Flowmailer's flow templates are starting points a flow is
//! made from in its dashboard. Sluice has none (a flow is made from its steps), so the honest
//! answer is the empty list, paged like every list (`Content-Range`, no `Next-Range`): a client
//! that lists them reads "none" rather than failing on a 501.

use axum::Json;
use axum::extract::Path;
use axum::http::HeaderMap;

use super::auth::Caller;
use super::error::ApiError;
use super::paging::{Order, page, requested};

/// `GET /{account}/flow_templates`: always the empty list of Flowmailer's `FlowTemplate`s.
#[utoipa::path(
    get,
    path = "/{account}/flow_templates",
    tags = ["Flows"],
    params(super::openapi::ItemsRange),
    responses((status = 200, description = "Always empty: Sluice has no flow templates", body = Vec<std::collections::HashMap<String, String>>))
)]
pub async fn list(
    Path(account_id): Path<u64>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<(HeaderMap, Json<Vec<serde_json::Value>>), ApiError> {
    caller.require(account_id)?;
    let none: Vec<serde_json::Value> = Vec::new();
    let (answer, templates) = page(&requested(&headers)?, none, Order::Ascending, |template| {
        template["id"].as_str().unwrap_or_default().to_string()
    })?;
    Ok((answer, Json(templates)))
}
