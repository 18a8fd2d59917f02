//! The callback endpoints the channels declare ([`crate::channels::INBOUND`]), and the reply
//! on the channel a command came from ([`crate::channels::reply`]).
//!
//! Each channel's `inbound.rs` verifies its requests and parses their bodies into neutral
//! events; what is done here is the same for all: an endpoint without its keys does not exist
//! (404), the keys are checked from the request head, before a byte of the body is read
//! (nothing is buffered for a caller without them, and it gets no `100 Continue`), and a
//! command is run and answered before the callback returns, so its effects are visible once it
//! has.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::command::Name;
use super::handle::{self, Answer};
use crate::channels::inbound::{
    Endpoint, Event, Head, Keys, Malformed, Message, Refused, Subscription,
};
use crate::config::chatops::{Channel, ChatopsConfig};
use crate::metrics::ChatopsLabels;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::Shared;
use crate::secret::Secret;
use crate::store::Store;

/// Callback bodies are small JSON documents.
const BODY_LIMIT: usize = 64 * 1024;

/// What the callbacks need of the running service, handed in by the server.
#[derive(Clone)]
pub struct Callbacks {
    /// The configuration in force: who may act, which integrations reply.
    pub runtime: Shared,
    /// Chatops state: references, acknowledgements, subscribers.
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

/// The callback endpoints, for the server to mount.
pub fn routes<S: Clone + Send + Sync + 'static>(state: Callbacks) -> Router<S> {
    let mut router = Router::new();
    for endpoint in crate::channels::INBOUND {
        let handler =
            move |app: State<Callbacks>,
                  params: RawPathParams,
                  query: RawQuery,
                  headers: HeaderMap,
                  body: Body| { callback(endpoint, app, params, query, headers, body) };
        let route = if endpoint.get {
            post(handler).get(handler)
        } else {
            post(handler)
        };
        router = router.route(endpoint.path, route);
    }
    router.with_state(state)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn ok(text: &'static str) -> Response {
    (StatusCode::OK, text).into_response()
}

/// The 400 for a body that does not parse. serde quotes the sender's own text, which can
/// hold control characters or terminal escapes: they are written inert, as the webhook's are.
fn bad_request(e: serde_json::Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!(
            "malformed callback: {}\n",
            crate::webhook::escape_controls(&crate::text::one_line(&e.to_string()))
        ),
    )
        .into_response()
}

/// Reads the body, at most [`BODY_LIMIT`] bytes; called only once the caller's secret has
/// been checked. A body over the limit gets 413 (from `Content-Length` before reading, or
/// while reading); one the server's limits stopped (`web.body_read_timeout`,
/// `web.max_inflight_body_bytes`) gets the answer the server gives it.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let too_large = || (StatusCode::PAYLOAD_TOO_LARGE, "callback body too large\n").into_response();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err((StatusCode::BAD_REQUEST, "cannot read the callback body\n").into_response()),
    }
}

/// How long a command callback is remembered, so a replay of it is not run again.
const REPLAY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The store key of one command callback: its user, upstream id (WxPusher's send time) and
/// text, hashed. `None` without an upstream id (nothing tells a replay from the same command
/// sent again).
fn replay_key(msg: &Message) -> Option<String> {
    use sha2::Digest;
    let id = msg.upstream_id.as_ref()?;
    let mut h = sha2::Sha256::new();
    h.update(msg.user.as_bytes());
    h.update(b"\n");
    h.update(id.as_bytes());
    h.update(b"\n");
    h.update(msg.text.as_bytes());
    Some(format!("chatops-cmd:{}", &hex::encode(h.finalize())[..32]))
}

/// Whether this command callback was seen before (a replay, answered already); remembers it
/// otherwise. A store that cannot answer lets the command run: a lost command is worse.
async fn replayed(store: &Store, msg: &Message, now: DateTime<Utc>) -> bool {
    let Some(key) = replay_key(msg) else {
        return false;
    };
    if let Ok(seen) = store.recall(vec![key.clone()], now).await
        && seen.first().is_some_and(Option::is_some)
    {
        return true;
    }
    let mark = crate::store::Mark {
        key,
        value: now.timestamp_millis(),
        expires_at: now + REPLAY_WINDOW,
    };
    if let Err(e) = store.remember(vec![mark], now).await {
        warn!(error = %e, "cannot remember a chatops command; a replay of it would run again");
    }
    false
}

/// One callback: the endpoint's secret, its verdict on the head, the body, what it says.
async fn callback(
    endpoint: &'static Endpoint,
    State(app): State<Callbacks>,
    params: RawPathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rt = app.runtime.load_full();
    let chat = rt.config.chatops.as_ref();
    let keys = Keys {
        secret: chat.and_then(|c| c.callback_secret(endpoint.kind)),
        receivers: &rt.receivers,
    };
    let head = Head {
        path_secret: params
            .iter()
            .find_map(|(k, v)| (k == "secret").then_some(v)),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        query: query.as_deref(),
    };
    match (endpoint.verify)(&head, &keys) {
        Ok(()) => {}
        Err(Refused::NotFound) => return not_found(),
        Err(Refused::Unauthorized) => {
            return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
        }
    }
    let body = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let event = match (endpoint.parse)(&head, &keys, &body) {
        Ok(e) => e,
        Err(Malformed::Json(e)) => return bad_request(e),
        Err(Malformed::Invalid(why)) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    match (event, chat, keys.secret) {
        (Event::Answer(text), _, _) => (StatusCode::OK, text).into_response(),
        (Event::Message(msg), Some(chat), _) => command(&app, &rt, chat, msg).await,
        (Event::Subscribed(s), Some(chat), Some(secret)) => subscribe(&app, chat, secret, s).await,
        // Ignored, or nothing configured to act on it.
        _ => ok("ignored\n"),
    }
}

/// A user's message: run as a command and answered on the channel it came through.
async fn command(app: &Callbacks, rt: &Runtime, chat: &ChatopsConfig, msg: Message) -> Response {
    let Some(channel) = Channel::of_kind(msg.kind) else {
        // A channel whose messages are not commands (yet): acknowledged, not run.
        return ok("ignored\n");
    };
    if replayed(&app.store, &msg, Utc::now()).await {
        info!(channel = msg.kind, user = %msg.user, "command callback replayed: already run and answered");
        return ok("ok\n");
    }
    crate::channels::received(&app.store, &rt.upstreams, &msg).await;
    let answer = handle::run(
        rt,
        chat,
        &app.store,
        &app.metrics,
        channel,
        &msg.user,
        &msg.text,
        Utc::now(),
    )
    .await;
    record(app, msg.kind, &msg.user, &answer);
    let sent = crate::channels::reply(
        &rt.receivers,
        &reply_env(rt, &app.store),
        &msg,
        answer_receiver(rt, &answer),
        &answer.reply,
    )
    .await;
    if let Err(e) = sent {
        warn!(channel = msg.kind, user = %msg.user, error = %rt.scrubber.scrub(&e), "cannot send the chatops reply");
    }
    ok("ok\n")
}

/// A subscription: stored with its tag, within `chatops.max_subscribers_per_hour`.
async fn subscribe(
    app: &Callbacks,
    chat: &ChatopsConfig,
    secret: &Secret,
    s: Subscription,
) -> Response {
    let kind = s.kind;
    let at = s.at.unwrap_or_else(Utc::now);
    match take_enrolment(app, secret, chat.max_subscribers_per_hour, Utc::now()).await {
        Ok(true) => {}
        Ok(false) => {
            warn!(uid = %s.user, limit = chat.max_subscribers_per_hour, "{kind} subscriber refused: chatops.max_subscribers_per_hour reached");
            count_enrolment(app, "capped");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "too many subscribers this hour\n",
            )
                .into_response();
        }
        Err(e) => {
            warn!(error = %e, "cannot count {kind} subscriber enrolments");
            count_enrolment(app, "failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store, retry later\n",
            )
                .into_response();
        }
    }
    match app
        .store
        .subscriber_add(s.user.clone(), s.tag.clone(), at)
        .await
    {
        Ok(()) => {
            info!(uid = %s.user, extra = %s.tag, "{kind} subscriber stored");
            count_enrolment(app, "ok");
            ok("ok\n")
        }
        Err(e) => {
            warn!(error = %e, "cannot store a {kind} subscriber");
            count_enrolment(app, "failed");
            // The upstream may call again; the subscription is not lost for good.
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store, retry later\n",
            )
                .into_response()
        }
    }
}

/// Logs and counts one command.
fn record(app: &Callbacks, channel: &'static str, user: &str, a: &Answer) {
    info!(
        channel,
        user,
        command = a.command.as_str(),
        result = a.outcome.as_str(),
        target = %a.target,
        "chatops command"
    );
    app.metrics
        .chatops_commands
        .get_or_create(&ChatopsLabels {
            command: a.command.as_str(),
            result: a.outcome.as_str(),
        })
        .inc();
}

/// Takes one enrolment of the hour's allowance for this callback secret; false when the
/// allowance (`chatops.max_subscribers_per_hour`) is spent. The counter is keyed by a hash of
/// the secret, so that a new secret (a leaked URL replaced) starts afresh and the store never
/// holds the secret itself; it resets on the hour.
async fn take_enrolment(
    app: &Callbacks,
    secret: &Secret,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<bool, crate::store::StoreError> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(secret.expose().as_bytes());
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let hour = now.timestamp().div_euclid(3600);
    let ends = DateTime::<Utc>::from_timestamp((hour + 1) * 3600, 0).unwrap_or(now);
    let taken = app
        .store
        .take_counters(
            vec![format!("chatops:enrol:{id}:{hour}")],
            1,
            Some(i64::from(limit)),
            ends,
        )
        .await?;
    Ok(taken.first().copied().unwrap_or(false))
}

/// Counts an `app_subscribe` callback as `chatops_commands_total{command="subscribe"}` with
/// `result` `ok`, `capped` (over `max_subscribers_per_hour`) or `failed` (the store).
fn count_enrolment(app: &Callbacks, result: &'static str) {
    app.metrics
        .chatops_commands
        .get_or_create(&ChatopsLabels {
            command: "subscribe",
            result,
        })
        .inc();
}

/// The receiver a command acted on, when it named a reference that exists.
fn answer_receiver<'a>(rt: &'a Runtime, a: &Answer) -> Option<&'a str> {
    if !matches!(a.command, Name::Silence | Name::Ack) || a.receiver.is_none() {
        return None;
    }
    let name = a.receiver.as_deref()?;
    rt.receivers.get_key_value(name).map(|(k, _)| k.as_str())
}

/// What a reply is sent with: the channels' own clients, limits and budgets.
fn reply_env<'a>(rt: &'a Runtime, store: &'a Store) -> crate::channels::Env<'a> {
    let mut env = rt.env(Utc::now());
    env.store = Some(store);
    env
}
