//! Incoming webhook payloads and the one normalized [`Notification`] they become.
//!
//! Alertmanager (`version: "4"`) and Grafana (`version: "1"`) send the same shape with
//! different extras; both parse into [`Notification`], which keeps the payload's own field
//! names when serialized so that templates and the durable queue see what Alertmanager users
//! know. This module parses and validates; it does not route or render.

mod alertmanager;
mod grafana;
mod received;
mod wire;

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

pub use alertmanager::AlertmanagerExtras;
pub use grafana::{GrafanaAlertExtras, GrafanaExtras};
pub use received::Received;

/// Labels or annotations.
pub type LabelSet = BTreeMap<String, String>;

/// Which client sent a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Alertmanager,
    Grafana,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert, as both clients send it (its JSON shape: [`wire`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub status: Status,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: DateTime<FixedOffset>,
    /// `0001-01-01T00:00:00Z` while firing.
    pub ends_at: DateTime<FixedOffset>,
    pub generator_url: String,
    pub fingerprint: String,
    /// Not in the payload: when the first firing notification of this alert was accepted for
    /// the receiver integration delivering it (set on resolved alerts at delivery,
    /// `firstNotifiedAt` in templates; see [`crate::dedupe`]).
    pub first_notified_at: Option<DateTime<Utc>>,
    /// Not in the payload: when its firing message went out through that integration
    /// (`firingSentAt`; templates also get `firingSent`).
    pub firing_sent_at: Option<DateTime<Utc>>,
    /// Grafana only.
    pub grafana: GrafanaAlertExtras,
}

/// Go's zero time, which both clients send for "not ended".
pub fn zero_time() -> DateTime<FixedOffset> {
    DateTime::<Utc>::MIN_UTC.fixed_offset()
}

impl Alert {
    /// When it ended, if it has.
    pub fn ended(&self) -> Option<DateTime<FixedOffset>> {
        use chrono::Datelike;
        (self.ends_at.year() > 1).then_some(self.ends_at)
    }

    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// A group of alerts as delivered by one webhook call, whatever sent it (its JSON shape:
/// [`wire`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Not in the payload: which client sent it.
    pub source: Source,
    pub version: String,
    /// The sending receiver's name (Alertmanager escapes it with QuoteMeta).
    pub receiver: String,
    pub status: Status,
    pub alerts: Vec<Alert>,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    pub external_url: String,
    pub group_key: String,
    pub truncated_alerts: u64,
    /// Not in the payload: set when this is a fallback receiver's copy of a notification
    /// another integration gave up on (`fallback` in templates).
    pub fallback: bool,
    /// Not in the payload: the summary line of a storm digest merging many notifications
    /// (`digest` in templates).
    pub digest: Option<String>,
    /// Not in the payload: the counts behind a storm digest's `digest` line, kept so a digest
    /// merged again with more notifications adds to them (`digestCounts` in templates).
    pub digest_counts: Option<DigestCounts>,
    /// Not in the payload: the short reference a WeChat reply names this group by (`ref` in
    /// templates), set at delivery when chatops is on.
    pub reference: Option<String>,
    /// Not in the payload: who acknowledged this group from WeChat, and when (`ack`).
    pub ack: Option<Ack>,
    /// Not in the payload: the incident this is a page or status update of (`incident` in
    /// templates).
    pub incident: Option<IncidentContext>,
    pub alertmanager: AlertmanagerExtras,
    pub grafana: GrafanaExtras,
}

/// An incident as a page shows it (`incident` in templates).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentContext {
    /// The incident's id, for the engine that settles its pages.
    pub id: i64,
    #[serde(rename = "ref")]
    pub reference: String,
    pub state: String,
    pub step: u32,
    pub policy: String,
    /// The one-tap acknowledge link (with `oncall.public_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// Who this page is for (none for a receiver's integrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// A status update's line (`张三 已认领 K7Q2`); none for a page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
}

/// What a storm digest counted: every alert of every notification it merged, including those
/// not kept in full. `groups` holds at most [`DigestCounts::MAX_GROUPS`] keys and the other
/// maps [`DigestCounts::MAX_KEYS`]; what does not fit is counted in the `other_*` fields, so
/// the record stays small however large the storm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestCounts {
    /// Notifications merged.
    pub notifications: u64,
    /// Alerts merged (distinct by fingerprint within a coalescing pass).
    pub alerts: u64,
    pub firing: u64,
    pub resolved: u64,
    /// Alerts per group (its group labels, or its group key).
    pub groups: BTreeMap<String, u64>,
    /// Alerts of groups beyond the first `MAX_GROUPS`.
    pub other_groups: u64,
    /// Alerts per `alertname`.
    pub alertnames: BTreeMap<String, u64>,
    pub other_alertnames: u64,
    /// Alerts per `severity` label (`""` when absent).
    pub severities: BTreeMap<String, u64>,
    pub other_severities: u64,
}

impl DigestCounts {
    /// Groups named per digest.
    pub const MAX_GROUPS: usize = 512;
    /// `alertname`s and severities named per digest.
    pub const MAX_KEYS: usize = 64;
}

/// An acknowledgement of a group, made by replying `ack <ref>` in WeChat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The WeChat user id (WxPusher UID or gateway user id).
    pub by: String,
    pub at: DateTime<Utc>,
}

fn default_source() -> Source {
    Source::Alertmanager
}

/// Why a payload was refused; the text becomes the 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("payload has no alerts")]
    NoAlerts,
    #[error("too many alerts: more than {MAX_ALERTS}")]
    TooManyAlerts,
}

/// More alerts than this in one payload is refused: Alertmanager's `max_alerts` exists for it.
pub const MAX_ALERTS: usize = 10_000;

/// No alert is shorter than this in JSON (`{"status":"firing","labels":{},"startsAt":"…"}`),
/// so a body shorter than `MAX_ALERTS` of them cannot hold too many and is not pre-scanned.
const MIN_ALERT_BYTES: usize = 60;

/// Nesting past which a body is handed to the generic parser to be judged (its limit is
/// 128 levels).
const NESTING_SCAN: usize = 100;

/// Whether arrays and objects in `body` nest deeper than `limit`, strings left out.
fn nests_deeper_than(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The number of elements of the top-level `alerts` array, counted without building them;
/// counting stops with [`TOO_MANY`] at the first element over [`MAX_ALERTS`].
#[derive(Deserialize)]
struct AlertCount {
    #[serde(default)]
    #[allow(dead_code)]
    alerts: Counted,
}

#[derive(Default)]
struct Counted;

const TOO_MANY: &str = "alert count over the limit";

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Counted;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of alerts")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Counted, A::Error> {
                let mut n = 0usize;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                    if n > MAX_ALERTS {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                }
                Ok(Counted)
            }
        }
        d.deserialize_seq(V)
    }
}

impl Notification {
    /// A huge array is refused before a single alert is built, and JSON nested deeper than
    /// the parser's limit (128) anywhere, fields nobody reads included. Other problems the
    /// scans meet are left to the full parse, which words them.
    fn too_many_alerts(body: &[u8]) -> Result<(), PayloadError> {
        // Fields the parse does not know are skipped without counting their depth: when the
        // body nests deep at all, the generic parser (which counts) judges it.
        if nests_deeper_than(body, NESTING_SCAN)
            && let Err(e) = serde_json::from_slice::<serde_json::Value>(body)
        {
            return Err(PayloadError::Json(one_line(&e)));
        }
        if body.len() > MIN_ALERT_BYTES * MAX_ALERTS
            && let Err(e) = serde_json::from_slice::<AlertCount>(body)
            && e.to_string().starts_with(TOO_MANY)
        {
            return Err(PayloadError::TooManyAlerts);
        }
        Ok(())
    }

    fn alert_count(n: usize) -> Result<(), PayloadError> {
        match n {
            0 => Err(PayloadError::NoAlerts),
            n if n > MAX_ALERTS => Err(PayloadError::TooManyAlerts),
            _ => Ok(()),
        }
    }

    /// Parses an Alertmanager or Grafana webhook body. (A webhook appended as received is
    /// checked and encoded without this: [`Received::parse`].)
    pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
        Notification::too_many_alerts(body)?;
        let mut n: Notification =
            serde_json::from_slice(body).map_err(|e| PayloadError::Json(one_line(&e)))?;
        Notification::alert_count(n.alerts.len())?;
        // Ours to set, never the sender's.
        for a in &mut n.alerts {
            a.first_notified_at = None;
            a.firing_sent_at = None;
        }
        n.source = if n.version == "1" || n.grafana.is_present() {
            Source::Grafana
        } else {
            Source::Alertmanager
        };
        // Alertmanager sends its receiver name through Go's `regexp.QuoteMeta` (`ops.wechat`
        // arrives as `ops\.wechat`); templates show the name as configured.
        if n.source == Source::Alertmanager {
            n.receiver = unquote_meta(&n.receiver);
        }
        Ok(n)
    }

    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| a.status == Status::Firing)
    }

    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| a.status == Status::Resolved)
    }

    /// A copy of everything but the alerts, without copying them: what a large group's
    /// blocks and bounded contexts are built on.
    pub fn without_alerts(&self) -> Notification {
        // Spelled out field by field, so that a field added later cannot be forgotten here.
        let Notification {
            source,
            version,
            receiver,
            status,
            alerts: _,
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
            alertmanager,
            grafana,
        } = self;
        Notification {
            source: *source,
            version: version.clone(),
            receiver: receiver.clone(),
            status: *status,
            alerts: Vec::new(),
            group_labels: group_labels.clone(),
            common_labels: common_labels.clone(),
            common_annotations: common_annotations.clone(),
            external_url: external_url.clone(),
            group_key: group_key.clone(),
            truncated_alerts: *truncated_alerts,
            fallback: *fallback,
            digest: digest.clone(),
            digest_counts: digest_counts.clone(),
            reference: reference.clone(),
            ack: ack.clone(),
            incident: incident.clone(),
            alertmanager: alertmanager.clone(),
            grafana: grafana.clone(),
        }
    }

    /// A copy holding only some of the alerts, with status and common labels recomputed.
    pub fn subset(&self, alerts: Vec<Alert>) -> Notification {
        let mut n = self.without_alerts();
        n.status = if alerts.iter().any(|a| a.status == Status::Firing) {
            Status::Firing
        } else {
            Status::Resolved
        };
        if alerts.len() != self.alerts.len() {
            n.common_labels = common(alerts.iter().map(|a| &a.labels));
            n.common_annotations = common(alerts.iter().map(|a| &a.annotations));
        }
        n.alerts = alerts;
        n
    }
}

/// Undoes Go's `regexp.QuoteMeta`, which puts a backslash before each of `\.+*?()|[]{}^$`.
/// Any other backslash is kept as it is.
fn unquote_meta(s: &str) -> String {
    const SPECIAL: &str = r"\.+*?()|[]{}^$";
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && SPECIAL.contains(next)
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// The pairs every set shares.
fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

/// Longest error message answered and logged: serde quotes offending values whole, and a
/// megabyte string in the wrong place must not come back in the 400 or land in the logs.
const MAX_ERROR_CHARS: usize = 240;

/// The error on one line, its middle cut when too long (the end says where: line, column).
/// serde quotes the payload's own text, which can hold control characters or terminal
/// escapes: they are written as `\u{1b}`, so the 400 answer and the log show them inert.
fn one_line(e: &serde_json::Error) -> String {
    let s = escape_controls(&e.to_string().replace('\n', " "));
    if crate::text::visible_len(&s) <= MAX_ERROR_CHARS {
        return s;
    }
    let tail: String = {
        let g: Vec<&str> =
            unicode_segmentation::UnicodeSegmentation::graphemes(s.as_str(), true).collect();
        g[g.len().saturating_sub(60)..].concat()
    };
    format!("{}{tail}", crate::text::truncate(&s, MAX_ERROR_CHARS - 60))
}

/// `s` with every control character (C0, DEL, C1) and bidirectional-formatting character
/// written as `\u{XX}`: text from a payload cannot move a cursor, colour a terminal, forge a
/// log line or reorder what a reader sees.
pub fn escape_controls(s: &str) -> String {
    // Bidi marks, embeddings, overrides and isolates (the "Trojan Source" characters).
    const BIDI: &[std::ops::RangeInclusive<char>] = &[
        '\u{061c}'..='\u{061c}',
        '\u{200e}'..='\u{200f}',
        '\u{202a}'..='\u{202e}',
        '\u{2066}'..='\u{2069}',
    ];
    let inert = |c: char| c.is_control() || BIDI.iter().any(|r| r.contains(&c));
    if !s.chars().any(inert) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if inert(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A firing and a resolved alert, to check that templates render.
pub fn sample_notification() -> Notification {
    const SAMPLE: &str = r#"{"receiver":"sample","status":"firing","version":"4",
      "groupKey":"{}:{alertname=\"Sample\"}","externalURL":"http://alertmanager:9093","truncatedAlerts":0,
      "groupLabels":{"alertname":"Sample"},"commonLabels":{"alertname":"Sample"},"commonAnnotations":{},
      "alerts":[
        {"status":"firing","labels":{"alertname":"Sample","severity":"critical","instance":"node-1"},
         "annotations":{"summary":"Sample alert","description":"A sample alert to check templates"},
         "startsAt":"2026-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z",
         "generatorURL":"http://prometheus:9090/graph","fingerprint":"0123456789abcdef"},
        {"status":"resolved","labels":{"alertname":"Sample","severity":"warning","instance":"node-2"},
         "annotations":{"summary":"Sample resolved"},
         "startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-01T00:12:00Z",
         "generatorURL":"http://prometheus:9090/graph","fingerprint":"fedcba9876543210"}]}"#;
    // A constant that is tested to parse; an empty fallback keeps this infallible.
    Notification::parse(SAMPLE.as_bytes()).unwrap_or_else(|_| Notification {
        source: Source::Alertmanager,
        version: "4".into(),
        receiver: String::new(),
        status: Status::Firing,
        alerts: vec![],
        group_labels: Default::default(),
        common_labels: Default::default(),
        common_annotations: Default::default(),
        external_url: String::new(),
        group_key: String::new(),
        truncated_alerts: 0,
        fallback: false,
        digest: None,
        digest_counts: None,
        reference: None,
        ack: None,
        incident: None,
        alertmanager: Default::default(),
        grafana: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AM: &str = r#"{"receiver":"wechat","status":"firing",
 "alerts":[{"status":"firing","labels":{"alertname":"HighCPU","instance":"n1"},"annotations":{"summary":"..."},
   "startsAt":"2026-01-01T00:00:00.123456789Z","endsAt":"0001-01-01T00:00:00Z",
   "generatorURL":"http://prom:9090/graph?g0.expr=...","fingerprint":"c6eadffa33fcdf37"}],
 "groupLabels":{"alertname":"HighCPU"},"commonLabels":{"alertname":"HighCPU"},"commonAnnotations":{},
 "externalURL":"http://am:9093","version":"4","groupKey":"{}:{alertname=\"HighCPU\"}","truncatedAlerts":0,
 "notification_reason":"first notification","routeLabels":{"team":"a"},"someFutureField":1}"#;

    #[test]
    fn errors_show_control_characters_escaped() {
        let body = br#"{"status":"\u001b[2J\u001b]0;pwned\u0007\u202e\r","alerts":[]}"#;
        let e = Notification::parse(body).unwrap_err().to_string();
        assert!(
            !e.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{e:?}"
        );
        assert!(
            e.contains(r"\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}\u{d}"),
            "{e}"
        );
        assert_eq!(escape_controls("plain 文本"), "plain 文本");
    }

    #[test]
    fn parses_alertmanager_v4_with_optional_fields() {
        let n = Notification::parse(AM.as_bytes()).unwrap();
        assert_eq!(n.source, Source::Alertmanager);
        assert_eq!(n.alerts[0].name(), "HighCPU");
        assert_eq!(n.alerts[0].ended(), None);
        assert_eq!(
            n.alertmanager.notification_reason.as_deref(),
            Some("first notification")
        );
        assert_eq!(n.alertmanager.route_labels.as_ref().unwrap()["team"], "a");
        assert_eq!(n.group_key, "{}:{alertname=\"HighCPU\"}");
        assert_eq!(n.alerts[0].starts_at.timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn alertmanager_receiver_name_is_unquoted_from_quote_meta() {
        // Alertmanager 0.25+ sends `regexp.QuoteMeta(name)`: `ops.wechat` as `ops\.wechat`.
        let body = AM.replace(r#""receiver":"wechat""#, r#""receiver":"ops\\.wechat""#);
        assert!(body.contains(r#""receiver":"ops\\.wechat""#));
        let n = Notification::parse(body.as_bytes()).unwrap();
        assert_eq!(n.receiver, "ops.wechat");
        // Its own serialization is parsed again unchanged.
        let again = Notification::parse(&serde_json::to_vec(&n).unwrap()).unwrap();
        assert_eq!(again.receiver, "ops.wechat");
        assert_eq!(unquote_meta(r"a\\b\(x\)\$"), r"a\b(x)$");
        assert_eq!(
            unquote_meta(r"keep\n and trailing\"),
            r"keep\n and trailing\"
        );
        // Grafana does not escape: its name is kept as sent.
        let g = br#"{"version":"1","orgId":1,"receiver":"a\\.b","status":"firing","alerts":[{"status":"firing","labels":{},"startsAt":"2026-01-01T00:00:00Z"}]}"#;
        assert_eq!(Notification::parse(g).unwrap().receiver, r"a\.b");
    }

    #[test]
    fn round_trips_through_its_own_serialization() {
        let n = Notification::parse(AM.as_bytes()).unwrap();
        let again = Notification::parse(&serde_json::to_vec(&n).unwrap()).unwrap();
        assert_eq!(n, again);
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(v["externalURL"], "http://am:9093");
    }

    #[test]
    fn refuses_malformed_and_incomplete_payloads_with_reasons() {
        let e = Notification::parse(b"{not json").unwrap_err().to_string();
        assert!(
            e.starts_with("malformed JSON: key must be a string at line 1"),
            "{e}"
        );
        let e = Notification::parse(br#"{"status":"firing"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "malformed JSON: missing field `alerts` at line 1 column 19"
        );
        let e = Notification::parse(br#"{"status":"burning","alerts":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `burning`"), "{e}");
        assert_eq!(
            Notification::parse(br#"{"status":"firing","alerts":[]}"#).unwrap_err(),
            PayloadError::NoAlerts
        );
        let e = Notification::parse(
            br#"{"status":"firing","alerts":[{"status":"firing","labels":{}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing field `startsAt`"), "{e}");
        let e = Notification::parse(b"{\"status\":\"firing\xff\"}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("malformed JSON: invalid unicode"), "{e}");
    }

    #[test]
    fn huge_alert_arrays_are_refused() {
        let alert = r#"{"status":"firing","labels":{},"startsAt":"2026-01-01T00:00:00Z"}"#;
        assert!(alert.len() >= MIN_ALERT_BYTES);
        let body = |n: usize| {
            format!(
                r#"{{"status":"firing","alerts":[{}]}}"#,
                vec![alert; n].join(",")
            )
        };
        assert_eq!(
            Notification::parse(body(MAX_ALERTS + 1).as_bytes()),
            Err(PayloadError::TooManyAlerts)
        );
        assert_eq!(
            Notification::parse(body(MAX_ALERTS).as_bytes())
                .unwrap()
                .alerts
                .len(),
            MAX_ALERTS
        );
        // Too many of anything that is not an alert: refused by the scan all the same.
        let junk = format!(r#"{{"alerts":[{}]}}"#, vec!["0"; 4 * MAX_ALERTS].join(","));
        let junk = format!("{junk}{}", " ".repeat(MIN_ALERT_BYTES * MAX_ALERTS));
        assert_eq!(
            Notification::parse(junk.as_bytes()),
            Err(PayloadError::TooManyAlerts)
        );
    }

    #[test]
    fn long_errors_are_cut_in_the_middle() {
        let body = format!(
            r#"{{"status":"firing","alerts":"{}"}}"#,
            "x".repeat(100_000)
        );
        let e = Notification::parse(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("malformed JSON: invalid type: string \"xxx"),
            "{e}"
        );
        assert!(e.contains("…"), "{e}");
        assert!(
            e.ends_with("expected a sequence at line 1 column 100030"),
            "{e}"
        );
        assert!(
            e.chars().count() <= "malformed JSON: ".len() + MAX_ERROR_CHARS,
            "{e}"
        );
    }

    #[test]
    fn subset_recomputes_status_and_common_labels() {
        let mut n = Notification::parse(AM.as_bytes()).unwrap();
        let mut b = n.alerts[0].clone();
        b.status = Status::Resolved;
        b.labels.insert("instance".into(), "n2".into());
        n.alerts.push(b.clone());
        let s = n.subset(vec![b]);
        assert_eq!(s.status, Status::Resolved);
        assert_eq!(s.common_labels["instance"], "n2");
    }
}
