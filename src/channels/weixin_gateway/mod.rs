//! weixin-gateway: `POST {url}/send` through a bridge logged in as a personal WeChat bot.
//!
//! Owns the request shape (one request per user, `chat_type: "c2c"`, exactly one text item:
//! the gateway sends only the first non-empty text item and drops the rest), splitting long
//! text into numbered parts, reading the gateway's failures (every one is HTTP 500
//! `{"ok":false,"error":"…"}`), the per-user back-off after the upstream refuses a user, and
//! the `GET {url}/health` probe behind the `integration_up` metric.
//!
//! The upstream (iLink) only delivers to a user within about 24 hours of that user's last
//! message to the bot, and only about 10 times in that window; beyond it every send is
//! refused with `ret=-2` / `rate limited`, and retrying reportedly extends the penalty. Such a
//! refusal is therefore not retried: the user is put in a process-wide back-off (it survives
//! reloads) during which sends to them fail without a request, and the error carries
//! [`Reason::RecipientWindow`] so the delivery engine hands the notification to the
//! integration's fallback receiver at once. This module does not retry or re-route itself.

pub mod chatops;
pub mod config;
pub mod contact;
pub mod inbound;

pub mod templates;
pub mod window;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::{Entry, Env, Outbound, Progress, Recipient};
use crate::channels::error::{DeliveryError, Reason};
use crate::channels::http;
use crate::secret::Secret;
use crate::template::Locale;
use crate::text;
use crate::webhook::Notification;

/// Longest text sent in one message, in UTF-16 units (what the Java/iLink side counts).
///
/// iLink documents no limit for a text item. 2000 is below the 2048 that WeChat's other text
/// message APIs (customer-service and Work messages) accept, so it is unlikely to be cut
/// upstream, and it is about two phone screens: long enough that a typical group of alerts is
/// one message, which matters because every part uses one of the user's ~10 sends a day.
pub const TEXT_MAX: usize = 2_000;
/// At most this many parts per notification: each part costs one send of the user's small
/// daily allowance, so a huge group is cut (with a note) rather than using the window up.
pub const MAX_PARTS: usize = 5;
/// Room kept in each part for the "(part 1/3)" line.
const PART_HEADER_ROOM: usize = 20;
/// Room kept in the last allowed part for the "not sent" note.
const TRUNCATED_NOTE_ROOM: usize = 60;
const SERVICE: &str = "weixin_gateway";

/// The channel's kind name: metric label, identity prefix, `weixin_gateway_configs`.
pub const KIND: &str = "weixin_gateway";

#[derive(Debug)]
pub struct WeixinGateway {
    /// Base URL; `/send` and `/health` are appended.
    pub url: String,
    pub account_id: String,
    pub to_user_ids: Vec<String>,
    /// Sent as is; empty when not configured.
    pub context_token: String,
    /// `Authorization: Bearer …` for a gateway behind an auth proxy.
    pub bearer_token: Option<Secret>,
    /// Template name of the plain-text message.
    pub text: String,
    /// How long a user refused by the upstream is not sent to.
    pub user_backoff: Duration,
    /// How often `/health` is probed.
    pub health_interval: Duration,
    /// `/send` requests per second allowed for this gateway account (`rate_limit`); `None`:
    /// unlimited.
    pub rate_limit: Option<crate::channels::options::RateLimit>,
    /// Messages a user can get between two of their own ([`window`]); 0: not counted.
    pub window_size: u32,
    /// From this many, each message asks the user to reply; 0: never.
    pub window_warn_at: u32,
    /// Whether the gateway's callback is configured, so that a user's message resets their
    /// window; without it a spent window is given `user_backoff` to reopen instead.
    pub replies_seen: bool,
}

/// The request body, as the gateway's `/send` reads it.
#[derive(Debug, Serialize)]
struct SendBody<'a> {
    account_id: &'a str,
    to_user_id: &'a str,
    context_token: &'a str,
    chat_type: &'static str,
    items: [TextItem<'a>; 1],
}

#[derive(Debug, Serialize)]
struct TextItem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// What `/send` answers: `{"ok":true,"result":{…}}` or `{"ok":false,"error":"…"}`.
#[derive(Debug, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    error: String,
}

/// Users refused by the upstream, until when, and the count of their messages when it began.
/// Kept in the service's long-lived upstream state ([`crate::channels::state::Upstreams`]),
/// keyed by gateway, account and user, so that reloads (which rebuild every integration) and
/// several gateway configs share it.
#[derive(Debug, Default)]
pub struct Backoffs {
    until: Mutex<HashMap<String, Instant>>,
    seen: Mutex<HashMap<String, i64>>,
}

impl Backoffs {
    fn until(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Progress entry of part `part` delivered to `user`.
fn part_key(part: usize, user: &str) -> Entry {
    Entry::Sent {
        part,
        to: Recipient::Id(user.to_string()),
    }
}

impl WeixinGateway {
    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.url.trim_end_matches('/'))
    }

    /// Names the account's rate-limit bucket, shared by every integration sending as it.
    pub fn rate_key(&self) -> String {
        format!(
            "weixin_gateway:{}:{}",
            self.url.trim_end_matches('/'),
            self.account_id
        )
    }

    fn window_key(&self, user: &str) -> String {
        format!(
            "{}\n{}\n{user}",
            self.url.trim_end_matches('/'),
            self.account_id
        )
    }

    /// How much longer `user` is refused, if they are.
    fn window_remaining(&self, env: &Env<'_>, user: &str) -> Option<Duration> {
        let key = self.window_key(user);
        let mut w = env.upstreams.channels.weixin_gateway.until();
        let until = *w.get(&key)?;
        let now = Instant::now();
        if until <= now {
            w.remove(&key);
            return None;
        }
        Some(until - now)
    }

    fn close_window(&self, env: &Env<'_>, user: &str) {
        env.upstreams
            .channels
            .weixin_gateway
            .until()
            .insert(self.window_key(user), Instant::now() + self.user_backoff);
    }

    /// The rendered text, split into the messages to send in order.
    fn parts(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<String>, DeliveryError> {
        let ctx = env.templates.context(n, env.now);
        let text = env.templates.render(&self.text, &ctx)?;
        Ok(split(text.trim(), env.templates.locale()))
    }

    fn body(&self, user: &str, text: &str) -> Value {
        self.body_in(user, &self.context_token, text)
    }

    /// The `/send` body to `user` in the conversation `context_token` names.
    fn body_in(&self, user: &str, context_token: &str, text: &str) -> Value {
        serde_json::to_value(SendBody {
            account_id: &self.account_id,
            to_user_id: user,
            context_token,
            chat_type: "c2c",
            items: [TextItem { kind: "text", text }],
        })
        .unwrap_or(Value::Null)
    }

    /// The requests still to make: every part, in order, to every user not yet in `progress`.
    pub fn prepare(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &Progress,
    ) -> Result<Vec<Outbound>, DeliveryError> {
        let parts = self.parts(env, n)?;
        let mut out = Vec::new();
        for user in &self.to_user_ids {
            for (i, part) in parts.iter().enumerate() {
                if !progress.contains(&part_key(i, user)) {
                    out.push(Outbound {
                        method: "POST",
                        url: self.endpoint("send"),
                        body: self.body(user, part),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Sends every missing part to every user. A user's parts go in order and stop at the
    /// first failure. Of the failures, a retryable one is returned first (the users it
    /// concerns may succeed later), then a permanent one, and only when the sole failures are
    /// refused users, a [`Reason::RecipientWindow`] error naming them.
    pub async fn send(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
    ) -> Result<(), DeliveryError> {
        let parts = self.parts(env, n)?;
        let mut retryable: Option<DeliveryError> = None;
        let mut permanent: Option<DeliveryError> = None;
        let mut refused: Vec<String> = Vec::new();
        let mut refused_for = Duration::ZERO;
        let mut spent = 0usize;
        for user in &self.to_user_ids {
            let missing: Vec<usize> = (0..parts.len())
                .filter(|i| !progress.contains(&part_key(*i, user)))
                .collect();
            if missing.is_empty() {
                continue;
            }
            if let Some(left) = self.window_remaining(env, user)
                && !self.replied_since_backoff(env, user).await
            {
                tracing::debug!(user = %user, remaining_s = left.as_secs(), "weixin-gateway user in back-off, not sending");
                refused.push(user.clone());
                refused_for = refused_for.max(left);
                continue;
            }
            let mut used = self.window_used(env, user).await;
            for i in missing {
                if self.window_spent(used) {
                    if !self.replies_seen {
                        // Nobody will say when the user writes: assume the window reopens
                        // after the back-off, and count afresh from then.
                        self.close_window(env, user);
                        self.window_reset(env, user).await;
                    }
                    tracing::info!(user = %user, account_id = %self.account_id, sent = used.unwrap_or_default(), "weixin-gateway user's send window is spent until they write to the bot, not sending");
                    refused.push(user.clone());
                    spent += 1;
                    break;
                }
                let text = self.with_note(env, &parts[i], used);
                match self.call(env, user, &text).await {
                    Ok(()) => {
                        progress.insert(part_key(i, user));
                        used = self.window_count(env, user, used).await;
                    }
                    Err(e) if e.reason() == Reason::RecipientWindow => {
                        self.close_window(env, user);
                        self.remember_inbound(env, user).await;
                        tracing::warn!(
                            user = %user,
                            account_id = %self.account_id,
                            backoff_s = self.user_backoff.as_secs(),
                            error = %e,
                            "weixin-gateway refused the user (outside the 24-hour window or over its send quota), backing off"
                        );
                        refused.push(user.clone());
                        refused_for = refused_for.max(self.user_backoff);
                        break;
                    }
                    Err(e) => {
                        if e.reason() == Reason::BadCredentials {
                            tracing::error!(
                                account_id = %self.account_id,
                                url = %self.url,
                                error = %e,
                                "weixin-gateway cannot send as this account: log it in on the gateway (weixin-gateway login:start) or fix account_id"
                            );
                        }
                        let slot = if e.is_retryable() {
                            &mut retryable
                        } else {
                            &mut permanent
                        };
                        slot.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = retryable.or(permanent) {
            return Err(e);
        }
        if refused.is_empty() {
            return Ok(());
        }
        if spent == refused.len() {
            return Err(DeliveryError::Upstream {
                service: SERVICE,
                code: -2,
                message: if self.replies_seen {
                    format!(
                        "send window spent ({} messages since the user last wrote to the bot, or ~24h since then); not sending until they reply",
                        self.window_size
                    )
                } else {
                    format!(
                        "send window spent ({} messages); not sending for {} (without the gateway callback, replies are not seen)",
                        self.window_size,
                        humantime::format_duration(self.user_backoff)
                    )
                },
                reason: Reason::RecipientWindow,
                retryable: false,
                recipients: refused,
            });
        }
        Err(DeliveryError::Upstream {
            service: SERVICE,
            code: -2,
            message: format!(
                "send window exhausted (the user has not messaged the bot within ~24h, or used its ~10 sends); not sending for up to {}",
                humantime::format_duration(Duration::from_secs(refused_for.as_secs()))
            ),
            reason: Reason::RecipientWindow,
            retryable: false,
            recipients: refused,
        })
    }

    async fn call(&self, env: &Env<'_>, user: &str, text: &str) -> Result<(), DeliveryError> {
        self.call_with(env, self.body(user, text)).await
    }

    /// A reply to a user's message (a chat command's answer), in the conversation the message
    /// came in on, through this integration's own client: its rate limit and its reading of
    /// the gateway's errors.
    pub async fn reply(
        &self,
        env: &Env<'_>,
        user: &str,
        context_token: &str,
        text: &str,
    ) -> Result<(), DeliveryError> {
        self.call_with(env, self.body_in(user, context_token, text))
            .await?;
        // The reply is one of the user's window messages too.
        let used = self.window_used(env, user).await;
        self.window_count(env, user, used).await;
        Ok(())
    }

    async fn call_with(&self, env: &Env<'_>, body: Value) -> Result<(), DeliveryError> {
        if let Some(limit) = self.rate_limit {
            env.limits.acquire(&self.rate_key(), limit).await;
        }
        let mut req = env.client.post(self.endpoint("send")).json(&body);
        if let Some(t) = &self.bearer_token {
            req = req.bearer_auth(t.expose());
        }
        let answer = http::send(SERVICE, req).await?;
        let scrub = |s: &str| env.scrubber.scrub(s);
        match (answer.status, answer.json::<Reply>(SERVICE, scrub)) {
            (200..=299, Ok(r)) if r.ok => Ok(()),
            // The gateway reports every failure as 500 with its `error` text; a 2xx saying
            // `ok:false` is read the same way.
            (200..=299 | 500, Ok(r)) => Err(classify(&env.scrubber.scrub(&r.error))),
            (200..=299, Err(e)) => Err(e),
            // A proxy in front, or the gateway crashing: not the gateway's own answer.
            _ => Err(answer.http_error(SERVICE, scrub)),
        }
    }

    /// Whether `GET {url}/health` answers 200 with `"ok": true`.
    pub async fn probe(&self, client: &reqwest::Client) -> bool {
        let timeout = self
            .health_interval
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        let mut req = client.get(self.endpoint("health")).timeout(timeout);
        if let Some(t) = &self.bearer_token {
            req = req.bearer_auth(t.expose());
        }
        let Ok(resp) = req.send().await else {
            return false;
        };
        if !resp.status().is_success() {
            return false;
        }
        match resp.json::<Value>().await {
            Ok(v) => v.get("ok") == Some(&Value::Bool(true)),
            Err(_) => false,
        }
    }
}

/// Classifies the gateway's `error` text (see the contract: `unknown account: X`, the iLink
/// errmsg, `ret=-2`, `errcode=N`, `HTTP 4xx`, a JSON parse error).
fn classify(error: &str) -> DeliveryError {
    let e = error.trim();
    let lower = e.to_ascii_lowercase();
    let (reason, retryable) = if lower.starts_with("unknown account") {
        // The gateway has no such logged-in account: nothing changes until someone acts.
        (Reason::BadCredentials, false)
    } else if lower.contains("rate limited") || lower.contains("ret=-2") {
        (Reason::RecipientWindow, false)
    } else if lower.contains("session timeout") || lower.contains("errcode=-14") {
        // The bot's iLink session expired; it must log in again.
        (Reason::BadCredentials, false)
    } else if lower.starts_with("unsupported outbound payload") {
        (Reason::Upstream, false)
    } else if let Some(code) = lower
        .strip_prefix("http ")
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<u16>().ok())
    {
        (Reason::Upstream, code >= 500 || code == 429 || code == 408)
    } else {
        // iLink errmsg, other errcodes: undocumented, most likely transient.
        (Reason::Upstream, true)
    };
    DeliveryError::Upstream {
        service: SERVICE,
        code: 500,
        message: e.to_string(),
        reason,
        retryable,
        recipients: vec![],
    }
}

/// Splits text into messages of at most [`TEXT_MAX`] UTF-16 units, numbered when there are
/// several, cutting at a blank line, else a line break, else a character boundary; at most
/// [`MAX_PARTS`], the last one saying how much was left out.
pub fn split(text: &str, locale: Locale) -> Vec<String> {
    if text::upstream_len(text) <= TEXT_MAX {
        return vec![text.to_string()];
    }
    let limit = TEXT_MAX - PART_HEADER_ROOM;
    let mut bodies: Vec<String> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if text::upstream_len(rest) <= limit {
            bodies.push(rest.to_string());
            break;
        }
        if bodies.len() + 1 == MAX_PARTS {
            let kept = text::upstream_prefix(rest, limit - TRUNCATED_NOTE_ROOM);
            let left = text::visible_len(&rest[kept.len()..]);
            let note = match locale {
                Locale::ZhCn => format!("（内容过长，其余 {left} 字未发送）"),
                Locale::En => format!("(too long: {left} more characters not sent)"),
            };
            bodies.push(format!("{}{}\n{note}", kept.trim_end(), text::ELLIPSIS));
            break;
        }
        let prefix = text::upstream_prefix(rest, limit);
        let half = prefix.len() / 2;
        let cut = match (prefix.rfind("\n\n"), prefix.rfind('\n')) {
            (Some(i), _) if i > half => i,
            (_, Some(i)) if i > half => i,
            _ if prefix.is_empty() => rest.chars().next().map_or(rest.len(), char::len_utf8),
            _ => prefix.len(),
        };
        bodies.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start_matches(['\n', '\r']);
    }
    let total = bodies.len();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let header = match locale {
                Locale::ZhCn => format!("（第 {}/{total} 部分）", i + 1),
                Locale::En => format!("(part {}/{total})", i + 1),
            };
            format!("{header}\n{body}")
        })
        .collect()
}

impl WeixinGateway {
    /// What identifies the recipients: the bot account, the proxy credential's fingerprint
    /// and the users.
    pub(crate) fn identity(&self, parts: &mut Vec<String>) {
        use crate::channels::{fingerprint, sorted};
        parts.push(format!("account={}", self.account_id));
        parts.extend(self.bearer_token.iter().map(fingerprint));
        parts.extend(
            sorted(&self.to_user_ids)
                .into_iter()
                .map(|u| format!("user={u}")),
        );
    }
}

/// What the first user sees: each text part in order, the first as the notification line.
pub fn preview(requests: &[Outbound], max_chars: usize) -> crate::channels::preview::Preview {
    use crate::channels::preview::{Preview, line_of, str_of};
    let mut p = Preview::default();
    let to = requests
        .first()
        .and_then(|r| r.body.get("to_user_id"))
        .cloned()
        .unwrap_or(Value::Null);
    for r in requests {
        if r.body.get("to_user_id") != Some(&to) {
            continue;
        }
        if let Some(items) = r.body.get("items").and_then(Value::as_array) {
            for i in items {
                p.parts.push(str_of(i.get("text")));
            }
        }
    }
    p.body = p.parts.join("\n");
    p.format = "text".into();
    p.line = line_of(p.parts.first().map_or("", String::as_str), max_chars);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_errors_are_classified() {
        let c = |s: &str| {
            let e = classify(s);
            (e.reason(), e.is_retryable())
        };
        assert_eq!(c("unknown account: wx-9"), (Reason::BadCredentials, false));
        assert_eq!(c("rate limited"), (Reason::RecipientWindow, false));
        assert_eq!(c("ret=-2"), (Reason::RecipientWindow, false));
        assert_eq!(c("session timeout"), (Reason::BadCredentials, false));
        assert_eq!(c("HTTP 403"), (Reason::Upstream, false));
        assert_eq!(c("HTTP 502"), (Reason::Upstream, true));
        assert_eq!(c("errcode=-1"), (Reason::Upstream, true));
        assert_eq!(
            c("unsupported outbound payload: expected text or file item"),
            (Reason::Upstream, false)
        );
    }

    #[test]
    fn short_text_is_one_unnumbered_part() {
        assert_eq!(split("hello", Locale::En), ["hello"]);
    }

    #[test]
    fn long_text_splits_at_line_breaks_within_the_limit() {
        let line = "告".repeat(99);
        let text = (0..50)
            .map(|i| format!("{i:02}{line}"))
            .collect::<Vec<_>>()
            .join("\n");
        let parts = split(&text, Locale::ZhCn);
        assert_eq!(parts.len(), 3);
        let mut lines = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(text::upstream_len(p) <= TEXT_MAX, "part {i}");
            let (header, body) = p.split_once('\n').unwrap();
            assert_eq!(header, format!("（第 {}/3 部分）", i + 1));
            lines.extend(body.lines().map(str::to_string));
        }
        assert_eq!(lines.join("\n"), text, "nothing lost, nothing cut mid-line");
    }

    #[test]
    fn text_without_line_breaks_is_cut_on_characters() {
        let text = "🔥".repeat(1500); // 3000 UTF-16 units
        let parts = split(&text, Locale::En);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| text::upstream_len(p) <= TEXT_MAX));
        let joined: String = parts
            .iter()
            .map(|p| p.split_once('\n').unwrap().1)
            .collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn huge_text_stops_at_max_parts_with_a_note() {
        let text = "x\n".repeat(20_000);
        let parts = split(&text, Locale::En);
        assert_eq!(parts.len(), MAX_PARTS);
        assert!(parts.iter().all(|p| text::upstream_len(p) <= TEXT_MAX));
        let last = parts.last().unwrap();
        assert!(last.starts_with("(part 5/5)\n"), "{last}");
        assert!(last.ends_with("more characters not sent)"), "{last}");
    }
}

#[cfg(test)]
mod identity {
    use crate::channels::identity_of;

    /// Stored deliveries are bound to this identity: a change of its inputs re-sends every
    /// pending job after an upgrade, so its value is pinned and changing it is a decision.
    #[test]
    fn identity_is_pinned() {
        assert_eq!(
            identity_of::<super::config::WeixinGatewayConfig>(
                "{url: 'http://gw:8080', account_id: acc1, to_user_ids: [u2, u1], bearer_token: tok-secret}"
            ),
            "weixin-gateway-338f5a2c1bf68ce5"
        );
    }
}
