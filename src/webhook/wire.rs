//! The JSON shape of [`Notification`] and [`Alert`]: every field at one level, the
//! Alertmanager and Grafana extras beside the shared ones.
//!
//! The Rust types keep the extras in structs of their own; serde's `flatten` would map them
//! to and from the flat JSON, but it buffers every field of the object into an intermediate
//! tree first and serializes through a map: parsing and encoding a five-alert webhook took
//! 46 µs that way, a third of what accepting it cost. These structs spell the flat shape out
//! once, with the same keys in the same order, so the bytes written are what `flatten` wrote.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Ack, Alert, AlertmanagerExtras, DigestCounts, GrafanaAlertExtras, GrafanaExtras,
    IncidentContext, LabelSet, Notification, Source, Status, default_source, zero_time,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationIn {
    #[serde(default = "default_source")]
    source: Source,
    #[serde(default)]
    version: String,
    #[serde(default)]
    receiver: String,
    status: Status,
    alerts: Vec<Alert>,
    #[serde(default)]
    group_labels: LabelSet,
    #[serde(default)]
    common_labels: LabelSet,
    #[serde(default)]
    common_annotations: LabelSet,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
    #[serde(default)]
    fallback: bool,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    digest_counts: Option<DigestCounts>,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    ack: Option<Ack>,
    #[serde(default)]
    incident: Option<IncidentContext>,
    // Alertmanager's extras.
    #[serde(default, rename = "notification_reason")]
    notification_reason: Option<String>,
    #[serde(default)]
    route_labels: Option<LabelSet>,
    // Grafana's extras.
    #[serde(default)]
    org_id: Option<i64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    app_version: Option<String>,
}

impl<'de> Deserialize<'de> for Notification {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = NotificationIn::deserialize(d)?;
        Ok(Notification {
            source: n.source,
            version: n.version,
            receiver: n.receiver,
            status: n.status,
            alerts: n.alerts,
            group_labels: n.group_labels,
            common_labels: n.common_labels,
            common_annotations: n.common_annotations,
            external_url: n.external_url,
            group_key: n.group_key,
            truncated_alerts: n.truncated_alerts,
            fallback: n.fallback,
            digest: n.digest,
            digest_counts: n.digest_counts,
            reference: n.reference,
            ack: n.ack,
            incident: n.incident,
            alertmanager: AlertmanagerExtras {
                notification_reason: n.notification_reason,
                route_labels: n.route_labels,
            },
            grafana: GrafanaExtras {
                org_id: n.org_id,
                title: n.title,
                state: n.state,
                message: n.message,
                app_version: n.app_version,
            },
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NotificationOut<'a> {
    source: Source,
    version: &'a str,
    receiver: &'a str,
    status: Status,
    alerts: &'a [Alert],
    group_labels: &'a LabelSet,
    common_labels: &'a LabelSet,
    common_annotations: &'a LabelSet,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    group_key: &'a str,
    truncated_alerts: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fallback: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest_counts: Option<&'a DigestCounts>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack: Option<&'a Ack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incident: Option<&'a IncidentContext>,
    #[serde(
        rename = "notification_reason",
        skip_serializing_if = "Option::is_none"
    )]
    notification_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_labels: Option<&'a LabelSet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_version: Option<&'a str>,
}

impl Serialize for Notification {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Notification {
            source,
            version,
            receiver,
            status,
            alerts,
            group_labels,
            common_labels,
            common_annotations,
            external_url,
            group_key,
            truncated_alerts,
            fallback,
            digest,
            digest_counts,
            reference,
            ack,
            incident,
            alertmanager:
                AlertmanagerExtras {
                    notification_reason,
                    route_labels,
                },
            grafana:
                GrafanaExtras {
                    org_id,
                    title,
                    state,
                    message,
                    app_version,
                },
        } = self;
        NotificationOut {
            source: *source,
            version,
            receiver,
            status: *status,
            alerts,
            group_labels,
            common_labels,
            common_annotations,
            external_url,
            group_key,
            truncated_alerts: *truncated_alerts,
            fallback: *fallback,
            digest: digest.as_deref(),
            digest_counts: digest_counts.as_ref(),
            reference: reference.as_deref(),
            ack: ack.as_ref(),
            incident: incident.as_ref(),
            notification_reason: notification_reason.as_deref(),
            route_labels: route_labels.as_ref(),
            org_id: *org_id,
            title: title.as_deref(),
            state: state.as_deref(),
            message: message.as_deref(),
            app_version: app_version.as_deref(),
        }
        .serialize(s)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertIn {
    status: Status,
    labels: LabelSet,
    #[serde(default)]
    annotations: LabelSet,
    starts_at: DateTime<FixedOffset>,
    #[serde(default = "zero_time")]
    ends_at: DateTime<FixedOffset>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    first_notified_at: Option<DateTime<Utc>>,
    #[serde(default)]
    firing_sent_at: Option<DateTime<Utc>>,
    // Grafana's extras.
    #[serde(default, rename = "silenceURL")]
    silence_url: Option<String>,
    #[serde(default, rename = "dashboardURL")]
    dashboard_url: Option<String>,
    #[serde(default, rename = "panelURL")]
    panel_url: Option<String>,
    #[serde(default, rename = "imageURL")]
    image_url: Option<String>,
    #[serde(default)]
    values: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    value_string: Option<String>,
    #[serde(default, rename = "ruleUID")]
    rule_uid: Option<String>,
}

impl<'de> Deserialize<'de> for Alert {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let a = AlertIn::deserialize(d)?;
        Ok(Alert {
            status: a.status,
            labels: a.labels,
            annotations: a.annotations,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            generator_url: a.generator_url,
            fingerprint: a.fingerprint,
            first_notified_at: a.first_notified_at,
            firing_sent_at: a.firing_sent_at,
            grafana: GrafanaAlertExtras {
                silence_url: a.silence_url,
                dashboard_url: a.dashboard_url,
                panel_url: a.panel_url,
                image_url: a.image_url,
                values: a.values,
                value_string: a.value_string,
                rule_uid: a.rule_uid,
            },
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertOut<'a> {
    status: Status,
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    starts_at: &'a DateTime<FixedOffset>,
    ends_at: &'a DateTime<FixedOffset>,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_notified_at: Option<&'a DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firing_sent_at: Option<&'a DateTime<Utc>>,
    #[serde(rename = "silenceURL", skip_serializing_if = "Option::is_none")]
    silence_url: Option<&'a str>,
    #[serde(rename = "dashboardURL", skip_serializing_if = "Option::is_none")]
    dashboard_url: Option<&'a str>,
    #[serde(rename = "panelURL", skip_serializing_if = "Option::is_none")]
    panel_url: Option<&'a str>,
    #[serde(rename = "imageURL", skip_serializing_if = "Option::is_none")]
    image_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<&'a BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_string: Option<&'a str>,
    #[serde(rename = "ruleUID", skip_serializing_if = "Option::is_none")]
    rule_uid: Option<&'a str>,
}

impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Alert {
            status,
            labels,
            annotations,
            starts_at,
            ends_at,
            generator_url,
            fingerprint,
            first_notified_at,
            firing_sent_at,
            grafana:
                GrafanaAlertExtras {
                    silence_url,
                    dashboard_url,
                    panel_url,
                    image_url,
                    values,
                    value_string,
                    rule_uid,
                },
        } = self;
        AlertOut {
            status: *status,
            labels,
            annotations,
            starts_at,
            ends_at,
            generator_url,
            fingerprint,
            first_notified_at: first_notified_at.as_ref(),
            firing_sent_at: firing_sent_at.as_ref(),
            silence_url: silence_url.as_deref(),
            dashboard_url: dashboard_url.as_deref(),
            panel_url: panel_url.as_deref(),
            image_url: image_url.as_deref(),
            values: values.as_ref(),
            value_string: value_string.as_deref(),
            rule_uid: rule_uid.as_deref(),
        }
        .serialize(s)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Every field of both shapes, and fields neither knows.
    pub(in crate::webhook) const FULL: &str = r##"{"version":"4","receiver":"ops\\.wechat","status":"firing","alerts":[
 {"status":"firing","labels":{"alertname":"A","severity":"critical"},"annotations":{"summary":"s \"q\" 中文"},
  "startsAt":"2026-01-02T03:04:05.123+08:00","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://g/x?a=1&b=2",
  "fingerprint":"fp1","firstNotifiedAt":"2026-01-02T03:04:06Z","firingSentAt":"2026-01-02T03:04:07Z",
  "silenceURL":"http://s","dashboardURL":"","panelURL":"http://p","imageURL":"http://i","values":{"B":44.5,"C":1},
  "valueString":"[ var='B' ]","ruleUID":"r1","unknownField":[1,2]},
 {"status":"resolved","labels":{},"startsAt":"2026-01-02T03:04:05Z","endsAt":"2026-01-02T04:04:05Z"}],
 "groupLabels":{"alertname":"A"},"commonLabels":{"alertname":"A"},"commonAnnotations":{},
 "externalURL":"http://am","groupKey":"{}:{alertname=\"A\"}","truncatedAlerts":3,"fallback":true,
 "digest":"d","digestCounts":{"notifications":1,"alerts":2,"firing":1,"resolved":1,"groups":{"g":2},"otherGroups":0,"alertnames":{"A":2},"otherAlertnames":0,"severities":{"":1},"otherSeverities":0},
 "ref":"K7Q2","ack":{"by":"u","at":"2026-01-02T03:04:05Z"},
 "incident":{"id":7,"ref":"K7Q2","state":"triggered","step":1,"policy":"p","ack_url":"http://a","person":"zhang"},
 "notification_reason":"new","routeLabels":{"team":"x"},"orgId":1,"title":"T","state":"alerting","message":"M","appVersion":"11",
 "source":"alertmanager","extra":{"x":1}}"##;

    /// What `FULL` encoded to when the extras were `#[serde(flatten)]`ed: the keys and their
    /// order are unchanged, so the bodies stored before and after are the same bytes.
    const ENCODED: &str = r##"{"source":"alertmanager","version":"4","receiver":"ops\\.wechat","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"A","severity":"critical"},"annotations":{"summary":"s \"q\" 中文"},"startsAt":"2026-01-02T03:04:05.123+08:00","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://g/x?a=1&b=2","fingerprint":"fp1","firstNotifiedAt":"2026-01-02T03:04:06Z","firingSentAt":"2026-01-02T03:04:07Z","silenceURL":"http://s","dashboardURL":"","panelURL":"http://p","imageURL":"http://i","values":{"B":44.5,"C":1.0},"valueString":"[ var='B' ]","ruleUID":"r1"},{"status":"resolved","labels":{},"annotations":{},"startsAt":"2026-01-02T03:04:05Z","endsAt":"2026-01-02T04:04:05Z","generatorURL":"","fingerprint":""}],"groupLabels":{"alertname":"A"},"commonLabels":{"alertname":"A"},"commonAnnotations":{},"externalURL":"http://am","groupKey":"{}:{alertname=\"A\"}","truncatedAlerts":3,"fallback":true,"digest":"d","digestCounts":{"notifications":1,"alerts":2,"firing":1,"resolved":1,"groups":{"g":2},"otherGroups":0,"alertnames":{"A":2},"otherAlertnames":0,"severities":{"":1},"otherSeverities":0},"ref":"K7Q2","ack":{"by":"u","at":"2026-01-02T03:04:05Z"},"incident":{"id":7,"ref":"K7Q2","state":"triggered","step":1,"policy":"p","ack_url":"http://a","person":"zhang"},"notification_reason":"new","routeLabels":{"team":"x"},"orgId":1,"title":"T","state":"alerting","message":"M","appVersion":"11"}"##;

    #[test]
    fn every_field_reads_and_writes_as_the_flat_shape_did() {
        let n: Notification = serde_json::from_str(FULL).unwrap();
        assert_eq!(n.alertmanager.notification_reason.as_deref(), Some("new"));
        assert_eq!(n.alertmanager.route_labels.as_ref().unwrap()["team"], "x");
        assert_eq!(n.grafana.org_id, Some(1));
        assert_eq!(n.grafana.app_version.as_deref(), Some("11"));
        assert_eq!(n.alerts[0].grafana.rule_uid.as_deref(), Some("r1"));
        assert_eq!(n.alerts[0].grafana.values.as_ref().unwrap()["B"], 44.5);
        assert_eq!(n.alerts[1].grafana, GrafanaAlertExtras::default());
        assert_eq!(n.alerts[1].generator_url, "");
        assert!(n.fallback);
        assert_eq!(
            n.incident.as_ref().unwrap().person.as_deref(),
            Some("zhang")
        );
        let encoded = serde_json::to_string(&n).unwrap();
        assert_eq!(encoded, ENCODED);
        assert_eq!(serde_json::from_str::<Notification>(&encoded).unwrap(), n);
    }

    #[test]
    fn absent_extras_are_left_out() {
        let n: Notification = serde_json::from_str(
            r#"{"status":"resolved","alerts":[{"status":"resolved","labels":{"a":"b"},"startsAt":"2026-01-02T03:04:05Z"}]}"#,
        )
        .unwrap();
        assert_eq!(n.source, Source::Alertmanager);
        assert_eq!(n.alerts[0].ends_at, zero_time());
        let v: serde_json::Value = serde_json::to_value(&n).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for absent in ["fallback", "digest", "ref", "orgId", "routeLabels", "title"] {
            assert!(!keys.contains(&absent), "{absent} in {keys:?}");
        }
        let alert = v["alerts"][0].as_object().unwrap();
        assert!(!alert.contains_key("silenceURL") && !alert.contains_key("firstNotifiedAt"));
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let e = serde_json::from_str::<Notification>(r#"{"alerts":[]}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `status`"), "{e}");
        let e = serde_json::from_str::<Notification>(
            r#"{"status":"firing","alerts":[{"status":"firing","labels":{}}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field `startsAt`"), "{e}");
    }
}
