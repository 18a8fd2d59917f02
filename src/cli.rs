//! The commands SREs run beside the server: `check-config`, `render`, `send-test`, `deadletters`,
//! `subscribers` and `qrcode`.
//!
//! They return what to print and an exit status; `main.rs` only parses arguments and prints.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::{Config, ConfigErrors};
use crate::runtime::Runtime;

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

/// What the sample notification says about the templates: fields it does not fit
/// ([`crate::channels::Integration::unfit_fields`]). A warning only: real alerts may carry what the sample lacks (a label), and a
/// field that does not fit at send time is sent with a placeholder.
fn sample_warnings(rt: &Runtime) -> Vec<String> {
    let env = rt.env(chrono::Utc::now());
    let sample = crate::webhook::sample_notification();
    let mut out = Vec::new();
    for (receiver, list) in &rt.receivers {
        for i in list {
            for w in i.unfit_fields(&env, &sample) {
                out.push(format!(
                    "receivers[{receiver}]: warning: the sample notification does not fit: {w}; an alert that does not fit either is sent with a placeholder"
                ));
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

/// `render --person=NAME`: the page each of the person's contacts would get (a sample incident
/// at step 1), secrets masked.
pub fn render_person(
    rt: &Runtime,
    person: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Rendered>, String> {
    crate::incident::render::render_person(rt, person, now).map_err(|e| e.to_string())
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

pub use crate::delivery::{send_test, test_notification};

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

pub use crate::delivery::{DeadLetterItem, dead_letter_items};

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
pub const QRCODE_MAX_VALID: std::time::Duration = crate::channels::SUBSCRIPTION_CODE_MAX_VALID;

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
    let list = rt
        .receivers
        .get(receiver)
        .ok_or_else(|| format!("unknown receiver {receiver:?}"))?;
    let (code, mut notes) =
        crate::channels::subscription_code(&rt.client, &rt.scrubber, receiver, list, extra, valid)
            .await?;
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
