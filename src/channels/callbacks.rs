//! The on-call callback endpoints: `GET/POST /callback/wecom` (the WeCom application's URL
//! check and encrypted events), `GET/POST /callback/official-account` (the Official Account's
//! URL check and pushes) and `POST /callback/voice/{aliyun|tencent}/{secret}` (call reports).
//!
//! Each is verified from the request head where it can be: the voice secret in the path
//! (constant time, a bare 404 when wrong, before a byte of the body is read) and the
//! signature parameters' presence; a signed body is read only up to a small bound and refused
//! (401) when its signature does not hold. An event is handed to the sink once per upstream
//! id (the store remembers the ids for 73 h, across replicas); the upstream is answered once
//! the sink took it, or 503 so that it sends again. An endpoint without its keys configured
//! answers 404.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::channels::official_account::inbound as oa;
use crate::channels::reach::{Endpoints, OncallEvent, Provider, first_time, release};
use crate::channels::voice::inbound as voice;
use crate::channels::wecom_app::inbound as wecom;
use crate::channels::wxcrypt::{CryptoError, InboundError};

/// WeChat's encrypted callbacks are a few hundred bytes.
const XML_LIMIT: usize = 32 * 1024;
/// Aliyun batches reports into one array.
const REPORT_LIMIT: usize = 256 * 1024;

/// What the endpoints need of the running service, handed in by the server.
#[derive(Clone)]
pub struct CallbackState {
    /// The keys in force and the sink.
    pub endpoints: Arc<Endpoints>,
    /// Where upstream event ids are remembered (across replicas with Redis).
    pub store: crate::store::Store,
}

/// The on-call callback endpoints, for the server to mount.
pub fn routes<S: Clone + Send + Sync + 'static>(state: CallbackState) -> Router<S> {
    Router::new()
        .route("/callback/wecom", get(wecom_check).post(wecom_event))
        .route("/callback/official-account", get(oa_check).post(oa_event))
        .route("/callback/voice/{provider}/{secret}", post(voice_report))
        .with_state(state)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn refused(e: InboundError) -> Response {
    let status = match e {
        InboundError::Crypto(CryptoError::Signature) => StatusCode::UNAUTHORIZED,
        InboundError::Missing(_) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    info!(error = %e, "on-call callback refused");
    (status, format!("{e}\n")).into_response()
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
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
async fn deliver(
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

async fn wecom_check(
    State(app): State<CallbackState>,
    Query(q): Query<wecom::CallbackQuery>,
) -> Response {
    let Some(crypt) = app.endpoints.keys().wecom.clone() else {
        return not_found();
    };
    match wecom::url_check(&crypt, &q) {
        // The plaintext and nothing else: no quotes, no newline.
        Ok(plain) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            plain,
        )
            .into_response(),
        Err(e) => refused(e),
    }
}

async fn wecom_event(
    State(app): State<CallbackState>,
    Query(q): Query<wecom::CallbackQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(crypt) = app.endpoints.keys().wecom.clone() else {
        return not_found();
    };
    if q.msg_signature.is_none() || q.timestamp.is_none() || q.nonce.is_none() {
        return refused(InboundError::Missing("msg_signature, timestamp and nonce"));
    }
    let body = match read_body(&headers, body, XML_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let message = match wecom::open(&crypt, &q, &String::from_utf8_lossy(&body)) {
        Ok(m) => m,
        Err(e) => return refused(e),
    };
    let events: Vec<_> = wecom::event(&message).into_iter().collect();
    match deliver(&app, events).await {
        // An empty 200: no passive reply (the cards are updated through the API).
        Ok(_) => StatusCode::OK.into_response(),
        Err(r) => r,
    }
}

async fn oa_check(
    State(app): State<CallbackState>,
    Query(q): Query<oa::CallbackQuery>,
) -> Response {
    let Some(keys) = app.endpoints.keys().official_account.clone() else {
        return not_found();
    };
    match oa::url_check(&keys, &q) {
        Ok(echo) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            echo,
        )
            .into_response(),
        Err(e) => refused(e),
    }
}

async fn oa_event(
    State(app): State<CallbackState>,
    Query(q): Query<oa::CallbackQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(keys) = app.endpoints.keys().official_account.clone() else {
        return not_found();
    };
    if q.signature.is_none() || q.timestamp.is_none() || q.nonce.is_none() {
        return refused(InboundError::Missing("signature, timestamp and nonce"));
    }
    let body = match read_body(&headers, body, XML_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let message = match oa::open(&keys, &q, &String::from_utf8_lossy(&body)) {
        Ok(m) => m,
        Err(e) => return refused(e),
    };
    let events: Vec<_> = oa::event(&message).into_iter().collect();
    match deliver(&app, events).await {
        Ok(_) => (StatusCode::OK, oa::ANSWER).into_response(),
        Err(r) => r,
    }
}

async fn voice_report(
    State(app): State<CallbackState>,
    Path((provider, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((configured, expected)) = app.endpoints.keys().voice.clone() else {
        return not_found();
    };
    let provider = match provider.as_str() {
        "aliyun" => Provider::Aliyun,
        "tencent" => Provider::Tencent,
        _ => return not_found(),
    };
    let same: bool = secret.as_bytes().ct_eq(expected.expose().as_bytes()).into();
    if provider != configured || !same {
        info!(
            provider = provider.as_str(),
            "voice report with a wrong path refused"
        );
        return not_found();
    }
    let body = match read_body(&headers, body, REPORT_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let events = match voice::parse(provider, &body) {
        Ok(e) => e,
        Err(e) => {
            let text = crate::webhook::escape_controls(&crate::text::one_line(&e.to_string()));
            return (StatusCode::BAD_REQUEST, format!("{text}\n")).into_response();
        }
    };
    let ok = || {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            voice::ok_answer(provider),
        )
            .into_response()
    };
    // The vendors want an answer within 700 ms. The report's ids are taken in the store
    // first (a re-send is ignored from then on); an engine slower than the bound goes on
    // with the event after the answer.
    let work = tokio::spawn(async move { deliver(&app, events).await });
    match tokio::time::timeout(VOICE_ANSWER_WITHIN, work).await {
        Ok(Ok(Ok(_))) => ok(),
        Ok(Ok(Err(r))) => r,
        Ok(Err(e)) => {
            warn!(error = %e, "voice report handling stopped");
            (StatusCode::SERVICE_UNAVAILABLE, "voice report not taken\n").into_response()
        }
        Err(_) => {
            info!(
                provider = provider.as_str(),
                "voice report answered before the engine finished with it"
            );
            ok()
        }
    }
}

/// How long a voice report may wait for the engine before it is answered (the vendors'
/// limit is 700 ms, the network's share included).
const VOICE_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::reach::{CallbackKeys, EventSink, SinkError};
    use crate::secret::Secret;
    use std::future::Future;
    use std::pin::Pin;
    use tower::ServiceExt;

    /// Takes events and never finishes with them: an engine stuck on a slow store.
    struct Stuck(tokio::sync::mpsc::UnboundedSender<OncallEvent>);

    impl EventSink for Stuck {
        fn accept(
            &self,
            event: OncallEvent,
        ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
            let _ = self.0.send(event);
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_voice_report_is_answered_while_the_engine_is_still_busy_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path(), 100).unwrap();
        let endpoints = Arc::new(Endpoints::default());
        endpoints.set_keys(CallbackKeys {
            voice: Some((Provider::Aliyun, Secret::new("s3cret"))),
            ..CallbackKeys::default()
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        endpoints.connect(Arc::new(Stuck(tx)));
        let app: Router = routes(CallbackState { endpoints, store });
        let report = serde_json::json!([{"call_id": "c-1", "out_id": "x", "status_code": "200010",
            "status_msg": "", "callee": "13800000001", "caller": "057100000000",
            "start_time": "2026-12-07 00:00:00", "end_time": "2026-12-07 00:00:30",
            "duration": "30", "toll_type": "LOCAL", "hangup_direction": "1", "dtmf": "1"}]);
        let request = axum::http::Request::post("/callback/voice/aliyun/s3cret")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(report.to_string()))
            .unwrap();
        // Without the bound the answer never comes: the sink never finishes.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(60), app.oneshot(request))
            .await
            .expect("answered while the engine is busy")
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let taken = rx.recv().await.expect("the engine got the report");
        assert!(
            matches!(taken.page(), crate::channels::reach::PageRef::Voice { call_id, .. } if call_id == "c-1")
        );
    }
}
