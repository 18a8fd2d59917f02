//! A webhook validated and encoded as the store keeps it, without building a [`Notification`].
//!
//! A webhook appended under load is only checked, normalized and written: the routing after
//! the answer decodes it again. Building the owned notification for that (a `String` for
//! every label, key and value, a map node for every few) and dropping it took a quarter of
//! what accepting a webhook cost. Here the payload is read into strings that borrow from the
//! body where JSON did not escape them, normalized as [`Notification::parse`] does, and
//! encoded: the same checks, the same errors, the same bytes as encoding the parsed
//! notification (a test holds the two together).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Ack, DigestCounts, IncidentContext, Notification, PayloadError, Source, Status, default_source,
    zero_time,
};

/// A validated webhook as the store keeps it, and what the accept path reports of it.
#[derive(Debug)]
pub struct Received {
    /// The notification's JSON, as `serde_json::to_vec(&Notification::parse(body)?)`.
    pub json: Vec<u8>,
    pub source: Source,
    pub group_key: String,
    /// Each alert's status, in order.
    pub statuses: Vec<Status>,
}

impl Received {
    /// Checks and encodes a webhook body: refused exactly as [`Notification::parse`] refuses.
    pub fn parse(body: &[u8]) -> Result<Received, PayloadError> {
        Notification::too_many_alerts(body)?;
        let mut n: Raw<'_> =
            serde_json::from_slice(body).map_err(|e| PayloadError::Json(super::one_line(&e)))?;
        Notification::alert_count(n.alerts.len())?;
        for a in &mut n.alerts {
            a.first_notified_at = None;
            a.firing_sent_at = None;
        }
        n.source = if n.version.0 == "1" || n.org_id.is_some() || n.state.is_some() {
            Source::Grafana
        } else {
            Source::Alertmanager
        };
        if n.source == Source::Alertmanager {
            n.receiver = Str(Cow::Owned(super::unquote_meta(&n.receiver.0)));
        }
        let json = serde_json::to_vec(&n)
            .map_err(|e| PayloadError::Json(format!("cannot encode the notification: {e}")))?;
        Ok(Received {
            json,
            source: n.source,
            group_key: n.group_key.0.into_owned(),
            statuses: n.alerts.iter().map(|a| a.status).collect(),
        })
    }
}

/// A string read from the body: borrowed unless JSON escaped something in it.
#[derive(Debug, Default, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Str<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

type Labels<'a> = BTreeMap<Str<'a>, Str<'a>>;

fn is_false(b: &bool) -> bool {
    !*b
}

/// [`super::wire`]'s notification shape, field for field and in its order, over borrowed
/// strings.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Raw<'a> {
    #[serde(default = "default_source")]
    source: Source,
    #[serde(default, borrow)]
    version: Str<'a>,
    #[serde(default, borrow)]
    receiver: Str<'a>,
    status: Status,
    #[serde(borrow)]
    alerts: Vec<RawAlert<'a>>,
    #[serde(default, borrow)]
    group_labels: Labels<'a>,
    #[serde(default, borrow)]
    common_labels: Labels<'a>,
    #[serde(default, borrow)]
    common_annotations: Labels<'a>,
    #[serde(default, borrow, rename = "externalURL")]
    external_url: Str<'a>,
    #[serde(default, borrow)]
    group_key: Str<'a>,
    #[serde(default)]
    truncated_alerts: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    fallback: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest_counts: Option<DigestCounts>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ack: Option<Ack>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incident: Option<IncidentContext>,
    #[serde(
        default,
        borrow,
        rename = "notification_reason",
        skip_serializing_if = "Option::is_none"
    )]
    notification_reason: Option<Str<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    route_labels: Option<Labels<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org_id: Option<i64>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    title: Option<Str<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    state: Option<Str<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    message: Option<Str<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    app_version: Option<Str<'a>>,
}

/// [`super::wire`]'s alert shape over borrowed strings.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert<'a> {
    status: Status,
    #[serde(borrow)]
    labels: Labels<'a>,
    #[serde(default, borrow)]
    annotations: Labels<'a>,
    starts_at: DateTime<FixedOffset>,
    #[serde(default = "zero_time")]
    ends_at: DateTime<FixedOffset>,
    #[serde(default, borrow, rename = "generatorURL")]
    generator_url: Str<'a>,
    #[serde(default, borrow)]
    fingerprint: Str<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_notified_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    firing_sent_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        borrow,
        rename = "silenceURL",
        skip_serializing_if = "Option::is_none"
    )]
    silence_url: Option<Str<'a>>,
    #[serde(
        default,
        borrow,
        rename = "dashboardURL",
        skip_serializing_if = "Option::is_none"
    )]
    dashboard_url: Option<Str<'a>>,
    #[serde(
        default,
        borrow,
        rename = "panelURL",
        skip_serializing_if = "Option::is_none"
    )]
    panel_url: Option<Str<'a>>,
    #[serde(
        default,
        borrow,
        rename = "imageURL",
        skip_serializing_if = "Option::is_none"
    )]
    image_url: Option<Str<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    values: Option<BTreeMap<Str<'a>, f64>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    value_string: Option<Str<'a>>,
    #[serde(
        default,
        borrow,
        rename = "ruleUID",
        skip_serializing_if = "Option::is_none"
    )]
    rule_uid: Option<Str<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::MAX_ALERTS;

    /// What the two ways of reading a webhook make of `body`: the same bytes, or the same error.
    fn agree(body: &[u8]) {
        let owned = Notification::parse(body);
        let received = Received::parse(body);
        match (owned, received) {
            (Ok(n), Ok(r)) => {
                assert_eq!(
                    String::from_utf8(r.json).unwrap(),
                    serde_json::to_string(&n).unwrap(),
                    "{}",
                    String::from_utf8_lossy(body)
                );
                assert_eq!(r.source, n.source);
                assert_eq!(r.group_key, n.group_key);
                let statuses: Vec<Status> = n.alerts.iter().map(|a| a.status).collect();
                assert_eq!(r.statuses, statuses);
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(body)),
            (a, b) => panic!(
                "{}: {:?} / {:?}",
                String::from_utf8_lossy(body),
                a.map(|_| ()),
                b.map(|_| ())
            ),
        }
    }

    #[test]
    fn the_shipped_examples_encode_as_their_parsed_notification_does() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                agree(&std::fs::read(&path).unwrap());
                seen += 1;
            }
        }
        assert!(seen >= 2, "{seen} examples");
        agree(super::super::wire::tests::FULL.as_bytes());
    }

    #[test]
    fn escapes_extras_and_odd_payloads_encode_or_fail_alike() {
        for body in [
            // Escaped strings (owned, not borrowed), a QuoteMeta'd receiver, Grafana by state.
            r#"{"receiver":"ops\\.we\u0063hat","status":"firing","state":"alerting","alerts":[{"status":"firing","labels":{"a\"b":"c\nd","\u4e2d":"文"},"startsAt":"2026-01-02T03:04:05.5+08:00","values":{"B\u0041":1e3,"C":-0.5}}]}"#,
            r#"{"receiver":"ops\\.wechat","status":"resolved","version":"4","alerts":[{"status":"resolved","labels":{},"startsAt":"2026-01-02T03:04:05Z","endsAt":"2026-01-02T04:04:05Z","firstNotifiedAt":"2026-01-02T03:04:06Z"}],"routeLabels":{"x":"y"},"notification_reason":"r"}"#,
            r#"{"version":"1","status":"firing","orgId":2,"alerts":[{"status":"firing","labels":{"a":"1","a":"2"},"startsAt":"2026-01-02T03:04:05Z","values":null,"dashboardURL":""}],"digest":null}"#,
            // Refused alike.
            r#"{"status":"firing","alerts":[]}"#,
            r#"{"alerts":[{"status":"firing","labels":{},"startsAt":"2026-01-02T03:04:05Z"}]}"#,
            r#"{"status":"firing","alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2026-01-02T03:04:05Z"}]}"#,
            r#"{"status":"firing","alerts":[{"status":"firing","labels":{},"startsAt":"yesterday"}]}"#,
            r#"{"status":"firing","alerts":[{"status":"firing","labels":{},"startsAt":"2026-01-02T03:04:05Z","firingSentAt":"nope"}]}"#,
            r#"{"status":"firing","status":"firing","alerts":[]}"#,
            r#"{"status":"firing","alerts":[{"status":"firing","labels":{},"startsAt":"2026-01-02T03:04:05Z"}],"orgId":"one"}"#,
            r#"{"status":"firing","alerts":[{"status":"firing","labels":{},"startsAt":"2026-01-02T03:04:05Z"}]"#,
            r#"[1,2]"#,
            "",
        ] {
            agree(body.as_bytes());
        }
    }

    #[test]
    fn nesting_past_the_limit_is_refused_alike_even_in_fields_nobody_reads() {
        let alert =
            r#"{"status":"firing","labels":{"a":"[[[[{{{{"},"startsAt":"2026-01-02T03:04:05Z"}"#;
        for depth in [99, 126, 127, 128, 5000] {
            let body = format!(
                r#"{{"x":{}{},"status":"firing","alerts":[{alert}]}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            agree(body.as_bytes());
            let refused = Received::parse(body.as_bytes())
                .err()
                .is_some_and(|e| e.to_string().contains("recursion limit exceeded"));
            assert_eq!(refused, depth >= 127, "{depth}");
        }
        // Brackets inside strings are not nesting.
        let body = format!(
            r#"{{"status":"firing","alerts":[{}],"x":"{}\"{}"}}"#,
            alert,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(Received::parse(body.as_bytes()).is_ok());
        agree(body.as_bytes());
    }

    #[test]
    fn too_many_alerts_are_refused_alike() {
        let alert = r#"{"status":"firing","labels":{},"startsAt":"2026-01-02T03:04:05Z"}"#;
        let body = format!(
            r#"{{"status":"firing","alerts":[{}]}}"#,
            vec![alert; MAX_ALERTS + 1].join(",")
        );
        assert_eq!(
            Received::parse(body.as_bytes()).unwrap_err(),
            PayloadError::TooManyAlerts
        );
        agree(body.as_bytes());
    }
}
