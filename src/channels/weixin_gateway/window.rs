//! The iLink send window of each weixin-gateway user: how many messages the bot has sent
//! them since they last wrote to it.
//!
//! iLink delivers a bot's messages to a user only for a while after that user's last message
//! to the bot, and only about 10 of them (contract §E; the numbers are empirical). So the
//! sends to each user are counted since their last inbound message, in a store counter
//! (`add_counter` / `counter`, both backends), so restarts and replicas share the count. The
//! chatops callback, which sees every inbound message, resets it ([`inbound`]) and lifts the
//! user's back-off after a `ret=-2` at once: a reply reopens the window.
//!
//! With `window_warn_at` sends used, each message carries a line asking the user to reply;
//! with `window_size` used, nothing is sent to that user (no call wasted, none extending the
//! penalty): the delivery fails with [`crate::delivery::Reason::RecipientWindow`] and the
//! engine hands the notification to the fallback receiver.
//!
//! A user the service has never seen write is counted from the first send: the window is
//! unknown, so it is assumed open, and a `ret=-2` still closes it through the back-off. When
//! the user's last message is known, the window is closed [`WINDOW_OPEN`] (~24 h) after it.
//! Without the gateway's callback nobody says when a user writes: a spent window then puts
//! the user in the `user_backoff` back-off and the count restarts after it. Counters expire
//! [`STATE_TTL`] after they were made (the count restarts). Store errors never stop an
//! alert: the user is then sent to uncounted, and a warning logged.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{SERVICE, WeixinGateway};
use crate::channels::Env;
use crate::metrics::{Metrics, WindowLabels};
use crate::store::Store;
use crate::template::Locale;
use crate::text;

/// How long a window count is kept without being reset.
pub const STATE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_WINDOW_SIZE: u32 = 10;
/// How long after a user's last message iLink delivers to them (about 24 hours).
pub const WINDOW_OPEN: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_WINDOW_WARN_AT: u32 = 8;

/// The store counter of sends to `user` through the bot `account_id`.
pub fn counter_key(account_id: &str, user: &str) -> String {
    format!("{SERVICE}:window:{account_id}:{user}")
}

/// The store counter holding when `user` last wrote to the bot `account_id` (Unix seconds): a
/// replica that backed a user off sees another replica's callback by this changing, and a
/// window is closed [`WINDOW_OPEN`] after it.
pub fn inbound_key(account_id: &str, user: &str) -> String {
    format!("{SERVICE}:inbound:{account_id}:{user}")
}

fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(STATE_TTL).unwrap_or(chrono::Duration::days(7))
}

/// The user wrote to the bot: their window is open again. Resets the count and lifts the
/// back-off of every gateway integration sending as `account_id`.
pub async fn inbound(
    store: &Store,
    backoffs: &super::Backoffs,
    account_id: &str,
    user: &str,
    now: DateTime<Utc>,
) {
    backoffs
        .until()
        .retain(|k, _| !k.ends_with(&format!("\n{account_id}\n{user}")));
    let at = inbound_key(account_id, user);
    let recorded = match store.counter(at.clone(), now).await {
        Ok(before) => {
            store
                .add_counter(at, now.timestamp() - before, expiry(now))
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        tracing::warn!(account_id, user, error = %e, "cannot record a weixin-gateway user's message for the other replicas");
    }
    let key = counter_key(account_id, user);
    let result = match store.counter(key.clone(), now).await {
        Ok(0) => Ok(0),
        Ok(used) => store.add_counter(key, -used, expiry(now)).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => tracing::debug!(
            account_id,
            user,
            "weixin-gateway user wrote: send window reset"
        ),
        Err(e) => {
            tracing::warn!(account_id, user, error = %e, "cannot reset the weixin-gateway send window")
        }
    }
}

/// One more message went to the user (an alert part or a chatops reply); the new count.
pub async fn sent(store: &Store, account_id: &str, user: &str, now: DateTime<Utc>) -> Option<u32> {
    match store
        .add_counter(counter_key(account_id, user), 1, expiry(now))
        .await
    {
        Ok(n) => Some(n.clamp(0, i64::from(u32::MAX)) as u32),
        Err(e) => {
            tracing::warn!(account_id, user, error = %e, "cannot count a weixin-gateway send");
            None
        }
    }
}

/// The line added to a message once the window is nearly spent: `n` is the count including
/// that message.
pub fn note(locale: Locale, n: u32, size: u32) -> String {
    match locale {
        Locale::ZhCn => {
            format!("⚠️ 自您上次发消息以来已发送 {n}/{size} 条。请回复任意消息，以便继续接收告警。")
        }
        Locale::En => format!(
            "⚠️ {n} of {size} messages sent since you last wrote. Reply anything to keep receiving alerts."
        ),
    }
}

impl WeixinGateway {
    /// Sends to `user` since they last wrote; `None` when not counted (window tracking off,
    /// no store, or the store cannot answer).
    pub(super) async fn window_used(&self, env: &Env<'_>, user: &str) -> Option<u32> {
        if self.window_size == 0 {
            return None;
        }
        let store = env.store?;
        // About a day after the user last wrote (when that is known), the window is closed.
        if self.replies_seen
            && let Ok(last) = store
                .counter(inbound_key(&self.account_id, user), env.now)
                .await
            && last > 0
            && env.now.timestamp() - last > WINDOW_OPEN.as_secs() as i64
        {
            return Some(self.window_size);
        }
        match store
            .counter(counter_key(&self.account_id, user), env.now)
            .await
        {
            Ok(n) => Some(n.clamp(0, i64::from(u32::MAX)) as u32),
            Err(e) => {
                tracing::warn!(user, error = %e, "cannot read the weixin-gateway send window, sending uncounted");
                None
            }
        }
    }

    /// Notes how often the user had written when their back-off began (after a `ret=-2`).
    pub(super) async fn remember_inbound(&self, env: &Env<'_>, user: &str) {
        let Some(store) = env.store else { return };
        match store
            .counter(inbound_key(&self.account_id, user), env.now)
            .await
        {
            Ok(n) => env
                .upstreams
                .channels
                .weixin_gateway
                .seen()
                .insert(self.window_key(user), n),
            Err(_) => env
                .upstreams
                .channels
                .weixin_gateway
                .seen()
                .remove(&self.window_key(user)),
        };
    }

    /// Whether the user wrote since their back-off began, through any replica; if so the
    /// back-off is lifted. A back-off whose start was not noted (no store) stays.
    pub(super) async fn replied_since_backoff(&self, env: &Env<'_>, user: &str) -> bool {
        let key = self.window_key(user);
        let backoffs = &env.upstreams.channels.weixin_gateway;
        let Some(before) = backoffs.seen().get(&key).copied() else {
            return false;
        };
        let Some(store) = env.store else { return false };
        match store
            .counter(inbound_key(&self.account_id, user), env.now)
            .await
        {
            Ok(now) if now != before => {
                backoffs.until().remove(&key);
                backoffs.seen().remove(&key);
                tracing::info!(user, account_id = %self.account_id, "weixin-gateway user wrote to the bot: back-off lifted");
                true
            }
            _ => false,
        }
    }

    pub(super) fn window_spent(&self, used: Option<u32>) -> bool {
        used.is_some_and(|u| self.window_size > 0 && u >= self.window_size)
    }

    /// Starts the count afresh (a spent window given `user_backoff` to reopen).
    pub(super) async fn window_reset(&self, env: &Env<'_>, user: &str) {
        let Some(store) = env.store else { return };
        let key = counter_key(&self.account_id, user);
        if let Ok(used) = store.counter(key.clone(), env.now).await
            && used != 0
            && let Err(e) = store.add_counter(key, -used, expiry(env.now)).await
        {
            tracing::warn!(user, error = %e, "cannot reset the weixin-gateway send window");
        }
    }

    /// Counts a send that went through; the new count.
    pub(super) async fn window_count(
        &self,
        env: &Env<'_>,
        user: &str,
        used: Option<u32>,
    ) -> Option<u32> {
        let store = env.store.filter(|_| self.window_size > 0)?;
        used?;
        sent(store, &self.account_id, user, env.now).await
    }

    /// The text of the next message, with the reply request once the window is nearly spent.
    pub(super) fn with_note(&self, env: &Env<'_>, part: &str, used: Option<u32>) -> String {
        let Some(used) = used else {
            return part.to_string();
        };
        let n = used + 1;
        if self.window_warn_at == 0 || n < self.window_warn_at {
            return part.to_string();
        }
        let line = note(env.templates.locale(), n, self.window_size);
        let room = super::TEXT_MAX.saturating_sub(text::upstream_len(&line) + 2);
        let body = if text::upstream_len(part) > room {
            format!(
                "{}{}",
                text::upstream_prefix(part, room.saturating_sub(1)),
                text::ELLIPSIS
            )
        } else {
            part.to_string()
        };
        format!("{body}\n\n{line}")
    }
}

/// Refreshes the send-window gauges of every gateway among `receivers`' integrations
/// ([`refresh_metrics`]); answers when to do it again: the shortest `health_interval` of the
/// gateways, or 30s when there is none.
pub async fn upkeep(
    receivers: &BTreeMap<String, Vec<crate::channels::Integration>>,
    store: &Store,
    metrics: &Metrics,
) -> Duration {
    use crate::channels::Kind;
    let gateways: Vec<(&str, &WeixinGateway)> = receivers
        .iter()
        .flat_map(|(receiver, list)| {
            list.iter().filter_map(move |i| match &i.kind {
                Kind::WeixinGateway(g) => Some((receiver.as_str(), g)),
                _ => None,
            })
        })
        .collect();
    let interval = gateways
        .iter()
        .map(|(_, g)| g.health_interval)
        .min()
        .unwrap_or(Duration::from_secs(30));
    refresh_metrics(gateways, store, metrics).await;
    interval
}

/// Registers the gauges [`upkeep`] sets, under their names.
pub fn register_metrics(metrics: &mut Metrics) {
    let users = metrics.window_users.clone();
    let remaining = metrics.window_remaining.clone();
    metrics.register_channel_family(
        "weixin_gateway_window_users",
        "weixin-gateway users whose send window (messages since they last wrote) is open, low or spent",
        users,
    );
    metrics.register_channel_family(
        "weixin_gateway_window_remaining",
        "Fewest messages any of the receiver's weixin-gateway users can still get before they write again",
        remaining,
    );
}

/// Sets `weixin_gateway_window_users{receiver,state}` (how many of a receiver's users have
/// their window `open`, nearly spent: `low`, or `spent`) and
/// `weixin_gateway_window_remaining{receiver}` (the fewest sends any of them has left) from
/// the store. Labels are receiver names and fixed states: never user ids.
pub async fn refresh_metrics<'a>(
    gateways: impl IntoIterator<Item = (&'a str, &'a WeixinGateway)>,
    store: &Store,
    metrics: &Metrics,
) {
    let now = Utc::now();
    let mut users: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    let mut remaining: BTreeMap<String, i64> = BTreeMap::new();
    for (receiver, g) in gateways {
        if g.window_size == 0 {
            continue;
        }
        let counts = users.entry(receiver.to_string()).or_default();
        for user in &g.to_user_ids {
            let Ok(used) = store.counter(counter_key(&g.account_id, user), now).await else {
                return;
            };
            let (size, warn) = (i64::from(g.window_size), i64::from(g.window_warn_at));
            let state = if used >= size {
                2
            } else if warn > 0 && used + 1 >= warn {
                1
            } else {
                0
            };
            counts[state] += 1;
            let left = (size - used).max(0);
            remaining
                .entry(receiver.to_string())
                .and_modify(|r| *r = (*r).min(left))
                .or_insert(left);
        }
    }
    metrics.window_users.clear();
    metrics.window_remaining.clear();
    for (receiver, counts) in users {
        for (state, n) in ["open", "low", "spent"].into_iter().zip(counts) {
            metrics
                .window_users
                .get_or_create(&WindowLabels {
                    receiver: receiver.clone(),
                    state,
                })
                .set(n);
        }
    }
    for (receiver, left) in remaining {
        metrics
            .window_remaining
            .get_or_create(&crate::metrics::ReceiverIntegrationLabels {
                receiver,
                integration: SERVICE,
            })
            .set(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reminder_is_localized_and_names_the_count() {
        assert_eq!(
            note(Locale::ZhCn, 8, 10),
            "⚠️ 自您上次发消息以来已发送 8/10 条。请回复任意消息，以便继续接收告警。"
        );
        assert_eq!(
            note(Locale::En, 9, 10),
            "⚠️ 9 of 10 messages sent since you last wrote. Reply anything to keep receiving alerts."
        );
    }

    #[test]
    fn the_counter_key_names_account_and_user() {
        assert_eq!(
            counter_key("wx-account-1", "ops@im.wechat"),
            "weixin_gateway:window:wx-account-1:ops@im.wechat"
        );
    }
}
