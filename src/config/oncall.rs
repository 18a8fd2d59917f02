//! The on-call parts of the configuration: `time_intervals`, `oncall`, `people`, `schedules`,
//! `escalation_policies` and the `escalation_policy` of routes and receivers; their types and
//! the checks that tie their names together. The time interval and schedule types themselves
//! are [`crate::oncall`]'s.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Config, check_http_url, resolve_secret};
use crate::route::RouteConfig;
use crate::secret::Secret;

/// The contact kinds a person may have, in the order they are listed.
pub const CONTACT_KINDS: [&str; 5] = [
    "wxpusher",
    "wecom_app",
    "weixin_gateway",
    "official_account",
    "voice",
];

/// The `oncall:` block: where people's phones reach the service and how its links are signed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OncallConfig {
    /// The external base of one-tap links (`{public_url}/ack/{token}`).
    pub public_url: Option<String>,
    /// Signs one-tap links; rotating it voids the links already sent.
    pub link_secret: Option<Secret>,
    pub link_secret_file: Option<PathBuf>,
    /// How long a one-tap link stays valid.
    #[serde(default = "default_link_ttl", with = "humantime_serde")]
    pub link_ttl: Duration,
}

fn default_link_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Someone who can be on call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub name: String,
    pub display_name: Option<String>,
    #[serde(default)]
    pub contacts: Contacts,
    /// Personal rules, from the moment they are paged; none means every non-voice contact.
    #[serde(default)]
    pub notify: Vec<NotifyRule>,
    pub quiet_hours: Option<QuietHours>,
}

/// How a person is reached, per contact kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contacts {
    pub wxpusher: Option<WxPusherContact>,
    pub wecom_app: Option<WecomAppContact>,
    pub weixin_gateway: Option<WeixinGatewayContact>,
    pub official_account: Option<OfficialAccountContact>,
    pub voice: Option<VoiceContact>,
}

impl Contacts {
    /// Whether the contact of this kind is given.
    pub fn has(&self, kind: &str) -> bool {
        match kind {
            "wxpusher" => self.wxpusher.is_some(),
            "wecom_app" => self.wecom_app.is_some(),
            "weixin_gateway" => self.weixin_gateway.is_some(),
            "official_account" => self.official_account.is_some(),
            "voice" => self.voice.is_some(),
            _ => false,
        }
    }

    /// The kinds given, in [`CONTACT_KINDS`] order.
    pub fn kinds(&self) -> Vec<&'static str> {
        CONTACT_KINDS.into_iter().filter(|k| self.has(k)).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WxPusherContact {
    pub uid: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomAppContact {
    pub userid: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeixinGatewayContact {
    pub user_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialAccountContact {
    pub openid: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceContact {
    /// E.164 (`+8613800000000`).
    pub number: String,
}

/// One personal rule: page this contact, after `delay`, for these severities (all when empty).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRule {
    pub contact: String,
    #[serde(default, with = "humantime_serde")]
    pub delay: Duration,
    #[serde(default)]
    pub severity: Vec<String>,
}

/// When pages are held back, except for these severities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub time_intervals: Vec<String>,
    #[serde(default)]
    pub except_severity: Vec<String>,
}

/// Who is paged, step by step, until someone acknowledges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    pub name: String,
    /// Further passes over the steps while unacknowledged.
    #[serde(default)]
    pub repeat: u32,
    /// Acknowledged but still firing after this long: triggered again.
    #[serde(default, with = "humantime_serde")]
    pub ack_timeout: Option<Duration>,
    /// New alerts in an acknowledged incident trigger it again.
    #[serde(default)]
    pub retrigger_on_new_alerts: bool,
    pub steps: Vec<Step>,
}

/// One step: who is paged at once, and when the next step follows if nobody acknowledged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub notify: Vec<Target>,
    #[serde(with = "humantime_serde")]
    pub escalate_after: Duration,
}

/// Exactly one of `schedule`, `person` and `receiver`; `contacts` only with `person`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub schedule: Option<String>,
    pub person: Option<String>,
    /// Filters the person's `notify` rules to these kinds.
    pub contacts: Option<Vec<String>>,
    pub receiver: Option<String>,
}

/// Whether `n` is an E.164 number: `+`, a non-zero digit, at most 15 digits in all.
fn is_e164(n: &str) -> bool {
    let Some(digits) = n.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Reports the duplicates (and empty names) of a list's `name`s; returns the set of names.
fn names<'a>(
    list: &str,
    what: &str,
    items: impl Iterator<Item = &'a str>,
    report: &mut dyn FnMut(String, String),
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (i, name) in items.enumerate() {
        if name.is_empty() {
            report(format!("{list}[{i}].name"), "must not be empty".into());
        } else if !seen.insert(name) {
            report(
                format!("{list}[{i}].name"),
                format!("duplicate {what} name {name:?}"),
            );
        }
    }
    seen
}

/// A contact kind named in a rule or a step: known, and one the person has.
fn check_contact(at: String, kind: &str, person: &Person, report: &mut dyn FnMut(String, String)) {
    if !CONTACT_KINDS.contains(&kind) {
        report(
            at,
            format!(
                "unknown contact kind {kind:?} (one of {})",
                CONTACT_KINDS.join(", ")
            ),
        );
    } else if !person.contacts.has(kind) {
        report(at, format!("{:?} has no {kind} contact", person.name));
    }
}

fn check_routes(
    at: &str,
    route: &RouteConfig,
    policies: &HashSet<&str>,
    report: &mut dyn FnMut(String, String),
) {
    if let Some(p) = &route.escalation_policy
        && !policies.contains(p.as_str())
    {
        report(
            format!("{at}.escalation_policy"),
            format!("unknown escalation policy {p:?}"),
        );
    }
    for (i, child) in route.routes.iter().enumerate() {
        check_routes(&format!("{at}.routes[{i}]"), child, policies, report);
    }
}

/// Reads the `oncall` block's secret and checks every on-call name and reference.
pub(crate) fn check(config: &mut Config, base: &Path, report: &mut dyn FnMut(String, String)) {
    if let Some(o) = &mut config.oncall {
        if let Some(url) = &o.public_url
            && let Err(m) = check_http_url(url)
        {
            report("oncall.public_url".into(), m);
        }
        resolve_secret(
            base,
            "oncall",
            "link_secret",
            &mut o.link_secret,
            &o.link_secret_file,
            false,
            report,
        );
        if o.link_ttl.is_zero() {
            report("oncall.link_ttl".into(), "must be longer than zero".into());
        }
    }
    let config = &*config;
    let intervals = names(
        "time_intervals",
        "time interval",
        config.time_intervals.iter().map(|t| t.name.as_str()),
        report,
    );
    let people = names(
        "people",
        "person",
        config.people.iter().map(|p| p.name.as_str()),
        report,
    );
    let schedules = names(
        "schedules",
        "schedule",
        config.schedules.iter().map(|s| s.name.as_str()),
        report,
    );
    let policies = names(
        "escalation_policies",
        "escalation policy",
        config.escalation_policies.iter().map(|p| p.name.as_str()),
        report,
    );
    let receivers: HashSet<&str> = config.receivers.iter().map(|r| r.name.as_str()).collect();

    for (i, p) in config.people.iter().enumerate() {
        let at = format!("people[{i}]");
        if p.contacts.kinds().is_empty() {
            report(
                format!("{at}.contacts"),
                format!(
                    "{:?} has no contact: give at least one of {}",
                    p.name,
                    CONTACT_KINDS.join(", ")
                ),
            );
        }
        if let Some(v) = &p.contacts.voice
            && !is_e164(&v.number)
        {
            report(
                format!("{at}.contacts.voice.number"),
                format!(
                    "{:?} is not an E.164 number (+, country code, number: +8613800000000)",
                    v.number
                ),
            );
        }
        for (j, rule) in p.notify.iter().enumerate() {
            check_contact(
                format!("{at}.notify[{j}].contact"),
                &rule.contact,
                p,
                report,
            );
        }
        if let Some(q) = &p.quiet_hours {
            for (j, name) in q.time_intervals.iter().enumerate() {
                if !intervals.contains(name.as_str()) {
                    report(
                        format!("{at}.quiet_hours.time_intervals[{j}]"),
                        format!("unknown time interval {name:?}"),
                    );
                }
            }
        }
    }

    for (i, s) in config.schedules.iter().enumerate() {
        let at = format!("schedules[{i}].rotation.people");
        if s.rotation.people.is_empty() {
            report(
                at.clone(),
                format!("schedule {:?} has nobody on it", s.name),
            );
        }
        for (j, name) in s.rotation.people.iter().enumerate() {
            if !people.contains(name.as_str()) {
                report(format!("{at}[{j}]"), format!("unknown person {name:?}"));
            }
        }
    }

    for (i, policy) in config.escalation_policies.iter().enumerate() {
        let at = format!("escalation_policies[{i}]");
        if policy.steps.is_empty() {
            report(format!("{at}.steps"), "needs at least one step".into());
        }
        for (j, step) in policy.steps.iter().enumerate() {
            let at = format!("{at}.steps[{j}]");
            if step.escalate_after < Duration::from_secs(1) {
                report(format!("{at}.escalate_after"), "must be at least 1s".into());
            }
            if step.notify.is_empty() {
                report(
                    format!("{at}.notify"),
                    "needs at least one of schedule, person and receiver".into(),
                );
            }
            for (k, t) in step.notify.iter().enumerate() {
                let at = format!("{at}.notify[{k}]");
                let given = [&t.schedule, &t.person, &t.receiver]
                    .iter()
                    .filter(|x| x.is_some())
                    .count();
                if given != 1 {
                    report(
                        at.clone(),
                        "needs exactly one of schedule, person and receiver".into(),
                    );
                }
                if t.contacts.is_some() && t.person.is_none() {
                    report(
                        format!("{at}.contacts"),
                        "only a person target may list contacts".into(),
                    );
                }
                if let Some(s) = &t.schedule
                    && !schedules.contains(s.as_str())
                {
                    report(format!("{at}.schedule"), format!("unknown schedule {s:?}"));
                }
                if let Some(r) = &t.receiver
                    && !receivers.contains(r.as_str())
                {
                    report(format!("{at}.receiver"), format!("unknown receiver {r:?}"));
                }
                if let Some(name) = &t.person {
                    match config.people.iter().find(|p| &p.name == name) {
                        None => report(format!("{at}.person"), format!("unknown person {name:?}")),
                        Some(p) => {
                            for (c, kind) in t.contacts.iter().flatten().enumerate() {
                                check_contact(format!("{at}.contacts[{c}]"), kind, p, report);
                            }
                        }
                    }
                }
            }
        }
    }

    check_routes("route", &config.route, &policies, report);
    for (i, r) in config.receivers.iter().enumerate() {
        if let Some(p) = &r.escalation_policy
            && !policies.contains(p.as_str())
        {
            report(
                format!("receivers[{i}].escalation_policy"),
                format!("unknown escalation policy {p:?}"),
            );
        }
    }
}

/// Every secret of the on-call blocks, for scrubbing.
pub(crate) fn secrets(config: &Config) -> Vec<Secret> {
    config
        .oncall
        .iter()
        .flat_map(|o| o.link_secret.clone())
        .collect()
}
