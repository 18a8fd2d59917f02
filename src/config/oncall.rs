//! The on-call parts of the configuration: `time_intervals`, `oncall`, `people`, `schedules`,
//! `escalation_policies` and the `escalation_policy` of routes and receivers; their types and
//! the checks that tie their names together. The time interval and schedule types themselves
//! are [`crate::oncall`]'s.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Config, check_http_url, resolve_secret};
pub use crate::channels::{CONTACT_KINDS, ContactEntry, Contacts, OncallChannels};
use crate::channels::{Check, paged_by_default};
use crate::route::RouteConfig;
use crate::secret::Secret;

/// Receiver names starting with this are people's contacts (where pages are stored); no
/// configured receiver may be named so.
pub const CONTACT_PREFIX: &str = "oncall:";

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
    /// How people are reached: per contact kind, a `*_configs` entry without recipients.
    #[serde(default)]
    pub channels: OncallChannels,
    /// Each person's contacts as channel entries (the kind's `channels` entry with the
    /// person's recipient), made by the check: what the runtime builds pages from.
    #[serde(skip)]
    pub contacts: Vec<PersonContact>,
    /// The secrets the channel entries read, for scrubbing.
    #[serde(skip)]
    pub channel_secrets: Vec<Secret>,
}

/// One person's contact of one kind, ready to be built into an integration.
#[derive(Debug, Clone)]
pub struct PersonContact {
    pub person: String,
    pub kind: &'static str,
    /// Where the contact is in the config (`people[0].contacts.wecom_app`).
    pub at: String,
    pub entry: ContactEntry,
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
    contact_entries(config, base, report);
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
        p.contacts.check(&format!("{at}.contacts"), report);
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
        if r.name.starts_with(CONTACT_PREFIX) {
            report(
                format!("receivers[{i}].name"),
                format!(
                    "{:?}: names starting with {:?} are people's contacts",
                    r.name, CONTACT_PREFIX
                ),
            );
        }
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

/// Checks `oncall.channels` and makes each person's contacts into channel entries
/// ([`OncallConfig::contacts`]); reports a contact whose kind has no channel entry and a
/// person left with no usable contact.
fn contact_entries(config: &mut Config, base: &Path, report: &mut dyn FnMut(String, String)) {
    let globals = config.channel_globals();
    let mut secrets = Vec::new();
    let mut entries: Vec<(&'static str, Option<ContactEntry>)> = Vec::new();
    if let Some(o) = &config.oncall {
        for &kind in CONTACT_KINDS {
            if let Some(v) = o.channels.get(kind) {
                let mut cx = Check {
                    base,
                    at: format!("oncall.channels.{kind}"),
                    globals: &globals,
                    report,
                    secrets: &mut secrets,
                };
                entries.push((kind, ContactEntry::read(kind, v, &mut cx)));
            }
        }
    }
    let mut contacts = Vec::new();
    for (i, p) in config.people.iter().enumerate() {
        let mut usable = false;
        for kind in p.contacts.kinds() {
            let at = format!("people[{i}].contacts.{kind}");
            match entries.iter().find(|(k, _)| *k == kind) {
                None => report(
                    at,
                    format!("no oncall.channels.{kind} entry to reach this contact through"),
                ),
                Some((_, None)) => {}
                Some((_, Some(entry))) => {
                    usable = true;
                    let recipient = p.contacts.recipient(kind).unwrap_or_default();
                    if recipient.trim().is_empty() {
                        report(at.clone(), "the recipient must not be empty".into());
                    }
                    contacts.push(PersonContact {
                        person: p.name.clone(),
                        kind,
                        at,
                        entry: entry.to(recipient),
                    });
                }
            }
        }
        let has_channel_kinds = p.contacts.kinds().iter().any(|k| paged_by_default(k));
        if !usable && has_channel_kinds {
            report(
                format!("people[{i}].contacts"),
                format!(
                    "{:?} has no usable contact: no contact kind of theirs has an oncall.channels entry",
                    p.name
                ),
            );
        }
    }
    if let Some(o) = &mut config.oncall {
        o.contacts = contacts;
        o.channel_secrets = secrets;
    }
}

/// Every secret of the on-call blocks, for scrubbing.
pub(crate) fn secrets(config: &Config) -> Vec<Secret> {
    config
        .oncall
        .iter()
        .flat_map(|o| o.link_secret.iter().chain(&o.channel_secrets).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "route: {receiver: a}\nreceivers: [{name: a}]\n";

    fn parse(text: &str) -> Result<Config, super::super::ConfigErrors> {
        Config::parse(text, "test.yml", Path::new("."))
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str = r#"
time_intervals:
  - name: night
    time_intervals:
      - times: [ {start_time: "23:00", end_time: "24:00"}, {start_time: "00:00", end_time: "08:00"} ]
        location: Asia/Shanghai
oncall:
  public_url: https://alerts.example.com
  link_secret: s3cret-link-key
  link_ttl: 12h
  channels:
    wxpusher: { app_token: AT_s3cret-wxpusher }
    wecom_app: { corp_id: ww0123, agent_id: 1000002, api_secret: s3cret-wecom-app }
    official_account: { app_id: wx0123, app_secret: s3cret-oa, kind: template, template_id: T }
    weixin_gateway: { url: "http://weixin-gateway:8787", account_id: wx-account-1 }
    voice: { provider: aliyun, access_key_id: LTAI4x, access_key_secret: s3cret-aliyun,
             called_show_number: "057100000000", start_code: TTS_1, ack_code: TTS_2,
             callback_secret: s3cret-voice-callback-path }
people:
  - name: zhangsan
    display_name: 张三
    contacts:
      wxpusher: { uid: UID_xxx }
      wecom_app: { userid: ZhangSan }
      weixin_gateway: { user_id: o9cq80xxx@im.wechat }
      official_account: { openid: oXXXX }
      voice: { number: "+8613800000000" }
    notify:
      - { contact: wecom_app }
      - { contact: voice, delay: 10m, severity: [critical] }
    quiet_hours: { time_intervals: [ night ], except_severity: [ critical ] }
  - { name: lisi, contacts: { wecom_app: { userid: LiSi } } }
schedules:
  - name: sre-primary
    time_zone: Asia/Shanghai
    rotation: { every: 1w, handoff: 2026-01-05T10:00:00+08:00, people: [ zhangsan, lisi ] }
escalation_policies:
  - name: sre-critical
    repeat: 2
    ack_timeout: 2h
    steps:
      - notify: [ {schedule: sre-primary}, {receiver: a} ]
        escalate_after: 10m
      - notify: [ {person: zhangsan, contacts: [voice]} ]
        escalate_after: 1s
route:
  receiver: a
  escalation_policy: sre-critical
  routes:
    - { matchers: [ 'severity="critical"' ], receiver: a, escalation_policy: sre-critical }
receivers:
  - { name: a, escalation_policy: sre-critical }
"#;

    #[test]
    fn the_full_example_loads() {
        let c = match parse(GOOD) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.time_intervals[0].name, "night");
        assert_eq!(c.people[0].contacts.kinds(), CONTACT_KINDS);
        assert_eq!(c.people[0].notify[1].delay, Duration::from_secs(600));
        assert_eq!(c.people[1].contacts.kinds(), ["wecom_app"]);
        assert_eq!(c.schedules[0].rotation.people, ["zhangsan", "lisi"]);
        let p = &c.escalation_policies[0];
        assert_eq!(
            (p.repeat, p.ack_timeout),
            (2, Some(Duration::from_secs(7200)))
        );
        assert!(!p.retrigger_on_new_alerts);
        assert_eq!(p.steps[1].escalate_after, Duration::from_secs(1));
        let o = c.oncall.as_ref().map(|o| o.link_ttl);
        assert_eq!(o, Some(Duration::from_secs(12 * 3600)));
        assert_eq!(
            c.route.routes[0].escalation_policy.as_deref(),
            Some("sre-critical")
        );
        assert_eq!(
            c.receivers[0].escalation_policy.as_deref(),
            Some("sre-critical")
        );
        let secrets: Vec<String> = c.secrets().iter().map(|s| s.expose().to_string()).collect();
        assert!(secrets.contains(&"s3cret-link-key".to_string()));
        assert!(secrets.contains(&"s3cret-aliyun".to_string()));
        assert!(secrets.contains(&"s3cret-voice-callback-path".to_string()));
        // The voice contact is an entry like the others, calling the person's number.
        let voice = c
            .oncall
            .iter()
            .flat_map(|o| &o.contacts)
            .find(|p| p.kind == "voice");
        match voice.map(|v| (&v.person, &v.at, &v.entry)) {
            Some((person, at, ContactEntry::Voice(v))) => {
                assert_eq!(person, "zhangsan");
                assert_eq!(at, "people[0].contacts.voice");
                assert_eq!(v.number, "+8613800000000");
            }
            other => panic!("no voice contact: {other:?}"),
        }
    }

    #[test]
    fn a_broken_voice_entry_is_named_with_its_path() {
        let text = r#"
oncall:
  channels:
    voice: { provider: tencent, secret_id: AKID, secret_key: s3cret-key, sdk_app_id: "1400", template_id: "12",
             callback_secret: s3cret-voice-callback-path, start_code: TTS_1 }
people:
  - { name: zhangsan, contacts: { voice: { number: "+8613800000000" } } }
route: { receiver: a }
receivers: [ { name: a } ]
"#;
        assert_eq!(
            errors(text),
            ["test.yml: oncall.channels.voice.start_code: does not apply to provider tencent"]
        );
        let text = r#"
oncall:
  channels:
    voice: { provider: aliyun, access_key_id: LTAI4x, access_key_secret: s3cret-key, called_show_number: "0571",
             start_code: TTS_1, ack_code: TTS_2, callback_secret: s3cret-voice-callback-path, numbr: x }
people:
  - { name: zhangsan, contacts: { voice: { number: "+8613800000000" } } }
route: { receiver: a }
receivers: [ { name: a } ]
"#;
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("test.yml: oncall.channels.voice.numbr: unknown field `numbr`"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_broken_reference_is_named_with_its_path() {
        let text = r#"
time_intervals:
  - { name: night }
  - { name: night }
people:
  - name: zhangsan
    contacts: { wecom_app: { userid: Z }, voice: { number: "13800000000" } }
    notify: [ {contact: wxpusher}, {contact: sms} ]
    quiet_hours: { time_intervals: [ day ] }
  - { name: lisi }
  - { name: zhangsan, contacts: { wxpusher: { uid: U } } }
schedules:
  - { name: s, time_zone: UTC, rotation: { every: 1d, handoff: 2026-01-01T00:00:00Z, people: [] } }
  - { name: t, time_zone: UTC, rotation: { every: 1d, handoff: 2026-01-01T00:00:00Z, people: [nobody] } }
  - { name: s, time_zone: UTC, rotation: { every: 1d, handoff: 2026-01-01T00:00:00Z, people: [lisi] } }
escalation_policies:
  - name: p
    steps:
      - notify: [ {schedule: nope}, {receiver: gone}, {person: ghost}, {person: zhangsan, contacts: [official_account, pager]} ]
        escalate_after: 500ms
      - notify: [ {schedule: s, person: lisi}, {receiver: a, contacts: [voice]} ]
        escalate_after: 1m
      - notify: []
        escalate_after: 1m
  - { name: empty, steps: [] }
  - { name: p, steps: [ { notify: [ {receiver: a} ], escalate_after: 1m } ] }
route:
  receiver: a
  escalation_policy: missing
  routes: [ { receiver: a, escalation_policy: other } ]
receivers: [ { name: a, escalation_policy: absent } ]
"#;
        assert_eq!(
            errors(text),
            [
                "test.yml: people[0].contacts.wecom_app: no oncall.channels.wecom_app entry to reach this contact through",
                "test.yml: people[0].contacts.voice: no oncall.channels.voice entry to reach this contact through",
                "test.yml: people[0].contacts: \"zhangsan\" has no usable contact: no contact kind of theirs has an oncall.channels entry",
                "test.yml: people[2].contacts.wxpusher: no oncall.channels.wxpusher entry to reach this contact through",
                "test.yml: people[2].contacts: \"zhangsan\" has no usable contact: no contact kind of theirs has an oncall.channels entry",
                "test.yml: time_intervals[1].name: duplicate time interval name \"night\"",
                "test.yml: people[2].name: duplicate person name \"zhangsan\"",
                "test.yml: schedules[2].name: duplicate schedule name \"s\"",
                "test.yml: escalation_policies[2].name: duplicate escalation policy name \"p\"",
                "test.yml: people[0].contacts.voice.number: \"13800000000\" is not an E.164 number (+, country code, number: +8613800000000)",
                "test.yml: people[0].notify[0].contact: \"zhangsan\" has no wxpusher contact",
                "test.yml: people[0].notify[1].contact: unknown contact kind \"sms\" (one of wxpusher, wecom_app, weixin_gateway, official_account, voice)",
                "test.yml: people[0].quiet_hours.time_intervals[0]: unknown time interval \"day\"",
                "test.yml: people[1].contacts: \"lisi\" has no contact: give at least one of wxpusher, wecom_app, weixin_gateway, official_account, voice",
                "test.yml: schedules[0].rotation.people: schedule \"s\" has nobody on it",
                "test.yml: schedules[1].rotation.people[0]: unknown person \"nobody\"",
                "test.yml: escalation_policies[0].steps[0].escalate_after: must be at least 1s",
                "test.yml: escalation_policies[0].steps[0].notify[0].schedule: unknown schedule \"nope\"",
                "test.yml: escalation_policies[0].steps[0].notify[1].receiver: unknown receiver \"gone\"",
                "test.yml: escalation_policies[0].steps[0].notify[2].person: unknown person \"ghost\"",
                "test.yml: escalation_policies[0].steps[0].notify[3].contacts[0]: \"zhangsan\" has no official_account contact",
                "test.yml: escalation_policies[0].steps[0].notify[3].contacts[1]: unknown contact kind \"pager\" (one of wxpusher, wecom_app, weixin_gateway, official_account, voice)",
                "test.yml: escalation_policies[0].steps[1].notify[0]: needs exactly one of schedule, person and receiver",
                "test.yml: escalation_policies[0].steps[1].notify[1].contacts: only a person target may list contacts",
                "test.yml: escalation_policies[0].steps[2].notify: needs at least one of schedule, person and receiver",
                "test.yml: escalation_policies[1].steps: needs at least one step",
                "test.yml: route.escalation_policy: unknown escalation policy \"missing\"",
                "test.yml: route.routes[0].escalation_policy: unknown escalation policy \"other\"",
                "test.yml: receivers[0].escalation_policy: unknown escalation policy \"absent\"",
            ]
        );
    }

    #[test]
    fn structural_mistakes_are_refused_with_their_path() {
        let e = errors(&format!(
            "people: [ {{ name: x, contacts: {{ sms: {{ number: '+861' }} }} }} ]\n{BASE}"
        ));
        assert!(
            e[0].starts_with("test.yml: people[0].contacts.sms: unknown field `sms`"),
            "{e:?}"
        );
        let e = errors(&format!(
            "schedules: [ {{ name: s, time_zone: UTC, rotation: {{ every: 1m, handoff: 2026-01-01T00:00:00Z, people: [x] }} }} ]\n{BASE}"
        ));
        assert!(
            e[0].starts_with("test.yml: schedules[0].rotation.every: \"1m\" is not a shift length"),
            "{e:?}"
        );
        let e = errors(&format!(
            "time_intervals: [ {{ name: n, time_intervals: [ {{ weekdays: ['friday:monday'] }} ] }} ]\n{BASE}"
        ));
        assert!(
            e[0].starts_with(
                "test.yml: time_intervals[0].time_intervals[0].weekdays[0]: \"friday:monday\""
            ),
            "{e:?}"
        );
        let e = errors(&format!(
            "oncall: {{ public_url: https://x.example, channels: {{ sms: {{}} }} }}\n{BASE}"
        ));
        assert!(
            e[0].starts_with("test.yml: oncall.channels.sms: unknown field `sms`"),
            "{e:?}"
        );
        // A channel entry is checked as the channel's own, and leaves recipients to people.
        let e = errors(&format!(
            "oncall: {{ channels: {{ wxpusher: {{ app_token: AT_x, uids: [U] }}, wecom_app: {{ corp_id: c, agent_id: 1 }}, official_account: {{ app_id: a, app_secret: s, kind: template, template_id: T, colour: red }} }} }}\npeople: [ {{ name: x, contacts: {{ wxpusher: {{ uid: U }}, wecom_app: {{ userid: X }} }} }} ]\n{BASE}"
        ));
        let want = [
            "test.yml: oncall.channels.wxpusher.uids: recipients come from each person's contacts: remove uids",
            "test.yml: oncall.channels.wecom_app: one of api_secret and api_secret_file is required",
            "test.yml: oncall.channels.official_account.colour: unknown field `colour`, expected one of",
        ];
        assert_eq!(e.len(), want.len(), "{e:?}");
        for (got, want) in e.iter().zip(want) {
            assert!(got.starts_with(want), "{got} / {want}");
        }
        assert_eq!(
            errors(&format!(
                "oncall: {{ public_url: 'x.example', link_secret: k, link_ttl: 0s }}\n{BASE}"
            )),
            [
                "test.yml: oncall.public_url: \"x.example\" is not an http(s) URL",
                "test.yml: oncall.link_secret: is too short to be a real secret (at least 4 characters)",
                "test.yml: oncall.link_ttl: must be longer than zero",
            ]
        );
    }
}
