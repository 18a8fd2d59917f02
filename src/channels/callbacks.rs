//! The on-call callback endpoints' shared machinery: each channel people are paged through
//! adds its routes (the registry's [`crate::channels::ONCALL_CALLBACKS`], handlers in its
//! folder's `oncall.rs`): `GET/POST /callback/wecom` (the WeCom application's URL check and
//! encrypted events), `GET/POST /callback/official-account` (the Official Account's URL check
//! and pushes) and `POST /callback/voice/{aliyun|tencent}/{secret}` (call reports).
//!
//! Each is verified from the request head where it can be: the voice secret in the path
//! (constant time, a bare 404 when wrong, before a byte of the body is read) and the
//! signature parameters' presence; a signed body is read only up to a small bound
//! ([`read_body`]) and refused (401, [`refused`]) when its signature does not hold. An event
//! is handed to the sink once per upstream id ([`deliver`]: the store remembers the ids for
//! 73 h, across replicas); the upstream is answered once the sink took it, or 503 so that it
//! sends again. An endpoint without its keys configured answers 404 ([`not_found`]).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use tracing::{info, warn};

use crate::channels::reach::{Endpoints, OncallEvent, first_time, release};
use crate::channels::wxcrypt::{CryptoError, InboundError};

/// WeChat's encrypted callbacks are a few hundred bytes.
pub const XML_LIMIT: usize = 32 * 1024;

/// What the endpoints need of the running service, handed in by the server.
#[derive(Clone)]
pub struct CallbackState {
    /// The keys in force and the sink.
    pub endpoints: Arc<Endpoints>,
    /// Where upstream event ids are remembered (across replicas with Redis).
    pub store: crate::store::Store,
}

/// A channel's callback routes, added to the endpoints' router.
pub type Routes = fn(Router<CallbackState>) -> Router<CallbackState>;

/// The on-call callback endpoints, for the server to mount.
pub fn routes<S: Clone + Send + Sync + 'static>(state: CallbackState) -> Router<S> {
    crate::channels::ONCALL_CALLBACKS
        .iter()
        .fold(Router::new(), |router, add| add(router))
        .with_state(state)
}

/// The answer of an endpoint whose keys are not configured, or of a wrong path.
pub fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// The answer to a callback that does not verify: 401 for a wrong or missing signature, 400
/// for anything else.
pub fn refused(e: InboundError) -> Response {
    let status = match e {
        InboundError::Crypto(CryptoError::Signature) => StatusCode::UNAUTHORIZED,
        InboundError::Missing(_) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    info!(error = %e, "on-call callback refused");
    (status, format!("{e}\n")).into_response()
}

/// A plain-text 200 answer, exactly `body` (no quotes, no newline).
pub fn plain(body: impl IntoResponse) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The body, read up to `limit` bytes (413 past it, before reading when the length is declared).
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let too_large = || (StatusCode::PAYLOAD_TOO_LARGE, "callback body too large\n").into_response();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err((StatusCode::BAD_REQUEST, "cannot read the callback body\n").into_response()),
    }
}

/// Hands each event not seen before to the sink; `Err` is the answer when the store or the
/// sink failed (the upstream sends again; the ids of events not taken are released).
pub async fn deliver(
    app: &CallbackState,
    events: Vec<(OncallEvent, String)>,
) -> Result<usize, Response> {
    let store = &app.store;
    let sink = app.endpoints.sink();
    let mut taken = 0;
    for (event, key) in events {
        let now = Utc::now();
        match first_time(store, &key, now).await {
            Ok(true) => {}
            Ok(false) => {
                info!(page = ?event.page(), "on-call callback event already taken; ignored");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "on-call callback: store unavailable");
                return Err(
                    (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
                );
            }
        }
        if let Err(e) = sink.accept(event).await {
            warn!(error = %e, "on-call callback event not taken; the upstream will send it again");
            if let Err(e) = release(store, &key, now).await {
                warn!(error = %e, "on-call callback: cannot release an event id");
            }
            return Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response());
        }
        taken += 1;
    }
    Ok(taken)
}
