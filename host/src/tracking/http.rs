//! `GET /c/TOKEN` (click: record CLICKED, redirect) and `GET /o/TOKEN` (open: record OPENED,
//! answer a 1x1 GIF). A token that does not verify gets 404, never a redirect.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use std::sync::Arc;

use crate::store::EventKind;
use crate::store::Store;
use crate::store::{Event, now_millis};
use crate::tracking::LinkSigner;
use crate::truncate::cut_to;

/// What the tracking endpoints need: where events go, and the signer that checks tokens.
/// Whatever serves them provides it (the API implements `FromRef` for it).
#[derive(Clone)]
pub struct TrackingState {
    /// Where opens and clicks are recorded.
    pub store: Store,
    /// Checks the tokens of tracking links.
    pub links: Arc<LinkSigner>,
}

/// The smallest transparent GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The longest User-Agent kept with an open or a click: the reader's client names itself in
/// far less, and anything longer is noise someone chose to send.
const MAX_USER_AGENT_BYTES: usize = 256;
/// The longest link target kept with a click event (the redirect still goes to all of it).
const MAX_KEPT_URL_BYTES: usize = 2048;

fn who(headers: &HeaderMap, peer: SocketAddr) -> serde_json::Value {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    serde_json::json!({
        "userAgent": cut_to(agent.to_string(), MAX_USER_AGENT_BYTES),
        "ip": peer.ip().to_string(),
    })
}

/// `GET /c/{token}`.
#[utoipa::path(
    get,
    path = "/c/{token}",
    tags = ["Sluice extensions", "Tracking"],
    responses((status = 303, description = "Recorded; redirects to the link's target", headers(("Location" = String))), (status = 404, description = "No such link"))
)]
pub async fn click(
    State(state): State<TrackingState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(target) = state.links.verify_click(&token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut detail = who(&headers, peer);
    detail["url"] = cut_to(target.url.clone(), MAX_KEPT_URL_BYTES).into();
    detail["linkIndex"] = target.index.into();
    let event = Event {
        kind: EventKind::Clicked,
        at: now_millis(),
        detail: Some(detail.to_string()),
    };
    let counter = format!("click:{}", target.index);
    match state
        .store
        .record_engagement(&target.message_id, &counter, event)
        .await
    {
        Ok(_) => Redirect::to(&target.url).into_response(),
        // A genuine token of a message that is gone (simulated, or purged).
        Err(crate::store::StoreError::NotFound(_)) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::error!(%error, "could not record a click");
            // The reader still gets where the link pointed.
            Redirect::to(&target.url).into_response()
        }
    }
}

/// `GET /o/{token}`.
#[utoipa::path(
    get,
    path = "/o/{token}",
    tags = ["Sluice extensions", "Tracking"],
    responses((status = 200, description = "Recorded; a transparent GIF", content_type = "image/gif", body = Vec<u8>))
)]
pub async fn open(
    State(state): State<TrackingState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(message_id) = state.links.verify_open(&token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let event = Event {
        kind: EventKind::Opened,
        at: now_millis(),
        detail: Some(who(&headers, peer).to_string()),
    };
    if let Err(error) = state
        .store
        .record_engagement(&message_id, "open", event)
        .await
    {
        tracing::debug!(%error, message = %message_id, "open not recorded");
    }
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PIXEL,
    )
        .into_response()
}
