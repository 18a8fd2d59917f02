//! The callback endpoints: `POST /callback/wxpusher/{secret}` (WxPusher's `send_up_cmd` and
//! `app_subscribe`) and `POST /callback/weixin-gateway` (the gateway's inbound message
//! events), and the reply on the channel a command came from.
//!
//! WxPusher signs nothing, so the secret path segment is the credential; a wrong one gets a
//! bare 404, as if the endpoint did not exist. The gateway sends its shared secret as a bearer
//! token; a wrong or missing one gets 401. Both are compared in constant time, and both are
//! checked from the request head, before a byte of the body is read: nothing is buffered for
//! a caller without the secret, and it gets no `100 Continue`. A command is run and answered
//! before the callback returns, so its effects are visible once it has.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::command::Name;
use super::handle::{self, Answer};
use crate::channels::Kind;
use crate::channels::weixin_gateway::WeixinGateway;
use crate::channels::wxpusher::WxPusher;
use crate::config::chatops::{Channel, MAX_TAG};
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
    Router::new()
        .route("/callback/wxpusher/{secret}", post(wxpusher))
        .route("/callback/weixin-gateway", post(gateway))
        .with_state(state)
}

fn same(given: &str, expected: &Secret) -> bool {
    given.as_bytes().ct_eq(expected.expose().as_bytes()).into()
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

/// `{"action": …, "data": {…}}`; other actions (`order_pay`, future ones) are acknowledged
/// and ignored, as WxPusher asks.
#[derive(Debug, Deserialize)]
struct WxPusherCallback {
    action: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct UpCommand {
    uid: String,
    #[serde(default)]
    content: String,
    /// When the user sent it, in milliseconds: with the uid and the text, what tells a
    /// replayed callback from a new command.
    #[serde(default)]
    time: Option<i64>,
}

/// How long a command callback is remembered, so a replay of it is not run again.
const REPLAY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The store key of one command callback: its uid, time and text, hashed. `None` without a
/// time (nothing tells a replay from the same command sent again).
fn replay_key(cmd: &UpCommand) -> Option<String> {
    use sha2::Digest;
    let time = cmd.time?;
    let mut h = sha2::Sha256::new();
    h.update(cmd.uid.as_bytes());
    h.update(b"\n");
    h.update(time.to_string().as_bytes());
    h.update(b"\n");
    h.update(cmd.content.as_bytes());
    Some(format!("chatops-cmd:{}", &hex::encode(h.finalize())[..32]))
}

/// Whether this command callback was seen before (a replay, answered already); remembers it
/// otherwise. A store that cannot answer lets the command run: a lost command is worse.
async fn replayed(store: &Store, cmd: &UpCommand, now: DateTime<Utc>) -> bool {
    let Some(key) = replay_key(cmd) else {
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

#[derive(Debug, Deserialize)]
struct Subscribe {
    uid: String,
    #[serde(default)]
    extra: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    time: Option<i64>,
}

async fn wxpusher(
    State(app): State<Callbacks>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rt = app.runtime.load_full();
    let Some(chat) = rt.config.chatops.as_ref() else {
        return not_found();
    };
    let Some(expected) = chat.wxpusher_callback_secret.as_ref() else {
        return not_found();
    };
    if !same(&secret, expected) {
        info!("wxpusher callback with a wrong secret refused");
        return not_found();
    }
    let body = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let cb: WxPusherCallback = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_request(e),
    };
    match cb.action.as_str() {
        "send_up_cmd" => {
            let cmd: UpCommand = match serde_json::from_value(cb.data) {
                Ok(c) => c,
                Err(e) => return bad_request(e),
            };
            if replayed(&app.store, &cmd, Utc::now()).await {
                info!(channel = "wxpusher", user = %cmd.uid, "command callback replayed: already run and answered");
                return ok("ok\n");
            }
            let answer = handle::run(
                &rt,
                chat,
                &app.store,
                &app.metrics,
                Channel::WxPusher,
                &cmd.uid,
                &cmd.content,
                Utc::now(),
            )
            .await;
            record(&app, "wxpusher", &cmd.uid, &answer);
            let sent = match wxpusher_sender(&rt, &cmd.uid, answer_receiver(&rt, &answer)) {
                Some(w) => w
                    .reply(&reply_env(&rt, &app.store), &cmd.uid, &answer.reply)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("no wxpusher integration is configured to reply with".into()),
            };
            if let Err(e) = sent {
                warn!(channel = "wxpusher", user = %cmd.uid, error = %rt.scrubber.scrub(&e), "cannot send the chatops reply");
            }
            ok("ok\n")
        }
        "app_subscribe" => {
            let s: Subscribe = match serde_json::from_value(cb.data) {
                Ok(s) => s,
                Err(e) => return bad_request(e),
            };
            let extra = s.extra.unwrap_or_default();
            if s.uid.trim().is_empty() || s.uid.len() > 128 || extra.chars().count() > MAX_TAG {
                return (StatusCode::BAD_REQUEST, "bad uid or extra\n").into_response();
            }
            let at = s
                .time
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .unwrap_or_else(Utc::now);
            match take_enrolment(&app, expected, chat.max_subscribers_per_hour, Utc::now()).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(uid = %s.uid, limit = chat.max_subscribers_per_hour, "wxpusher subscriber refused: chatops.max_subscribers_per_hour reached");
                    count_enrolment(&app, "capped");
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many subscribers this hour\n",
                    )
                        .into_response();
                }
                Err(e) => {
                    warn!(error = %e, "cannot count wxpusher subscriber enrolments");
                    count_enrolment(&app, "failed");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot store, retry later\n",
                    )
                        .into_response();
                }
            }
            match app
                .store
                .subscriber_add(s.uid.clone(), extra.clone(), at)
                .await
            {
                Ok(()) => {
                    info!(uid = %s.uid, extra = %extra, "wxpusher subscriber stored");
                    count_enrolment(&app, "ok");
                    ok("ok\n")
                }
                Err(e) => {
                    warn!(error = %e, "cannot store a wxpusher subscriber");
                    count_enrolment(&app, "failed");
                    // WxPusher may call again; the subscription is not lost for good.
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot store, retry later\n",
                    )
                        .into_response()
                }
            }
        }
        _ => ok("ignored\n"),
    }
}

/// The gateway's inbound event (`type: "message"`).
#[derive(Debug, Deserialize)]
struct GatewayEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    chat_id: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    context_token: String,
}

async fn gateway(State(app): State<Callbacks>, headers: HeaderMap, body: Body) -> Response {
    let rt = app.runtime.load_full();
    let Some(chat) = rt.config.chatops.as_ref() else {
        return not_found();
    };
    let Some(expected) = chat.weixin_gateway_secret.as_ref() else {
        return not_found();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::secret::credentials(v, "Bearer"));
    if !given.is_some_and(|g| same(g, expected)) {
        info!("weixin-gateway callback without the right bearer token refused");
        return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    }
    let body = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ev: GatewayEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return bad_request(e),
    };
    if ev.kind != "message" {
        return ok("ignored\n");
    }
    let user = if ev.user_id.is_empty() {
        ev.chat_id.clone()
    } else {
        ev.user_id.clone()
    };
    if user.is_empty() {
        return (StatusCode::BAD_REQUEST, "event has no user_id\n").into_response();
    }
    // The user wrote: iLink's window for them is open again.
    crate::channels::weixin_gateway::window::inbound(
        &app.store,
        &rt.upstreams.gateway,
        &ev.account_id,
        &user,
        Utc::now(),
    )
    .await;
    let answer = handle::run(
        &rt,
        chat,
        &app.store,
        &app.metrics,
        Channel::WeixinGateway,
        &user,
        &ev.text,
        Utc::now(),
    )
    .await;
    record(&app, "weixin_gateway", &user, &answer);
    let sent = match gateway_sender(&rt, &ev.account_id) {
        Some(g) => g
            .reply(
                &reply_env(&rt, &app.store),
                &user,
                &ev.context_token,
                &answer.reply,
            )
            .await
            .map_err(|e| e.to_string()),
        None => Err(format!(
            "no weixin_gateway integration with account_id {:?} to reply through",
            ev.account_id
        )),
    };
    if let Err(e) = sent {
        warn!(channel = "weixin_gateway", user = %user, error = %rt.scrubber.scrub(&e), "cannot send the chatops reply");
    }
    ok("ok\n")
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

/// Which WxPusher app replies to a UID: the one of the receiver the command acted on, else
/// one that lists the UID, else one with subscriber tags, else the first configured.
fn wxpusher_sender<'a>(rt: &'a Runtime, uid: &str, receiver: Option<&str>) -> Option<&'a WxPusher> {
    let all = || {
        rt.receivers.iter().flat_map(|(name, list)| {
            list.iter().filter_map(move |i| match &i.kind {
                // Simple-push integrations have no app token to reply with.
                Kind::WxPusher(w) if !w.is_simple() => Some((name.as_str(), w)),
                _ => None,
            })
        })
    };
    all()
        .find(|(name, _)| Some(*name) == receiver)
        .or_else(|| all().find(|(_, w)| w.uids.iter().any(|u| u == uid)))
        .or_else(|| all().find(|(_, w)| !w.subscriber_tags.is_empty()))
        .or_else(|| all().next())
        .map(|(_, w)| w)
}

/// The gateway integration of the bot account an event came in on.
fn gateway_sender<'a>(rt: &'a Runtime, account_id: &str) -> Option<&'a WeixinGateway> {
    rt.receivers.values().flatten().find_map(|i| match &i.kind {
        Kind::WeixinGateway(g) if g.account_id == account_id => Some(g),
        _ => None,
    })
}
