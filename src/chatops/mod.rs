//! Two-way WeChat: users answer an alert message with a command (`静默 K7Q2 2h 原因`,
//! `ack K7Q2`, `list`, …) and this service acts on it: a silence in Alertmanager, an
//! acknowledgement shown in later messages, the list of what fires for them.
//!
//! # Layout
//! - [`crate::config::chatops`]: the `chatops:` configuration block (kept with the loader).
//! - [`command`]: parsing the commands, in Chinese and English.
//! - [`handle`]: running one command for one user, and the reply text.
//! - [`callback`]: the two callback endpoints and replying on the channel used.
//! - [`upstream`]: Alertmanager's silences API, reply sends, WxPusher's QR code.
//!
//! References are assigned when a notification is first *delivered* (in the worker, just
//! before rendering), not when it is accepted: accepting stays one store write, only
//! replyable integrations (WxPusher, weixin-gateway) pay for it, and every delivery sees the
//! latest acknowledgement. A group (receiver + group key) keeps its reference while it fires.

pub mod callback;
pub mod command;

pub mod handle;
pub mod upstream;

use chrono::Utc;
use tracing::warn;

use crate::channels::{Integration, Kind};
use crate::runtime::Runtime;
use crate::store::Store;
use crate::store::chatops::Touch;
use crate::webhook::{Notification, Status};

/// Before a delivery: the UIDs subscribed through the integration's `subscriber_tags` (to be
/// sent to as well), and, with chatops on, the group's reference and acknowledgement set on
/// the notification. A store failure is logged and the message goes out without them.
pub async fn prepare_delivery(
    store: &Store,
    rt: &Runtime,
    integration: &Integration,
    n: &mut Notification,
) -> Vec<String> {
    let mut subscribers = Vec::new();
    if let Kind::WxPusher(w) = &integration.kind
        && !w.subscriber_tags.is_empty()
    {
        match store.subscribers(w.subscriber_tags.clone()).await {
            Ok(uids) => subscribers = uids.into_iter().filter(|u| !w.uids.contains(u)).collect(),
            Err(e) => {
                warn!(receiver = %integration.receiver, error = %e, "cannot read wxpusher subscribers")
            }
        }
        if subscribers.is_empty() && w.uids.is_empty() && w.topic_ids.is_empty() {
            warn!(receiver = %integration.receiver, tags = ?w.subscriber_tags, "nobody has subscribed with these tags yet: the message goes to no one");
        }
    }
    if rt.config.chatops.is_none() || n.digest.is_some() {
        // A storm digest merges many groups: no one reference fits it.
        return subscribers;
    }
    let recipients: Vec<String> = match &integration.kind {
        Kind::WxPusher(w) => w.uids.iter().chain(&subscribers).cloned().collect(),
        Kind::WeixinGateway(g) => g.to_user_ids.clone(),
        _ => return subscribers,
    };
    let group_key = if n.group_key.is_empty() {
        serde_json::to_string(&n.common_labels).unwrap_or_default()
    } else {
        n.group_key.clone()
    };
    let touch = Touch {
        receiver: integration.receiver.clone(),
        group_key,
        labels: n.common_labels.clone(),
        alerts: n.firing().map(|a| a.labels.clone()).collect(),
        recipients,
        firing: n.status == Status::Firing,
        now: Utc::now(),
    };
    match store.chatops_touch(touch).await {
        Ok(Some(r)) => {
            n.reference = Some(r.reference);
            n.ack = r.ack;
        }
        Ok(None) => {}
        Err(e) => {
            warn!(receiver = %integration.receiver, error = %e, "cannot record the chatops reference; sending without one")
        }
    }
    subscribers
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use crate::config::Locale;
    use crate::template::Templates;
    use crate::webhook::Ack;
    use crate::webhook::sample_notification;

    fn render(locale: Locale, name: &str, with_ref: bool) -> String {
        let tpl = Templates::new(chrono_tz::Asia::Shanghai, locale);
        let mut n = sample_notification();
        if with_ref {
            n.reference = Some("K7Q2".into());
            n.ack = Some(Ack {
                by: "UID_a".into(),
                at: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                    .unwrap()
                    .to_utc(),
            });
        }
        let ctx = tpl.context(&n, Utc::now());
        tpl.render(name, &ctx).unwrap().trim_end().to_string()
    }

    #[test]
    fn reference_and_acknowledgement_end_the_default_messages() {
        for name in ["wxpusher.content", "wxpusher.text", "gateway.text"] {
            let zh = render(Locale::ZhCn, name, true);
            assert!(
                zh.ends_with("\n\n编号 #K7Q2 · UID_a 已确认（01-01 08:00）"),
                "{name}: {zh}"
            );
            let en = render(Locale::En, name, true);
            assert!(
                en.ends_with("\n\nRef #K7Q2 · acked by UID_a (01-01 08:00)"),
                "{name}: {en}"
            );
            // Without chatops the messages are as before.
            assert!(!render(Locale::En, name, false).contains("Ref #"), "{name}");
        }
        assert!(
            render(Locale::En, "wxpusher.html", true)
                .ends_with("<p>Ref #K7Q2 · acked by UID_a (01-01 08:00)</p>")
        );
    }
}
