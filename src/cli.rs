//! The commands SREs run beside the server: `check-config`, `render`, `send-test`, `deadletters`,
//! `subscribers` and `qrcode`.
//!
//! They return what to print and an exit status; `main.rs` only parses arguments and prints.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::channels::Progress;
use crate::config::{Config, ConfigErrors};
use crate::runtime::Runtime;
use crate::webhook::Notification;

/// Loads a configuration and builds everything from it, as the server would at start-up.
pub fn load(path: &Path) -> Result<Runtime, ConfigErrors> {
    Config::load(path).and_then(Runtime::build)
}

/// [`load`], listing every error: when the file parsed whole but failed its checks, its
/// templates are compiled all the same and their errors listed too.
fn load_listing_all(path: &Path) -> Result<Runtime, ConfigErrors> {
    match Config::load_checked(path) {
        (Some(config), errors) if errors.is_empty() => Runtime::build(config),
        (Some(config), mut errors) => {
            if let Err(ConfigErrors(more)) = Runtime::build(config) {
                for e in more {
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
            Err(ConfigErrors(errors))
        }
        (None, errors) => Err(ConfigErrors(errors)),
    }
}

/// `check-config FILE...`: every error of every file, or an OK line per file.
pub fn check_config(files: &[std::path::PathBuf]) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    for f in files {
        match load_listing_all(f) {
            Ok(rt) => {
                let integrations: usize = rt.receivers.values().map(Vec::len).sum();
                out.push_str(&format!(
                    "{}: OK ({} receivers, {} integrations)\n",
                    f.display(),
                    rt.receivers.len(),
                    integrations
                ));
                for w in warnings(&rt.config) {
                    out.push_str(&format!("{w}\n"));
                }
                for w in sample_warnings(&rt) {
                    out.push_str(&format!("{}: {w}\n", f.display()));
                }
            }
            Err(e) => {
                ok = false;
                out.push_str(&format!("{e}\n"));
            }
        }
    }
    (out, ok)
}

/// What the sample notification says about the templates: Official Account fields it does
/// not fit. A warning only: real alerts may carry what the sample lacks (a label), and a
/// field that does not fit at send time is sent with a placeholder.
fn sample_warnings(rt: &Runtime) -> Vec<String> {
    let env = rt.env(chrono::Utc::now());
    let sample = crate::webhook::sample_notification();
    let mut out = Vec::new();
    for (receiver, list) in &rt.receivers {
        for i in list {
            if let crate::channels::Kind::OfficialAccount(o) = &i.kind {
                for w in o.unfit_fields(&env, &sample) {
                    out.push(format!(
                        "receivers[{receiver}]: warning: the sample notification does not fit: {w}; an alert that does not fit either is sent with a placeholder"
                    ));
                }
            }
        }
    }
    out
}

/// Things that are valid but probably wrong, printed by `check-config` without failing it.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = crate::config::chatops::warnings(config);
    for (i, r) in config.receivers.iter().enumerate() {
        for (key, c) in r.integrations() {
            out.extend(c.warnings(&config.source, &format!("receivers[{i}].{key}")));
        }
    }
    out
}

pub use crate::runtime::{RenderError, Rendered};

/// `render`: the exact requests each routed receiver integration would send, secrets masked.
pub fn render(
    rt: &Runtime,
    payload: &[u8],
    receiver: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Rendered>, String> {
    rt.render(payload, receiver, now).map_err(|e| e.to_string())
}

/// Human-readable `render` output: a header per integration, then each request.
pub fn format_rendered(list: &[Rendered]) -> String {
    let mut out = String::new();
    for r in list {
        out.push_str(&format!("# receiver {} · {}\n", r.receiver, r.integration));
        for req in &r.requests {
            out.push_str(&format!("{} {}\n", req.method, req.url));
            match &req.body {
                serde_json::Value::String(s) => out.push_str(s),
                body => out.push_str(&serde_json::to_string_pretty(body).unwrap_or_default()),
            }
            out.push_str("\n\n");
        }
    }
    out
}

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

/// What `deadletters` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterAction {
    List,
    Show(i64),
    /// `None`: all of them.
    Replay(Option<i64>),
    Purge,
}

/// `deadletters list|show ID|replay ID|replay --all|purge` against the configured store.
pub async fn deadletters(store: &crate::store::Store, action: DeadLetterAction) -> (String, bool) {
    use std::fmt::Write;
    let mut out = String::new();
    match action {
        DeadLetterAction::List => match dead_letter_items(store).await {
            Ok(list) if list.is_empty() => out.push_str("no dead letters\n"),
            Ok(list) => {
                let _ = writeln!(
                    out,
                    "{:<8} {:<25} {:<24} {:>8} {:>6}  LAST ERROR",
                    "ID", "FAILED AT", "RECEIVER", "ALERTS", "TRIES"
                );
                // Upstream errors and payload text may hold terminal escapes and bidi
                // characters: shown inert, as the logs and the 400 answers show them.
                use crate::webhook::escape_controls as inert;
                for j in list {
                    let _ = writeln!(
                        out,
                        "{:<8} {:<25} {:<24} {:>8} {:>6}  {}",
                        j.id,
                        j.failed_at
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                            .unwrap_or_default(),
                        inert(&format!("{}/{}", j.receiver, j.kind)),
                        j.alerts,
                        j.attempts,
                        inert(&j.last_error)
                    );
                }
            }
            Err(e) => return (format!("{e}\n"), false),
        },
        DeadLetterAction::Show(id) => match store.dead_letters().await {
            Ok(list) => match list.into_iter().find(|j| j.id == id) {
                Some(j) => {
                    use crate::webhook::escape_controls as inert;
                    let _ = writeln!(out, "id: {}", j.id);
                    let _ = writeln!(out, "receiver: {}", inert(&j.receiver));
                    let _ = writeln!(out, "integration: {} ({})", j.kind, j.integration);
                    let _ = writeln!(out, "fallback: {}", j.fallback);
                    let _ = writeln!(out, "accepted_at: {}", j.accepted_at.to_rfc3339());
                    if let Some(t) = j.failed_at {
                        let _ = writeln!(out, "failed_at: {}", t.to_rfc3339());
                    }
                    let _ = writeln!(out, "attempts: {}", j.attempt);
                    let _ = writeln!(out, "reason: {}", inert(&j.reason.unwrap_or_default()));
                    let _ = writeln!(
                        out,
                        "last_error: {}",
                        inert(&j.last_error.unwrap_or_default())
                    );
                    let _ = writeln!(
                        out,
                        "delivered_to: {}",
                        inert(&j.progress.stored().join(", "))
                    );
                    // JSON escapes C0 controls in strings, not C1 or bidi characters.
                    let json = serde_json::to_string_pretty(&*j.notification).unwrap_or_default();
                    let json: Vec<String> = json.lines().map(inert).collect();
                    let _ = writeln!(out, "notification: {}", json.join("\n"));
                }
                None => return (format!("no dead letter {id}\n"), false),
            },
            Err(e) => return (format!("{e}\n"), false),
        },
        DeadLetterAction::Replay(id) => match replay(store, id).await {
            Ok(0) if id.is_some() => {
                return (
                    format!("no dead letter {}\n", id.unwrap_or_default()),
                    false,
                );
            }
            Ok(n) => {
                let _ = writeln!(out, "re-queued {n} dead letters");
            }
            Err(e) => return (format!("{e}\n"), false),
        },
        DeadLetterAction::Purge => match store.purge().await {
            Ok(n) => {
                let _ = writeln!(out, "deleted {n} dead letters");
            }
            Err(e) => return (format!("{e}\n"), false),
        },
    }
    (out, true)
}

/// One dead letter as `deadletters list` and `GET /api/v1/deadletters` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetterItem {
    pub id: i64,
    pub receiver: String,
    pub kind: String,
    /// The integration's identity (what it sends to; no secret).
    pub integration: String,
    pub alerts: usize,
    pub alertnames: Vec<String>,
    pub attempts: u32,
    pub reason: String,
    /// Scrubbed of secrets when recorded; on one line.
    pub last_error: String,
    pub accepted_at: DateTime<Utc>,
    pub failed_at: Option<DateTime<Utc>>,
    pub fallback: bool,
}

/// Every dead letter, oldest first.
pub async fn dead_letter_items(
    store: &crate::store::Store,
) -> Result<Vec<DeadLetterItem>, crate::store::StoreError> {
    Ok(store
        .dead_letters()
        .await?
        .into_iter()
        .map(|j| {
            let mut alertnames: Vec<String> = j
                .notification
                .alerts
                .iter()
                .filter_map(|a| a.labels.get("alertname").cloned())
                .collect();
            alertnames.sort();
            alertnames.dedup();
            DeadLetterItem {
                id: j.id,
                receiver: j.receiver,
                kind: j.kind,
                integration: j.integration.0,
                alerts: j.notification.alerts.len(),
                alertnames,
                attempts: j.attempt,
                reason: j.reason.unwrap_or_default(),
                last_error: crate::text::one_line(j.last_error.as_deref().unwrap_or("")),
                accepted_at: j.accepted_at,
                failed_at: j.failed_at,
                fallback: j.fallback,
            }
        })
        .collect())
}

/// Re-queues one dead letter (or all), recording it in the delivery history; how many.
pub async fn replay(
    store: &crate::store::Store,
    id: Option<i64>,
) -> Result<u64, crate::store::StoreError> {
    crate::delivery::replay_dead_letters(store, id).await
}

/// What `subscribers` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberAction {
    List,
    /// Forget every subscription of this UID.
    Remove(String),
}

/// `subscribers list|remove UID` against the configured store: the WxPusher UIDs learned from
/// `app_subscribe` callbacks, which `subscriber_tags` send to.
pub async fn subscribers(store: &crate::store::Store, action: SubscriberAction) -> (String, bool) {
    use std::fmt::Write;
    let mut out = String::new();
    match action {
        SubscriberAction::List => match store.subscriber_list().await {
            Ok(list) if list.is_empty() => out.push_str("no subscribers\n"),
            Ok(list) => {
                let _ = writeln!(out, "{:<25} {:<40} TAG", "SUBSCRIBED AT", "UID");
                for s in list {
                    let _ = writeln!(
                        out,
                        "{:<25} {:<40} {}",
                        s.subscribed_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        crate::text::one_line(&s.uid),
                        if s.extra.is_empty() {
                            "-".to_string()
                        } else {
                            crate::text::one_line(&s.extra)
                        }
                    );
                }
            }
            Err(e) => return (format!("{e}\n"), false),
        },
        SubscriberAction::Remove(uid) => match store.subscriber_remove(uid.clone()).await {
            Ok(0) => return (format!("no subscriber {uid}\n"), false),
            Ok(n) => {
                let _ = writeln!(out, "removed {uid} ({n} subscriptions)");
            }
            Err(e) => return (format!("{e}\n"), false),
        },
    }
    (out, true)
}

/// Longest validity WxPusher gives a parameter QR code.
pub const QRCODE_MAX_VALID: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// What `qrcode` prints: the URL to share on stdout, notes on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCodeOutput {
    pub url: String,
    pub notes: Vec<String>,
}

/// `qrcode --receiver=NAME --extra=TAG [--valid=30d]`: a WxPusher parameter QR code for the
/// receiver's (first) WxPusher app; whoever subscribes through it is stored with `extra` and
/// gets the alerts of every WxPusher config whose `subscriber_tags` name it.
pub async fn qrcode(
    rt: &Runtime,
    receiver: &str,
    extra: &str,
    valid: std::time::Duration,
) -> Result<QrCodeOutput, String> {
    use crate::channels::Kind;
    let list = rt
        .receivers
        .get(receiver)
        .ok_or_else(|| format!("unknown receiver {receiver:?}"))?;
    let w = list
        .iter()
        .find_map(|i| match &i.kind {
            // A QR code needs an app token; simple push has none.
            Kind::WxPusher(w) if !w.is_simple() => Some(w),
            _ => None,
        })
        .ok_or_else(|| format!("receiver {receiver:?} has no wxpusher_configs"))?;
    let max_tag = crate::config::chatops::MAX_TAG;
    if extra.trim().is_empty() || extra.chars().count() > max_tag {
        return Err(format!("--extra must be 1 to {max_tag} characters"));
    }
    if valid.as_secs() == 0 || valid > QRCODE_MAX_VALID {
        return Err("--valid must be between 1s and 30d".into());
    }
    let mut notes = Vec::new();
    if !w.subscriber_tags.iter().any(|t| t == extra) {
        notes.push(format!(
            "warning: receiver {receiver:?} has no wxpusher_configs with subscriber_tags: [{extra}]; subscribers through this code get nothing until one does"
        ));
    }
    let code = crate::chatops::upstream::create_qrcode(
        &rt.client,
        &w.api_url,
        &w.app_token,
        extra,
        valid.as_secs(),
        &rt.scrubber,
    )
    .await
    .map_err(|e| rt.scrubber.scrub(&e.to_string()))?;
    if !code.short_url.is_empty() {
        notes.push(format!("short URL: {}", code.short_url));
    }
    if let Some(t) =
        DateTime::<Utc>::from_timestamp_millis(code.expires).filter(|_| code.expires > 0)
    {
        notes.push(format!(
            "expires: {}",
            t.with_timezone(&rt.templates.timezone()).to_rfc3339()
        ));
    }
    Ok(QrCodeOutput {
        url: code.url,
        notes,
    })
}
