//! The JSON API under `/api/v1/` the console's pages call (documented in `docs/api.md`):
//! render (the playground), deliveries (the history), dead letters (list, replay, purge) and
//! send-test. It answers the same as the command line because both call the same functions
//! ([`crate::runtime::Runtime::render`], with each channel's preview,
//! [`crate::delivery::replay_dead_letters`], [`crate::delivery::dead_letter_items`],
//! [`crate::delivery::send_test`]).
//!
//! Every call needs `auth.admin` credentials ([`guard`]); state-changing ones also need
//! `Content-Type: application/json`, which a cross-site form cannot send without a CORS
//! preflight this server never grants. Answers carry no secret: request bodies and URLs are
//! masked by the configuration's scrubber, errors are scrubbed when recorded.

// A refusal is the answer itself, built at most once per request: boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::App;
use crate::channels::preview::Preview;
use crate::config::AuthConfig;
use crate::runtime::Runtime;
use crate::runtime::{RenderError, Rendered};
use crate::store::history::{DeliveryState, HistoryFilter};

/// Most deliveries one call answers.
const MAX_LIMIT: usize = 1000;
/// Deliveries answered when no `limit` is given.
const DEFAULT_LIMIT: usize = 100;

/// The payload examples shipped in `examples/`, for the playground.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "alertmanager-firing.json",
        include_str!("../../examples/alertmanager-firing.json"),
    ),
    (
        "alertmanager-firing-5.json",
        include_str!("../../examples/alertmanager-firing-5.json"),
    ),
    (
        "alertmanager-resolved.json",
        include_str!("../../examples/alertmanager-resolved.json"),
    ),
    (
        "grafana-firing.json",
        include_str!("../../examples/grafana-firing.json"),
    ),
];

pub fn routes(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/render", post(render))
        .route("/api/v1/receivers", get(receivers))
        .route("/api/v1/examples", get(examples))
        .route("/api/v1/deliveries", get(deliveries))
        .route("/api/v1/deadletters", get(dead_letters))
        .route("/api/v1/deadletters/replay", post(replay_all))
        .route("/api/v1/deadletters/purge", post(purge))
        .route("/api/v1/deadletters/{id}/replay", post(replay_one))
        .route("/api/v1/send-test", post(send_test))
        .merge(super::oncall::routes())
        .route_layer(axum::middleware::from_fn_with_state(app, head_first))
}

/// Every call is refused from its head, before its body is read (and so before it takes any
/// of `web.max_inflight_body_bytes`): a request without `auth.admin` credentials cannot hold
/// the budget the webhooks need. Every answer says not to sniff or cache it.
async fn head_first(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let refused = guard(&app.runtime.load(), req.headers()).err();
    let mut response = match refused {
        Some(r) => r,
        None => next.run(req).await,
    };
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Playground renders run on the blocking pool, this many at a time: a costly template (within
/// its budget) keeps neither webhooks nor `/-/healthy` waiting, and many at once queue here.
static RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A JSON error answer: `{"error": "..."}` plus any detail.
pub(super) fn error(status: StatusCode, message: impl Into<String>, detail: Value) -> Response {
    let mut body = json!({ "error": message.into() });
    if let (Value::Object(b), Value::Object(d)) = (&mut body, detail) {
        b.extend(d);
    }
    (status, axum::Json(body)).into_response()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `Authorization` carries `auth.admin`'s credentials (basic or bearer).
fn admin_ok(auth: &AuthConfig, headers: &HeaderMap) -> bool {
    let Some(admin) = &auth.admin else {
        return false;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, value) = given.trim().split_once(' ').unwrap_or((given, ""));
    if let Some(token) = &admin.bearer_token {
        return scheme.eq_ignore_ascii_case("bearer")
            && ct_eq(value.trim().as_bytes(), token.expose().as_bytes());
    }
    if let Some(basic) = &admin.basic_auth {
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            basic.username,
            basic.password.as_ref().map(|p| p.expose()).unwrap_or("")
        ));
        return scheme.eq_ignore_ascii_case("basic")
            && ct_eq(value.trim().as_bytes(), expected.as_bytes());
    }
    false
}

/// Who may use the console and the API: 404 when `web.console` is off, 401 (asking the
/// browser for basic credentials when those are configured) without `auth.admin`'s.
pub fn guard(rt: &Runtime, headers: &HeaderMap) -> Result<(), Response> {
    let auth = &rt.config.auth;
    if !rt.config.web.console_enabled(auth) {
        return Err((StatusCode::NOT_FOUND, "not found\n").into_response());
    }
    if admin_ok(auth, headers) {
        return Ok(());
    }
    let mut r = (
        StatusCode::UNAUTHORIZED,
        if auth.admin.is_none() {
            "unauthorized: the console needs auth.admin configured\n"
        } else {
            "unauthorized\n"
        },
    )
        .into_response();
    if auth.admin.as_ref().is_some_and(|a| a.basic_auth.is_some()) {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"alertmanager-wechat\", charset=\"UTF-8\""),
        );
    }
    Err(r)
}

/// The CSRF convention: a state-changing call must say it sends JSON.
fn json_only(headers: &HeaderMap) -> Result<(), Response> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "state-changing calls need Content-Type: application/json",
            Value::Null,
        ))
    }
}

/// Both checks of a state-changing call; the runtime it may use.
pub(super) fn admin_post(app: &App, headers: &HeaderMap) -> Result<Arc<Runtime>, Response> {
    let rt = app.runtime.load_full();
    guard(&rt, headers)?;
    json_only(headers)?;
    Ok(rt)
}

pub(super) fn admin_get(app: &App, headers: &HeaderMap) -> Result<Arc<Runtime>, Response> {
    let rt = app.runtime.load_full();
    guard(&rt, headers)?;
    Ok(rt)
}

macro_rules! try_resp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

pub(super) fn store_error(e: crate::store::StoreError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), Value::Null)
}

// ---- render ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderRequest {
    payload: Value,
    receiver: Option<String>,
    /// Template name → text, compiled over the configuration's (shipped names like
    /// `wxpusher.summary`, or an inline template's YAML path).
    #[serde(default)]
    templates: BTreeMap<String, String>,
    /// The time messages are rendered at (durations count to it); now when absent.
    now: Option<DateTime<Utc>>,
}

/// One integration's rendering: the requests, and what the phone shows.
#[derive(Debug, Serialize)]
pub struct RenderItem {
    pub receiver: String,
    /// `kind[position]`, as `render` prints it.
    pub integration: String,
    pub kind: String,
    pub requests: Vec<crate::channels::Outbound>,
    /// What WeChat shows, read off the requests exactly as they would be sent.
    pub preview: Preview,
}

/// The configuration with the playground's templates compiled over it.
fn with_templates(rt: &Runtime, templates: &BTreeMap<String, String>) -> Result<Runtime, Response> {
    let mut fresh = Runtime::build_with(rt.config.clone(), rt.upstreams.clone()).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            rt.scrubber.scrub(&e.to_string()),
            Value::Null,
        )
    })?;
    for (name, text) in templates {
        if let Err(e) = fresh.templates.add(name, text) {
            return Err(template_error(&e));
        }
    }
    if let Some(e) = fresh.templates.refused().first() {
        return Err(template_error(e));
    }
    Ok(fresh)
}

/// The line and column out of a template error: `line 3, column 9: …` (syntax errors, which
/// then quote the line, so it is read first), `line 3, col 9` (handlebars' render errors) or
/// `… in "name":3:9 …`.
fn place(message: &str) -> (Option<u64>, Option<u64>) {
    let digits = |s: &str| -> Option<u64> {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        d.parse().ok()
    };
    if let Some(rest) = message.strip_prefix("line ")
        && let Some(line) = digits(rest)
    {
        let after = &rest[line.to_string().len()..];
        let column = after.strip_prefix(", column ").and_then(digits);
        return (Some(line), column);
    }
    let mut rest = message;
    while let Some(i) = rest.find("\":") {
        rest = &rest[i + 2..];
        if let Some(line) = digits(rest) {
            let after = &rest[line.to_string().len()..];
            let col = after.strip_prefix(':').and_then(digits);
            return (Some(line), col);
        }
    }
    let num = |key: &str| {
        let i = message.find(key)? + key.len();
        digits(message[i..].trim_start_matches([' ', ':']))
    };
    (num("line"), num("col"))
}

fn template_error(e: &crate::template::TemplateError) -> Response {
    let (line, column) = place(&e.message);
    error(
        StatusCode::BAD_REQUEST,
        e.to_string(),
        json!({ "template": e.name, "line": line, "column": column }),
    )
}

async fn render(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let rt = try_resp!(admin_post(&app, &headers));
    let req: RenderRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("request: {e}"),
                json!({ "place": "request" }),
            );
        }
    };
    let payload = serde_json::to_vec(&req.payload).unwrap_or_default();
    let receiver = req.receiver.filter(|r| !r.is_empty());
    let now = req.now.unwrap_or_else(Utc::now);
    let Ok(_turn) = RENDERS.acquire().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
            Value::Null,
        );
    };
    let rendered = tokio::task::spawn_blocking(move || {
        let overridden;
        let rt: &Runtime = if req.templates.is_empty() {
            &rt
        } else {
            overridden = with_templates(&rt, &req.templates)?;
            &overridden
        };
        Ok::<_, Response>(rt.render(&payload, receiver.as_deref(), now))
    })
    .await;
    let rendered = match rendered {
        Ok(r) => try_resp!(r),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("render failed: {e}"),
                Value::Null,
            );
        }
    };
    match rendered {
        Ok(list) => {
            let items: Vec<RenderItem> = list
                .into_iter()
                .map(|r: Rendered| RenderItem {
                    receiver: r.receiver,
                    integration: r.integration,
                    kind: r.kind.to_string(),
                    requests: r.requests,
                    preview: r.preview,
                })
                .collect();
            axum::Json(json!({ "items": items })).into_response()
        }
        Err(RenderError::Template(e)) => template_error(&e),
        Err(RenderError::Payload(e)) => {
            error(StatusCode::BAD_REQUEST, e, json!({ "place": "payload" }))
        }
        Err(e @ RenderError::UnknownReceiver(_)) => error(
            StatusCode::BAD_REQUEST,
            e.to_string(),
            json!({ "place": "receiver" }),
        ),
        Err(RenderError::Other(e)) => error(StatusCode::BAD_REQUEST, e, Value::Null),
    }
}

async fn receivers(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let rt = try_resp!(admin_get(&app, &headers));
    let items: Vec<Value> = rt
        .receivers
        .iter()
        .map(|(name, list)| {
            let integrations: Vec<Value> = list
                .iter()
                .map(|i| json!({ "kind": i.name(), "index": i.index, "id": i.id.as_str() }))
                .collect();
            json!({ "name": name, "integrations": integrations })
        })
        .collect();
    axum::Json(json!({ "items": items })).into_response()
}

async fn examples(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    try_resp!(admin_get(&app, &headers));
    let items: Vec<Value> = EXAMPLES
        .iter()
        .map(|(name, text)| {
            json!({ "name": name, "payload": serde_json::from_str::<Value>(text).unwrap_or(Value::Null) })
        })
        .collect();
    axum::Json(json!({ "items": items })).into_response()
}

// ---- deliveries ----

#[derive(Debug, Deserialize)]
struct DeliveriesQuery {
    receiver: Option<String>,
    status: Option<String>,
    alertname: Option<String>,
    limit: Option<usize>,
}

async fn deliveries(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<DeliveriesQuery>,
) -> Response {
    try_resp!(admin_get(&app, &headers));
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let state = match nonempty(q.status) {
        None => None,
        Some(s) => match DeliveryState::parse(&s) {
            Some(st) => Some(st),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown status {s:?}: one of queued, sent, retrying, dead, suppressed, merged"
                    ),
                    json!({ "place": "status" }),
                );
            }
        },
    };
    let filter = HistoryFilter {
        receiver: nonempty(q.receiver),
        state,
        alertname: nonempty(q.alertname),
        limit: q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
    };
    match app.queue.store.history(filter).await {
        Ok(items) => axum::Json(json!({ "items": items })).into_response(),
        Err(e) => store_error(e),
    }
}

// ---- dead letters ----

async fn dead_letters(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    try_resp!(admin_get(&app, &headers));
    match crate::delivery::dead_letter_items(&app.queue.store).await {
        Ok(items) => axum::Json(json!({ "items": items })).into_response(),
        Err(e) => store_error(e),
    }
}

async fn replay(app: &App, id: Option<i64>) -> Response {
    match crate::delivery::replay_dead_letters(&app.queue.store, id).await {
        Ok(0) if id.is_some() => error(
            StatusCode::NOT_FOUND,
            format!("no dead letter {}", id.unwrap_or_default()),
            Value::Null,
        ),
        Ok(n) => {
            app.queue.wake.notify_one();
            axum::Json(json!({ "replayed": n })).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn replay_one(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    try_resp!(admin_post(&app, &headers));
    replay(&app, Some(id)).await
}

async fn replay_all(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    try_resp!(admin_post(&app, &headers));
    replay(&app, None).await
}

async fn purge(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    try_resp!(admin_post(&app, &headers));
    match app.queue.store.purge().await {
        Ok(n) => axum::Json(json!({ "purged": n })).into_response(),
        Err(e) => store_error(e),
    }
}

// ---- send-test ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendTestRequest {
    receiver: String,
}

async fn send_test(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let rt = try_resp!(admin_post(&app, &headers));
    let req: SendTestRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("request: {e}"),
                Value::Null,
            );
        }
    };
    if !rt.receivers.contains_key(&req.receiver) {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown receiver {:?}", req.receiver),
            Value::Null,
        );
    }
    let (out, ok) = crate::delivery::send_test(&rt, &req.receiver).await;
    let items: Vec<&str> = out.lines().collect();
    axum::Json(json!({ "ok": ok, "items": items })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_reads_handlebars_line_and_column() {
        assert_eq!(
            place("Failed to parse template. invalid handlebars syntax at line 3, col 7"),
            (Some(3), Some(7))
        );
        assert_eq!(
            place("Template error in \"wxpusher.content\":3:9  | reason"),
            (Some(3), Some(9))
        );
        assert_eq!(
            place("line 2, column 8: unclosed `{{`\n  2 | {\"a\":1:2 {{\n    |        ^"),
            (Some(2), Some(8))
        );
        assert_eq!(place("no place"), (None, None));
    }
}
