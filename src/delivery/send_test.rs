//! `send-test`, for the command line and the console's API alike: a one-alert notification sent
//! now through every integration of a receiver, bypassing the queue, each outcome in words.

use chrono::{DateTime, Utc};

use crate::channels::Progress;
use crate::runtime::Runtime;
use crate::webhook::Notification;

/// A one-alert notification for `send-test`.
pub fn test_notification(receiver: &str, now: DateTime<Utc>) -> Notification {
    let mut n = crate::webhook::sample_notification();
    n.alerts.truncate(1);
    let a = &mut n.alerts[0];
    a.labels.clear();
    a.labels
        .insert("alertname".into(), "AlertmanagerWechatTest".into());
    a.labels.insert("severity".into(), "info".into());
    a.annotations.clear();
    a.annotations.insert(
        "summary".into(),
        "Test message from alertmanager-wechat: this receiver works.".into(),
    );
    a.starts_at = now.fixed_offset();
    a.fingerprint = "0000000000000000".into();
    a.generator_url = String::new();
    n.receiver = receiver.to_string();
    n.group_key = format!("{{}}:{{alertname=\"AlertmanagerWechatTest\",receiver={receiver:?}}}");
    n.group_labels = a.labels.clone();
    n.common_labels = a.labels.clone();
    n.common_annotations = a.annotations.clone();
    n.external_url = String::new();
    n
}

/// `send-test`: sends the test notification through every integration of a receiver, now.
pub async fn send_test(rt: &Runtime, receiver: &str) -> (String, bool) {
    let Some(list) = rt.receivers.get(receiver) else {
        return (format!("unknown receiver {receiver:?}\n"), false);
    };
    let now = Utc::now();
    let n = test_notification(receiver, now);
    let env = rt.env(now);
    let mut out = String::new();
    let mut ok = true;
    for i in list {
        let mut progress = Progress::new();
        match i.send(&env, &n, &mut progress).await {
            Ok(()) => out.push_str(&format!("{}[{}]: sent\n", i.name(), i.index)),
            Err(e) => {
                ok = false;
                let hint = if e.is_retryable() {
                    "temporary"
                } else {
                    "permanent"
                };
                out.push_str(&format!(
                    "{}[{}]: failed ({hint}): {}\n",
                    i.name(),
                    i.index,
                    rt.scrubber.scrub(&e.to_string())
                ));
            }
        }
    }
    (out, ok)
}
