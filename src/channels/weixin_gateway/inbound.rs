//! The gateway's callback, `POST /callback/weixin-gateway`: its inbound message events into
//! neutral [`Event`]s; what a user's message does to their send window; and the reply in the
//! conversation the message came in on.
//!
//! The gateway sends its shared secret (`UPSTREAM_SHARED_SECRET`) as a bearer token; a wrong
//! or missing one gets 401.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Deserialize;
use tracing::info;

use crate::channels::inbound::{Endpoint, Event, Head, Keys, Malformed, Message, Refused};
use crate::channels::state::Upstreams;
use crate::channels::{Env, Integration, Kind};
use crate::store::Store;

/// The endpoint, for the registry.
pub const ENDPOINT: Endpoint = Endpoint {
    kind: super::KIND,
    path: "/callback/weixin-gateway",
    get: false,
    verify,
    parse,
};

fn verify(head: &Head<'_>, keys: &Keys<'_>) -> Result<(), Refused> {
    let Some(expected) = keys.secret else {
        return Err(Refused::NotFound);
    };
    let given = head
        .authorization
        .and_then(|v| crate::secret::credentials(v, "Bearer"));
    if given.is_some_and(|g| crate::channels::inbound::same(g, expected)) {
        return Ok(());
    }
    info!("weixin-gateway callback without the right bearer token refused");
    Err(Refused::Unauthorized)
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

fn parse(_: &Head<'_>, _: &Keys<'_>, body: &[u8]) -> Result<Event, Malformed> {
    let ev: GatewayEvent = serde_json::from_slice(body).map_err(Malformed::Json)?;
    if ev.kind != "message" {
        return Ok(Event::Ignored);
    }
    let user = if ev.user_id.is_empty() {
        ev.chat_id
    } else {
        ev.user_id
    };
    if user.is_empty() {
        return Err(Malformed::Invalid("event has no user_id\n"));
    }
    Ok(Event::Message(Message {
        kind: super::KIND,
        user,
        text: ev.text,
        account: ev.account_id,
        // The gateway's events carry nothing that tells a replay apart.
        upstream_id: None,
        reply_token: ev.context_token,
    }))
}

/// The user wrote: iLink's window for them is open again.
pub async fn received(store: &Store, upstreams: &Upstreams, msg: &Message) {
    super::window::inbound(
        store,
        &upstreams.channels.weixin_gateway,
        &msg.account,
        &msg.user,
        Utc::now(),
    )
    .await;
}

/// Answers `msg` through the integration of the bot account it came in on, in its
/// conversation.
pub async fn reply(
    receivers: &BTreeMap<String, Vec<Integration>>,
    env: &Env<'_>,
    msg: &Message,
    text: &str,
) -> Result<(), String> {
    let sender = receivers.values().flatten().find_map(|i| match &i.kind {
        Kind::WeixinGateway(g) if g.account_id == msg.account => Some(g),
        _ => None,
    });
    match sender {
        Some(g) => g
            .reply(env, &msg.user, &msg.reply_token, text)
            .await
            .map_err(|e| e.to_string()),
        None => Err(format!(
            "no weixin_gateway integration with account_id {:?} to reply through",
            msg.account
        )),
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
    fn message_events_and_others() {
        let Ok(Event::Message(m)) = parsed(
            r#"{"type":"message","account_id":"bot1","chat_id":"u@im.wechat","text":"list","context_token":"ctx"}"#,
        ) else {
            panic!("not a message")
        };
        assert_eq!(
            (
                m.kind,
                m.user.as_str(),
                m.text.as_str(),
                m.account.as_str(),
                m.reply_token.as_str()
            ),
            ("weixin_gateway", "u@im.wechat", "list", "bot1", "ctx")
        );
        assert_eq!(m.upstream_id, None);
        assert_eq!(parsed(r#"{"type":"status"}"#).ok(), Some(Event::Ignored));
        assert!(matches!(
            parsed(r#"{"type":"message","text":"list"}"#),
            Err(Malformed::Invalid("event has no user_id\n"))
        ));
        assert!(matches!(parsed("[]"), Err(Malformed::Json(_))));
    }

    #[test]
    fn the_bearer_token_is_the_credential() {
        let secret = Secret::new("0123456789abcdef");
        let head = |a| Head {
            authorization: Some(a),
            ..Head::default()
        };
        assert_eq!(
            verify(&head("Bearer 0123456789abcdef"), &keys(Some(&secret))),
            Ok(())
        );
        assert_eq!(
            verify(&head("Bearer 0123456789abcdeX"), &keys(Some(&secret))),
            Err(Refused::Unauthorized)
        );
        assert_eq!(
            verify(&head("Basic 0123456789abcdef"), &keys(Some(&secret))),
            Err(Refused::Unauthorized)
        );
        assert_eq!(
            verify(&Head::default(), &keys(Some(&secret))),
            Err(Refused::Unauthorized)
        );
        // Without a configured secret the endpoint does not exist.
        assert_eq!(
            verify(&head("Bearer 0123456789abcdef"), &keys(None)),
            Err(Refused::NotFound)
        );
    }
}
