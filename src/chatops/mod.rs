//! Two-way WeChat: users answer an alert message with a command (`静默 K7Q2 2h 原因`,
//! `ack K7Q2`, `list`, …) and this service acts on it: a silence in Alertmanager, an
//! acknowledgement shown in later messages, the list of what fires for them.
//!
//! # Layout
//! - [`crate::config::chatops`]: the `chatops:` configuration block (kept with the loader).
//! - [`command`]: parsing the commands, in Chinese and English.
//! - [`handle`]: running one command for one user, and the reply text.
//! - [`callback`]: the callback endpoints the channels declare, and replying on the channel
//!   used; each channel's `inbound.rs` parses and verifies its own.
//! - [`oncall`]: who is on call, and covering a shift (`值班`, `值班 NAME 2h`).
//! - [`upstream`]: Alertmanager's silences API.
//!
//! References are assigned when a notification is first *delivered* (in the worker, just
//! before rendering), not when it is accepted: accepting stays one store write, only
//! integrations a reply can come back from ([`Integration::repliers`]) pay for it, and every delivery sees the
//! latest acknowledgement. A group (receiver + group key) keeps its reference while it fires.

pub mod callback;
pub mod command;

pub mod handle;
pub mod oncall;
pub mod upstream;

use chrono::Utc;
use tracing::warn;

use crate::channels::Integration;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::store::chatops::Touch;
use crate::webhook::{Alert, LabelSet, Notification, Status};

/// Before a delivery: the users subscribed to the integration ([`Integration::subscribers`], to
/// be sent to as well), and, with chatops on, the group's reference and acknowledgement set on
/// the notification. A store failure is logged and the message goes out without them.
pub async fn prepare_delivery(
    store: &Store,
    rt: &Runtime,
    integration: &Integration,
    n: &mut Notification,
) -> Vec<String> {
    let subscribers = integration.subscribers(store).await;
    if rt.config.chatops.is_none() || n.digest.is_some() {
        // A storm digest merges many groups: no one reference fits it.
        return subscribers;
    }
    let Some(recipients) = integration.repliers(&subscribers) else {
        return subscribers;
    };
    // The silence scope: what the alerts present really share, never the payload's own
    // `commonLabels` (a sender could claim `severity="critical"` for an alert without it, and
    // the silence would then mute every critical alert).
    let labels = shared_labels(&n.alerts);
    let group_key = if n.group_key.is_empty() {
        serde_json::to_string(&labels).unwrap_or_default()
    } else {
        n.group_key.clone()
    };
    let touch = Touch {
        receiver: integration.receiver.clone(),
        group_key,
        labels,
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

/// The labels (name and value) every one of `alerts` carries; empty when there are none.
pub fn shared_labels(alerts: &[Alert]) -> LabelSet {
    let mut iter = alerts.iter();
    let Some(first) = iter.next() else {
        return LabelSet::new();
    };
    let mut shared = first.labels.clone();
    for a in iter {
        shared.retain(|k, v| a.labels.get(k) == Some(v));
    }
    shared
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use crate::config::Locale;
    use crate::webhook::Ack;
    use crate::webhook::sample_notification;

    #[test]
    fn the_silence_scope_is_what_the_alerts_present_share() {
        let mut n = sample_notification();
        let mut a = n.alerts[0].clone();
        a.labels = [("alertname".to_string(), "DiskA".to_string())].into();
        n.alerts = vec![a.clone()];
        // The payload claims more than the alert carries.
        n.common_labels = [
            ("alertname".to_string(), "DiskA".to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]
        .into();
        assert_eq!(super::shared_labels(&n.alerts), a.labels);
        let mut b = a.clone();
        b.labels.insert("instance".into(), "n2".into());
        a.labels.insert("instance".into(), "n1".into());
        a.labels.insert("team".into(), "db".into());
        b.labels.insert("team".into(), "db".into());
        assert_eq!(
            super::shared_labels(&[a, b]),
            [
                ("alertname".to_string(), "DiskA".to_string()),
                ("team".to_string(), "db".to_string())
            ]
            .into()
        );
        assert!(super::shared_labels(&[]).is_empty());
    }

    fn render(locale: Locale, name: &str, with_ref: bool) -> String {
        let tpl = crate::channels::templates(chrono_tz::Asia::Shanghai, locale);
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
