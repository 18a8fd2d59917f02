//! WxPusher's callbacks, `POST /callback/wxpusher/{secret}`: `send_up_cmd` (a user wrote to
//! the app) and `app_subscribe` (a user followed it, perhaps through a parameter QR code),
//! into neutral [`Event`]s; and the reply to a user who wrote, through the right app.
//!
//! WxPusher signs nothing, so the secret path segment is the credential; a wrong one gets a
//! bare 404, as if the endpoint did not exist.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tracing::{info, warn};

use super::WxPusher;
use super::config::MAX_TAG;
use crate::channels::inbound::{
    Endpoint, Event, Head, Keys, Malformed, Message, Refused, Subscription,
};
use crate::channels::{Env, Integration, Kind};
use crate::store::Store;

/// The endpoint, for the registry.
pub const ENDPOINT: Endpoint = Endpoint {
    kind: super::KIND,
    path: "/callback/wxpusher/{secret}",
    get: false,
    verify,
    parse,
};

fn verify(head: &Head<'_>, keys: &Keys<'_>) -> Result<(), Refused> {
    let Some(expected) = keys.secret else {
        return Err(Refused::NotFound);
    };
    if head
        .path_secret
        .is_some_and(|s| crate::channels::inbound::same(s, expected))
    {
        return Ok(());
    }
    info!("wxpusher callback with a wrong secret refused");
    Err(Refused::NotFound)
}

/// `{"action": …, "data": {…}}`; other actions (`order_pay`, future ones) are acknowledged
/// and ignored, as WxPusher asks.
#[derive(Debug, Deserialize)]
struct Callback {
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

#[derive(Debug, Deserialize)]
struct Subscribe {
    uid: String,
    #[serde(default)]
    extra: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    time: Option<i64>,
}

fn parse(_: &Head<'_>, _: &Keys<'_>, body: &[u8]) -> Result<Event, Malformed> {
    let cb: Callback = serde_json::from_slice(body).map_err(Malformed::Json)?;
    match cb.action.as_str() {
        "send_up_cmd" => {
            let cmd: UpCommand = serde_json::from_value(cb.data).map_err(Malformed::Json)?;
            Ok(Event::Message(Message {
                kind: super::KIND,
                upstream_id: cmd.time.map(|t| t.to_string()),
                user: cmd.uid,
                text: cmd.content,
                account: String::new(),
                reply_token: String::new(),
            }))
        }
        "app_subscribe" => {
            let s: Subscribe = serde_json::from_value(cb.data).map_err(Malformed::Json)?;
            let tag = s.extra.unwrap_or_default();
            // The tag is matched against `subscriber_tags`, which are at most MAX_TAG long.
            if s.uid.trim().is_empty() || s.uid.len() > 128 || tag.chars().count() > MAX_TAG {
                return Err(Malformed::Invalid("bad uid or extra\n"));
            }
            Ok(Event::Subscribed(Subscription {
                kind: super::KIND,
                user: s.uid,
                tag,
                at: s.time.and_then(DateTime::<Utc>::from_timestamp_millis),
            }))
        }
        _ => Ok(Event::Ignored),
    }
}

/// Answers `msg` through a WxPusher app: the one of the receiver the command acted on, else
/// one that lists the UID, else one with subscriber tags, else the first configured.
pub async fn reply(
    receivers: &BTreeMap<String, Vec<Integration>>,
    env: &Env<'_>,
    msg: &Message,
    receiver: Option<&str>,
    text: &str,
) -> Result<(), String> {
    let uid = msg.user.as_str();
    let all = || {
        receivers.iter().flat_map(|(name, list)| {
            list.iter().filter_map(move |i| match &i.kind {
                // Simple-push integrations have no app token to reply with.
                Kind::WxPusher(w) if !w.is_simple() => Some((name.as_str(), w)),
                _ => None,
            })
        })
    };
    let sender = all()
        .find(|(name, _)| Some(*name) == receiver)
        .or_else(|| all().find(|(_, w)| w.uids.iter().any(|u| u == uid)))
        .or_else(|| all().find(|(_, w)| !w.subscriber_tags.is_empty()))
        .or_else(|| all().next())
        .map(|(_, w)| w);
    match sender {
        Some(w) => w.reply(env, uid, text).await.map_err(|e| e.to_string()),
        None => Err("no wxpusher integration is configured to reply with".into()),
    }
}

impl WxPusher {
    /// The UIDs subscribed through this integration's `subscriber_tags` that it does not list
    /// itself: sent to as well. A store failure is logged and none are added.
    pub async fn subscribers(&self, store: &Store, receiver: &str) -> Vec<String> {
        if self.subscriber_tags.is_empty() {
            return Vec::new();
        }
        let mut subscribers = Vec::new();
        match store.subscribers(self.subscriber_tags.clone()).await {
            Ok(uids) => {
                subscribers = uids
                    .into_iter()
                    .filter(|u| !self.uids.contains(u))
                    .collect()
            }
            Err(e) => {
                warn!(receiver = %receiver, error = %e, "cannot read wxpusher subscribers")
            }
        }
        if subscribers.is_empty() && self.uids.is_empty() && self.topic_ids.is_empty() {
            warn!(receiver = %receiver, tags = ?self.subscriber_tags, "nobody has subscribed with these tags yet: the message goes to no one");
        }
        subscribers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn keys(secret: Option<&Secret>) -> Keys<'_> {
        static NONE: std::sync::LazyLock<BTreeMap<String, Vec<Integration>>> =
            std::sync::LazyLock::new(BTreeMap::new);
        Keys {
            secret,
            receivers: &NONE,
        }
    }

    fn parsed(body: &str) -> Result<Event, Malformed> {
        parse(&Head::default(), &keys(None), body.as_bytes())
    }

    #[test]
    fn commands_subscriptions_and_other_actions() {
        let Ok(Event::Message(m)) = parsed(
            r#"{"action":"send_up_cmd","data":{"uid":"UID_a","content":"list","time":1700000000000}}"#,
        ) else {
            panic!("not a message")
        };
        assert_eq!(
            (m.kind, m.user.as_str(), m.text.as_str()),
            ("wxpusher", "UID_a", "list")
        );
        assert_eq!(m.upstream_id.as_deref(), Some("1700000000000"));
        let Ok(Event::Subscribed(s)) = parsed(
            r#"{"action":"app_subscribe","data":{"uid":"UID_b","extra":"ops","time":1700000000000}}"#,
        ) else {
            panic!("not a subscription")
        };
        assert_eq!((s.user.as_str(), s.tag.as_str()), ("UID_b", "ops"));
        assert_eq!(s.at.map(|t| t.timestamp()), Some(1_700_000_000));
        assert_eq!(
            parsed(r#"{"action":"order_pay","data":{}}"#).ok(),
            Some(Event::Ignored)
        );
        let long = "x".repeat(MAX_TAG + 1);
        assert!(matches!(
            parsed(&format!(
                r#"{{"action":"app_subscribe","data":{{"uid":"UID_b","extra":"{long}"}}}}"#
            )),
            Err(Malformed::Invalid(_))
        ));
        assert!(matches!(parsed("{"), Err(Malformed::Json(_))));
    }

    #[test]
    fn the_path_segment_is_the_credential() {
        let secret = Secret::new("0123456789abcdef");
        let head = |s| Head {
            path_secret: Some(s),
            ..Head::default()
        };
        assert_eq!(
            verify(&head("0123456789abcdef"), &keys(Some(&secret))),
            Ok(())
        );
        assert_eq!(
            verify(&head("0123456789abcdeX"), &keys(Some(&secret))),
            Err(Refused::NotFound)
        );
        assert_eq!(
            verify(&Head::default(), &keys(Some(&secret))),
            Err(Refused::NotFound)
        );
        // Without a configured secret the endpoint does not exist.
        assert_eq!(
            verify(&head("0123456789abcdef"), &keys(None)),
            Err(Refused::NotFound)
        );
    }
}
