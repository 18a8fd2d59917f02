//! What Grafana's webhook contact point (payload `version: "1"`) adds to the shared payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `alerting` or `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

impl GrafanaExtras {
    pub fn is_present(&self) -> bool {
        self.org_id.is_some() || self.state.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaAlertExtras {
    #[serde(
        default,
        rename = "silenceURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub silence_url: Option<String>,
    #[serde(
        default,
        rename = "dashboardURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub dashboard_url: Option<String>,
    #[serde(default, rename = "panelURL", skip_serializing_if = "Option::is_none")]
    pub panel_url: Option<String>,
    #[serde(default, rename = "imageURL", skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// May be `null` in the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    #[serde(default, rename = "ruleUID", skip_serializing_if = "Option::is_none")]
    pub rule_uid: Option<String>,
}

#[cfg(test)]
mod tests {
    use crate::webhook::{Notification, Source};

    const GRAFANA: &str = r#"{"receiver":"My Super Webhook","status":"firing","orgId":1,
 "alerts":[{"status":"firing","labels":{"alertname":"High memory usage","team":"blue","zone":"us-1"},
  "annotations":{"description":"The system has high memory usage","runbook_url":"https://myrunbook.com/runbook/1234","summary":"This alert was triggered for zone us-1"},
  "startsAt":"2021-10-12T09:51:03.157076+02:00","endsAt":"0001-01-01T00:00:00Z",
  "generatorURL":"https://play.grafana.org/alerting/1afz29v7z/edit","fingerprint":"c6eadffa33fcdf37",
  "silenceURL":"https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1",
  "dashboardURL":"","panelURL":"","values":{"B":44.23943737541908,"C":1}},
  {"status":"firing","labels":{"alertname":"x"},"startsAt":"2021-10-12T09:51:03Z","values":null,"valueString":"[ var='B' value=1 ]"}],
 "groupLabels":{},"commonLabels":{"team":"blue"},"commonAnnotations":{},"externalURL":"https://play.grafana.org/",
 "version":"1","groupKey":"{}:{}","truncatedAlerts":0,"title":"[FIRING:2]  (blue)","state":"alerting",
 "message":"**Firing**\n\nLabels:\n - alertname = T2\n"}"#;

    #[test]
    fn parses_grafana_with_its_extra_fields() {
        let n = Notification::parse(GRAFANA.as_bytes()).unwrap();
        assert_eq!(n.source, Source::Grafana);
        assert_eq!(n.grafana.org_id, Some(1));
        assert_eq!(n.grafana.state.as_deref(), Some("alerting"));
        let a = &n.alerts[0];
        assert!(
            a.grafana
                .silence_url
                .as_deref()
                .unwrap()
                .starts_with("https://play.grafana.org/alerting/silence")
        );
        assert_eq!(a.grafana.dashboard_url.as_deref(), Some(""));
        assert_eq!(a.grafana.values.as_ref().unwrap()["C"], 1.0);
        assert_eq!(a.starts_at.offset().local_minus_utc(), 7200);
        assert_eq!(n.alerts[1].grafana.values, None);
        assert!(n.alerts[1].grafana.value_string.is_some());
    }
}
