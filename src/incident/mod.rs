//! Incidents: a group on a route with an `escalation_policy` becomes an incident per
//! (receiver, `groupKey`), `triggered` → `acknowledged` → `resolved`, whose policy pages people
//! step by step until someone acknowledges.
//!
//! Everything timed is a job of the durable queue: the accepted notification (one job of kind
//! [`CONTROL_KIND`] in the webhook's own enqueue batch), each escalation timer and each
//! `ack_timeout` is a stored job due at its deadline, so timers survive a restart, fire at once
//! when overdue, and are claimed by one replica only. The delivery engine hands claimed jobs of
//! that kind to [`claimed`], which applies them to the incident with a compare-and-set
//! ([`crate::store::incident`]) and queues the pages (one job per person and contact kind,
//! delayed by the person's `notify` rules) and the next timer, in the same transaction that
//! settles the job. A timer whose incident has moved on does nothing.
//!
//! The acts ([`acknowledge`], [`escalate`], [`resolve`]) are plain functions that the API, the
//! one-tap link, replies and callbacks all call; they are idempotent.

pub mod link;
pub mod reach;
pub mod render;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::config::oncall::EscalationPolicy;
use crate::delivery::fanout::{Origin, fan_out};
use crate::metrics::{Metrics, PageLabels, PolicyLabels, PolicyStateLabels};
use crate::runtime::{CONTACT_PREFIX, Runtime, contact_receiver};
use crate::store::incident::{
    Incident, IncidentState, Paged, PolicySnapshot, StepSnapshot, TargetSnapshot,
};
use crate::store::oncall::Override;
use crate::store::{Failure, IntegrationId, Job, NewJob, Progress, Store, StoreError};
use crate::webhook::{IncidentContext, Notification, Status};

/// The job kind of the engine's own jobs (accepted notifications and timers): taken out of
/// the delivery round by [`claimed`], never sent, never in the delivery history.
pub use crate::store::incident::CONTROL_KIND;

/// How many times a change is tried again when another replica changed the incident first.
const CAS_TRIES: usize = 8;

/// How many applied control jobs an incident remembers.
const KEEP_APPLIED: usize = 16;

/// What one of the engine's jobs does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Control {
    /// An accepted notification for a receiver whose groups follow `policy`; `own`: it
    /// carries the receiver's ordinary message too ([`page_replaces_message`]).
    Notify { policy: String, own: bool },
    /// The escalation timer of a step and loop.
    Escalate { id: i64, step: u32, loop_: u32 },
    /// `ack_timeout` of the acknowledgement made at `acked_at` (unix milliseconds).
    AckTimeout { id: i64, acked_at: i64 },
}

impl Control {
    fn id(&self) -> IntegrationId {
        IntegrationId(match self {
            Control::Notify { policy, own: false } => format!("notify-{}", hex::encode(policy)),
            Control::Notify { policy, own: true } => format!("notifyown-{}", hex::encode(policy)),
            Control::Escalate { id, step, loop_ } => format!("escalate-{id}-{step}-{loop_}"),
            Control::AckTimeout { id, acked_at } => format!("acktimeout-{id}-{acked_at}"),
        })
    }

    fn parse(id: &IntegrationId) -> Option<Control> {
        let s = id.as_str();
        for (prefix, own) in [("notify-", false), ("notifyown-", true)] {
            if let Some(h) = s.strip_prefix(prefix) {
                let policy = String::from_utf8(hex::decode(h).ok()?).ok()?;
                return Some(Control::Notify { policy, own });
            }
        }
        if let Some(rest) = s.strip_prefix("escalate-") {
            let mut p = rest.split('-').map(|x| x.parse::<i64>().ok());
            let (id, step, loop_) = (p.next()??, p.next()??, p.next()??);
            return Some(Control::Escalate {
                id,
                step: u32::try_from(step).ok()?,
                loop_: u32::try_from(loop_).ok()?,
            });
        }
        if let Some(rest) = s.strip_prefix("acktimeout-") {
            let (id, at) = rest.split_once('-')?;
            return Some(Control::AckTimeout {
                id: id.parse().ok()?,
                acked_at: at.parse().ok()?,
            });
        }
        None
    }
}

/// The job that hands an accepted notification for `receiver` to the engine: queued with the
/// webhook's deliveries, in the same transaction. `own`: the receiver's ordinary message was
/// left out of them, for the engine to send or replace by the page
/// ([`page_replaces_message`]).
pub fn notify_job(
    receiver: &str,
    policy: &str,
    own: bool,
    n: &Arc<Notification>,
    now: DateTime<Utc>,
) -> NewJob {
    NewJob {
        receiver: receiver.to_string(),
        integration: Control::Notify {
            policy: policy.to_string(),
            own,
        }
        .id(),
        kind: CONTROL_KIND.to_string(),
        notification: Arc::clone(n),
        accepted_at: now,
        fallback: false,
    }
}

fn timer_job(inc: &Incident, control: Control, due: DateTime<Utc>) -> NewJob {
    NewJob {
        receiver: inc.receiver.clone(),
        integration: control.id(),
        kind: CONTROL_KIND.to_string(),
        notification: Arc::new(inc.notification.without_alerts()),
        accepted_at: due,
        fallback: false,
    }
}

/// The policy as the incident keeps it.
pub fn snapshot(p: &EscalationPolicy) -> PolicySnapshot {
    PolicySnapshot {
        name: p.name.clone(),
        repeat: p.repeat,
        ack_timeout_ms: p.ack_timeout.map(|d| d.as_millis() as u64),
        retrigger_on_new_alerts: p.retrigger_on_new_alerts,
        steps: p
            .steps
            .iter()
            .map(|s| StepSnapshot {
                notify: s
                    .notify
                    .iter()
                    .filter_map(|t| {
                        if let Some(s) = &t.schedule {
                            Some(TargetSnapshot::Schedule(s.clone()))
                        } else if let Some(name) = &t.person {
                            Some(TargetSnapshot::Person {
                                name: name.clone(),
                                contacts: t.contacts.clone(),
                            })
                        } else {
                            t.receiver.clone().map(TargetSnapshot::Receiver)
                        }
                    })
                    .collect(),
                escalate_after_ms: s.escalate_after.as_millis() as u64,
            })
            .collect(),
    }
}

fn fingerprint(a: &crate::webhook::Alert) -> String {
    if a.fingerprint.is_empty() {
        // Grafana and old senders may leave it out: the labels identify the alert.
        serde_json::to_string(&a.labels).unwrap_or_default()
    } else {
        a.fingerprint.clone()
    }
}

/// Rule 3: the value every firing alert shares; none when mixed or missing.
fn severity(n: &Notification) -> Option<String> {
    let mut values = n
        .alerts
        .iter()
        .filter(|a| a.status == Status::Firing)
        .map(|a| a.labels.get("severity").cloned());
    let first = values.next()??;
    values
        .all(|v| v.as_deref() == Some(&first))
        .then_some(first)
}

fn ms(d: u64) -> Duration {
    Duration::milliseconds(i64::try_from(d).unwrap_or(i64::MAX / 2))
}

/// The one-tap link for `person` (none: whoever opens it says who), with `public_url` and a
/// link secret configured.
pub fn ack_url(
    rt: &Runtime,
    incident: i64,
    person: Option<&str>,
    now: DateTime<Utc>,
) -> Option<String> {
    let o = rt.config.oncall.as_ref()?;
    let (base, secret) = (o.public_url.as_ref()?, o.link_secret.as_ref()?);
    let expires = now + Duration::from_std(o.link_ttl).unwrap_or(Duration::days(1));
    let token = link::sign(
        secret.expose().as_bytes(),
        &link::Claim {
            incident,
            person: person.map(str::to_string),
            expires,
        },
    );
    Some(format!("{}/ack/{token}", base.trim_end_matches('/')))
}

fn context(
    inc: &Incident,
    rt: &Runtime,
    person: Option<&str>,
    now: DateTime<Utc>,
) -> IncidentContext {
    IncidentContext {
        id: inc.id,
        reference: inc.reference.clone(),
        state: inc.state.as_str().to_string(),
        step: inc.step,
        policy: inc.policy.name.clone(),
        ack_url: ack_url(rt, inc.id, person, now),
        acknowledged_by: inc.acknowledged_by.as_deref().map(|p| display_name(rt, p)),
        person: person.map(str::to_string),
        update: None,
    }
}

/// The incident's notification as a page to `person` shows it: its reference as the group's
/// `ref` (rule 1), the `incident` context, the link as the tap target.
pub fn page_notification(
    inc: &Incident,
    rt: &Runtime,
    person: Option<&str>,
    now: DateTime<Utc>,
) -> Notification {
    let mut n = inc.notification.clone();
    n.reference = Some(inc.reference.clone());
    n.incident = Some(context(inc, rt, person, now));
    n
}

/// How a person is named to others: their `display_name`, else their name.
pub fn display_name(rt: &Runtime, person: &str) -> String {
    rt.config
        .people
        .iter()
        .find(|p| p.name == person)
        .and_then(|p| p.display_name.clone())
        .unwrap_or_else(|| person.to_string())
}

/// The pages one step of the incident sends now, and its escalation timer; recorded in the
/// timeline and `paged`.
fn page_step(
    inc: &mut Incident,
    rt: &Runtime,
    overrides: &[Override],
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) {
    let Some(step) = inc
        .policy
        .steps
        .get(inc.step.saturating_sub(1) as usize)
        .cloned()
    else {
        return;
    };
    let mut persons: Vec<(String, Option<Vec<String>>)> = Vec::new();
    for target in &step.notify {
        match target {
            TargetSnapshot::Schedule(name) => {
                match rt.config.schedules.iter().find(|s| &s.name == name) {
                    None => inc.log(
                        now,
                        "skipped",
                        None,
                        None,
                        Some(format!("schedule {name} is no longer configured")),
                    ),
                    Some(s) => match s.who(overrides, now) {
                        Some(p) => persons.push((p, None)),
                        None => inc.log(
                            now,
                            "skipped",
                            None,
                            None,
                            Some(format!("nobody is on call in {name}")),
                        ),
                    },
                }
            }
            TargetSnapshot::Person { name, contacts } => {
                persons.push((name.clone(), contacts.clone()))
            }
            TargetSnapshot::Receiver(name) => {
                let Some(list) = rt.receivers.get(name) else {
                    inc.log(
                        now,
                        "skipped",
                        None,
                        None,
                        Some(format!("receiver {name} is no longer configured")),
                    );
                    continue;
                };
                let n = page_notification(inc, rt, None, now);
                out.extend(fan_out(
                    name,
                    list,
                    &Arc::new(n.clone()),
                    now,
                    Origin::Accepted,
                ));
                inc.log(
                    now,
                    "paged",
                    Some(&format!("receiver:{name}")),
                    Some("receiver"),
                    None,
                );
                inc.paged.push(Paged {
                    person: format!("receiver:{name}"),
                    contact: "receiver".into(),
                    step: inc.step,
                    loop_: inc.loop_,
                });
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (name, filter) in persons {
        if seen.insert(name.clone()) {
            page_person(inc, rt, &name, filter.as_deref(), now, out);
        }
    }
    let due = now + ms(step.escalate_after_ms);
    inc.next_escalation_at = Some(due);
    out.push(timer_job(
        inc,
        Control::Escalate {
            id: inc.id,
            step: inc.step,
            loop_: inc.loop_,
        },
        due,
    ));
}

/// The contacts (kind, delay) a page to `person` uses (rule 6), severity rules applied.
fn contact_plan(
    p: &crate::config::oncall::Person,
    filter: Option<&[String]>,
    severity: Option<&str>,
) -> Vec<(String, std::time::Duration)> {
    let allowed = |kind: &str| filter.is_none_or(|f| f.iter().any(|k| k == kind));
    let matches =
        |list: &[String]| list.is_empty() || severity.is_some_and(|s| list.iter().any(|x| x == s));
    let mut out: Vec<(String, std::time::Duration)> = Vec::new();
    if p.notify.is_empty() {
        for kind in p.contacts.kinds() {
            if (crate::channels::paged_by_default(kind) || filter.is_some()) && allowed(kind) {
                out.push((kind.to_string(), std::time::Duration::ZERO));
            }
        }
        return out;
    }
    for rule in &p.notify {
        if allowed(&rule.contact) && matches(&rule.severity) {
            out.push((rule.contact.clone(), rule.delay));
        }
    }
    // A listed contact without a rule pages at once.
    for kind in filter.into_iter().flatten() {
        if !p.notify.iter().any(|r| &r.contact == kind) && p.contacts.has(kind) {
            out.push((kind.clone(), std::time::Duration::ZERO));
        }
    }
    out
}

fn page_person(
    inc: &mut Incident,
    rt: &Runtime,
    name: &str,
    filter: Option<&[String]>,
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) {
    let Some(p) = rt.config.people.iter().find(|p| p.name == name) else {
        inc.log(
            now,
            "skipped",
            Some(name),
            None,
            Some("no longer in the configuration".into()),
        );
        return;
    };
    let quiet = p.quiet_hours.as_ref().is_some_and(|q| {
        let excepted = inc
            .severity
            .as_ref()
            .is_some_and(|s| q.except_severity.contains(s));
        !excepted
            && q.time_intervals.iter().any(|t| {
                rt.config
                    .time_intervals
                    .iter()
                    .any(|i| &i.name == t && i.contains(now))
            })
    });
    for (kind, delay) in contact_plan(p, filter, inc.severity.as_deref()) {
        if quiet {
            inc.log(
                now,
                "skipped_quiet",
                Some(name),
                Some(&kind),
                Some("quiet hours".into()),
            );
            continue;
        }
        let integration = rt
            .contacts
            .get(name)
            .and_then(|list| list.iter().find(|i| i.name() == kind));
        let Some(i) = integration else {
            inc.log(
                now,
                "skipped",
                Some(name),
                Some(&kind),
                Some("no channel for this contact".into()),
            );
            continue;
        };
        let due = now + Duration::from_std(delay).unwrap_or_default();
        out.push(NewJob {
            receiver: contact_receiver(name),
            integration: i.id.clone(),
            kind: kind.clone(),
            notification: Arc::new(page_notification(inc, rt, Some(name), now)),
            accepted_at: due,
            fallback: false,
        });
        let detail =
            (!delay.is_zero()).then(|| format!("after {}", humantime::format_duration(delay)));
        inc.log(now, "paged", Some(name), Some(&kind), detail);
        inc.paged.push(Paged {
            person: name.to_string(),
            contact: kind,
            step: inc.step,
            loop_: inc.loop_,
        });
    }
}

/// The status line of `event` (`acknowledged`, `escalated`, `resolved`) by `by`, from the
/// `oncall.status` template.
pub fn status_line(rt: &Runtime, inc: &Incident, event: &str, by: Option<&str>) -> String {
    let ctx = json!({
        "event": event,
        "by": by,
        "ref": inc.reference,
        "step": inc.step,
        "policy": inc.policy.name,
    });
    match rt.templates.render("oncall.status", &ctx) {
        Ok(s) => s.trim().to_string(),
        Err(e) => {
            warn!(error = %e, "cannot render oncall.status");
            format!("{} {event}", inc.reference)
        }
    }
}

/// One status update to each (person, contact) already paged, and to each receiver paged.
fn status_updates(
    inc: &Incident,
    rt: &Runtime,
    line: &str,
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) {
    let mut seen = BTreeSet::new();
    for p in &inc.paged {
        // A status update is never a phone call.
        if !seen.insert((p.person.clone(), p.contact.clone()))
            || !crate::channels::status_updates(&p.contact)
        {
            continue;
        }
        let mut n = page_notification(inc, rt, None, now);
        n.digest = Some(line.to_string());
        if let Some(c) = &mut n.incident {
            c.update = Some(line.to_string());
            c.person = Some(p.person.clone());
        }
        if let Some(name) = p.person.strip_prefix("receiver:") {
            if let Some(list) = rt.receivers.get(name) {
                out.extend(fan_out(
                    name,
                    list,
                    &Arc::new(n.clone()),
                    now,
                    Origin::Accepted,
                ));
            }
            continue;
        }
        let Some(i) = rt
            .contacts
            .get(&p.person)
            .and_then(|l| l.iter().find(|i| i.name() == p.contact))
        else {
            continue;
        };
        out.push(NewJob {
            receiver: contact_receiver(&p.person),
            integration: i.id.clone(),
            kind: p.contact.clone(),
            notification: Arc::new(n),
            accepted_at: now,
            fallback: false,
        });
    }
}

/// Counts what a stored change added to the timeline (from entry `from` on).
fn count(metrics: &Metrics, from: usize, inc: &Incident) {
    let policy = inc.policy.name.clone();
    let state = |state| PolicyStateLabels {
        policy: policy.clone(),
        state,
    };
    for e in inc.timeline.iter().skip(from) {
        let page = |result| PageLabels {
            contact: e.contact.clone().unwrap_or_default(),
            result,
        };
        match e.event.as_str() {
            "triggered" => metrics.incidents.get_or_create(&state("triggered")).inc(),
            "retriggered" => metrics.incidents.get_or_create(&state("triggered")).inc(),
            "resolved" => metrics.incidents.get_or_create(&state("resolved")).inc(),
            "escalated" => metrics
                .escalations
                .get_or_create(&PolicyLabels {
                    policy: policy.clone(),
                })
                .inc(),
            "acknowledged" => {
                metrics
                    .incidents
                    .get_or_create(&state("acknowledged"))
                    .inc();
                let secs = (e.at - inc.opened_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics
                    .incident_ack_seconds
                    .get_or_create(&PolicyLabels {
                        policy: policy.clone(),
                    })
                    .observe(secs);
                0
            }
            "skipped_quiet" => metrics
                .oncall_pages
                .get_or_create(&page("skipped_quiet"))
                .inc(),
            "skipped" if e.contact.is_some() => {
                metrics.oncall_pages.get_or_create(&page("skipped")).inc()
            }
            "page_cancelled" => metrics.oncall_pages.get_or_create(&page("cancelled")).inc(),
            _ => 0,
        };
    }
}

/// Sets `incidents_open` from the store (every replica sees the same).
pub async fn count_open(store: &Store, rt: &Runtime, metrics: &Metrics, now: DateTime<Utc>) {
    let Ok(all) = store.incidents(keep_since(rt, now)).await else {
        return;
    };
    let mut open: std::collections::BTreeMap<String, i64> = rt
        .config
        .escalation_policies
        .iter()
        .map(|p| (p.name.clone(), 0))
        .collect();
    for i in all.iter().filter(|i| i.state != IncidentState::Resolved) {
        *open.entry(i.policy.name.clone()).or_default() += 1;
    }
    for (policy, n) in open {
        metrics
            .incidents_open
            .get_or_create(&PolicyLabels { policy })
            .set(n);
    }
}

fn remember(inc: &mut Incident, job: i64) {
    inc.applied.push(job);
    if inc.applied.len() > KEEP_APPLIED {
        inc.applied.remove(0);
    }
}

async fn overrides(store: &Store, now: DateTime<Utc>) -> Vec<Override> {
    match store.overrides(now).await {
        Ok(o) => o,
        Err(e) => {
            warn!(error = %e, "cannot read schedule overrides; paging by the rotation alone");
            Vec::new()
        }
    }
}

/// Freshly claimed jobs: the engine's own are applied and settled (with what they queue, in
/// one transaction); pages whose incident no longer needs them are settled unsent. Returns
/// the jobs left to deliver, and whether new jobs are due now.
pub async fn claimed(
    store: &Store,
    rt: &Runtime,
    metrics: &Metrics,
    jobs: Vec<Job>,
    now: DateTime<Utc>,
) -> (Vec<Job>, bool) {
    let mut rest = Vec::with_capacity(jobs.len());
    let mut queued = false;
    for job in jobs {
        if job.kind == CONTROL_KIND {
            let Some(control) = Control::parse(&job.integration) else {
                warn!(job = job.id, "dropping an on-call job it cannot read");
                let _ = store.complete(vec![job.id], Vec::new()).await;
                continue;
            };
            match apply(store, rt, metrics, &job, control, now).await {
                Ok(Applied::Committed { due_now }) => queued |= due_now,
                Ok(Applied::Settle(then)) => {
                    queued |= then.iter().any(|j| j.accepted_at <= now);
                    if let Err(e) = store.complete(vec![job.id], then).await {
                        warn!(job = job.id, error = %e, "cannot settle an on-call job; it is claimed again");
                    }
                }
                Err(e) => {
                    warn!(job = job.id, error = %e, "cannot apply an on-call job; trying again shortly");
                    let failure = Failure {
                        attempt: job.attempt + 1,
                        progress: Progress::default(),
                        error: e.to_string(),
                        reason: "store",
                    };
                    let _ = store
                        .reschedule(job.id, failure, now + Duration::seconds(5))
                        .await;
                }
            }
            continue;
        }
        if job.receiver.starts_with(CONTACT_PREFIX)
            && let Some(ctx) = &job.notification.incident
            && ctx.update.is_none()
            && let Ok(Some(mut inc)) = store.incident(ctx.id).await
            && inc.state != IncidentState::Triggered
        {
            // A delayed page (a voice call after 10 minutes) whose incident was acknowledged
            // or resolved meanwhile: settled without sending.
            let person = ctx.person.clone();
            if store.complete(vec![job.id], Vec::new()).await.is_ok() {
                inc.log(
                    now,
                    "page_cancelled",
                    person.as_deref(),
                    Some(&job.kind),
                    Some(format!("incident {}", inc.state.as_str())),
                );
                let _ = store.incident_update(&inc).await;
            } else {
                rest.push(job);
            }
            continue;
        }
        rest.push(job);
    }
    (rest, queued)
}

/// What applying one of the engine's jobs came to.
enum Applied {
    /// The incident changed: stored with what it queued and the job settled, in one write.
    Committed {
        /// Whether a queued job is due now.
        due_now: bool,
    },
    /// Nothing to change in any incident: the job is to be settled with these jobs.
    Settle(Vec<NewJob>),
}

/// Applies one of the engine's jobs.
async fn apply(
    store: &Store,
    rt: &Runtime,
    metrics: &Metrics,
    job: &Job,
    control: Control,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    let overrides = overrides(store, now).await;
    // The receiver's own message, when this notification carried it (rule 6): sent or left
    // to the page once, before the first attempt to store the change.
    let mut own_message = match &control {
        Control::Notify { own: true, .. } => Some(()),
        _ => None,
    };
    for _ in 0..CAS_TRIES {
        let mut out = Vec::new();
        let current = match &control {
            Control::Notify { .. } => {
                store
                    .incident_of_group(&job.receiver, &job.notification.group_key)
                    .await?
            }
            Control::Escalate { id, .. } | Control::AckTimeout { id, .. } => {
                store.incident(*id).await?
            }
        };
        let from = current.as_ref().map_or(0, |i| i.timeline.len());
        if current
            .as_ref()
            .is_some_and(|i| i.applied.contains(&job.id))
        {
            // Stored with its jobs in one write: this is a second claim of a job already
            // applied (a lease that ran out meanwhile). Issuing its pages again would page
            // twice.
            debug!(job = job.id, "an on-call job applied already");
            return Ok(Applied::Settle(Vec::new()));
        }
        let changed = match (&control, current) {
            (Control::Notify { policy, .. }, None) => {
                open(store, rt, job, policy, &overrides, now, &mut out).await?
            }
            (Control::Notify { .. }, Some(mut inc)) if inc.timeline.is_empty() => {
                // Made by a replica that stopped before storing its first change: opened now.
                begin(&mut inc, rt, &overrides, now, &mut out);
                Some(inc)
            }
            (Control::Notify { .. }, Some(mut inc)) => {
                follow(&mut inc, rt, &job.notification, &overrides, now, &mut out).then_some(inc)
            }
            (Control::Escalate { step, loop_, .. }, Some(mut inc)) => {
                if inc.state != IncidentState::Triggered || inc.step != *step || inc.loop_ != *loop_
                {
                    debug!(
                        incident = inc.id,
                        "an escalation timer of a step left behind"
                    );
                    None
                } else {
                    advance(&mut inc, rt, &overrides, now, &mut out);
                    Some(inc)
                }
            }
            (Control::AckTimeout { acked_at, .. }, Some(mut inc)) => {
                if inc.state != IncidentState::Acknowledged
                    || inc.acknowledged_at.map(|t| t.timestamp_millis()) != Some(*acked_at)
                {
                    None
                } else {
                    retrigger(&mut inc, rt, "ack_timeout", &overrides, now, &mut out);
                    Some(inc)
                }
            }
            (_, None) => None,
        };
        if own_message.take().is_some() {
            own(store, rt, job, &out, now).await?;
        }
        let Some(mut inc) = changed else {
            return Ok(Applied::Settle(out));
        };
        remember(&mut inc, job.id);
        let due_now = out.iter().any(|j| j.accepted_at <= now);
        if store.incident_commit(&inc, vec![job.id], out).await? {
            count(metrics, from, &inc);
            return Ok(Applied::Committed { due_now });
        }
    }
    Err(StoreError::Db(
        "the incident kept changing under this change".into(),
    ))
}

/// Whether the receiver's ordinary message of a firing notification is left to the incident
/// (rule 6): its policy's first step pages that receiver itself, so the page is the message.
pub fn page_replaces_message(rt: &Runtime, receiver: &str, policy: &str, n: &Notification) -> bool {
    n.status == Status::Firing
        && rt
            .config
            .escalation_policies
            .iter()
            .find(|p| p.name == policy)
            .and_then(|p| p.steps.first())
            .is_some_and(|s| {
                s.notify
                    .iter()
                    .any(|t| t.receiver.as_deref() == Some(receiver))
            })
}

/// The receiver's own message that a notification job carried (rule 6): when this change
/// pages the receiver (`out` holds its page) the page replaces it and only dedupe's marks are
/// kept (a copy from a second Alertmanager is then a duplicate); otherwise (a repeat, new
/// alerts, nothing opened) it is admitted as the accept path would have.
async fn own(
    store: &Store,
    rt: &Runtime,
    job: &Job,
    out: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let list = rt
        .receivers
        .get(&job.receiver)
        .map_or(&[][..], Vec::as_slice);
    let jobs = fan_out(
        &job.receiver,
        list,
        &job.notification,
        job.accepted_at,
        Origin::Accepted,
    );
    let policy = crate::dedupe::Policy::new(&rt.config.dedupe);
    let admissions = crate::dedupe::admissions(&policy, jobs, now);
    if out.iter().any(|j| j.receiver == job.receiver) {
        let marks: Vec<_> = admissions
            .into_iter()
            .flat_map(|a| a.identity.into_iter().chain(a.remember))
            .collect();
        if !marks.is_empty() {
            store.remember(marks, now).await?;
        }
        return Ok(());
    }
    store.admit(admissions, now).await?;
    Ok(())
}

/// Opens the incident of a firing group; `None` when there is nothing to open (all
/// resolved, or the policy is gone).
async fn open(
    store: &Store,
    rt: &Runtime,
    job: &Job,
    policy: &str,
    overrides: &[Override],
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) -> Result<Option<Incident>, StoreError> {
    let n = &job.notification;
    let firing: Vec<String> = n
        .alerts
        .iter()
        .filter(|a| a.status == Status::Firing)
        .map(fingerprint)
        .collect();
    if firing.is_empty() {
        return Ok(None);
    }
    let Some(p) = rt
        .config
        .escalation_policies
        .iter()
        .find(|p| p.name == policy)
    else {
        warn!(
            policy,
            "the escalation policy is no longer configured; no incident opened"
        );
        return Ok(None);
    };
    let new = Incident {
        id: 0,
        reference: String::new(),
        receiver: job.receiver.clone(),
        group_key: n.group_key.clone(),
        state: IncidentState::Triggered,
        policy: snapshot(p),
        step: 1,
        loop_: 0,
        opened_at: now,
        acknowledged_by: None,
        acknowledged_at: None,
        resolved_at: None,
        next_escalation_at: None,
        severity: severity(n),
        fingerprints: firing.clone(),
        paged: Vec::new(),
        timeline: Vec::new(),
        notification: n.as_ref().clone(),
        applied: Vec::new(),
        version: 0,
    };
    let (mut inc, created) = store.incident_open(new).await?;
    if !created && !inc.timeline.is_empty() {
        // Opened by another notification meanwhile: this one follows it.
        return Ok(follow(&mut inc, rt, n, overrides, now, out).then_some(inc));
    }
    begin(&mut inc, rt, overrides, now, out);
    Ok(Some(inc))
}

/// The first change of an incident just made: triggered, step 1 paged.
fn begin(
    inc: &mut Incident,
    rt: &Runtime,
    overrides: &[Override],
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) {
    inc.log(
        now,
        "triggered",
        None,
        None,
        Some(format!("{} alert(s) firing", inc.fingerprints.len())),
    );
    page_step(inc, rt, overrides, now, out);
}

/// A later notification of an open incident's group; returns whether the incident changed.
fn follow(
    inc: &mut Incident,
    rt: &Runtime,
    n: &Notification,
    overrides: &[Override],
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) -> bool {
    if n.status == Status::Resolved {
        inc.notification = n.clone();
        close(inc, rt, "resolved", None, now, out);
        return true;
    }
    let new: Vec<String> = n
        .alerts
        .iter()
        .filter(|a| a.status == Status::Firing)
        .map(fingerprint)
        .filter(|f| !inc.fingerprints.contains(f))
        .collect();
    if new.is_empty() {
        // Rule 2: a repeat pages nobody.
        return false;
    }
    inc.fingerprints.extend(new.iter().cloned());
    inc.notification = n.clone();
    inc.severity = severity(n);
    inc.log(
        now,
        "new_alerts",
        None,
        None,
        Some(format!("{} new alert(s)", new.len())),
    );
    if inc.state == IncidentState::Acknowledged && inc.policy.retrigger_on_new_alerts {
        retrigger(inc, rt, "new alerts", overrides, now, out);
    }
    true
}

/// Back to `triggered` at step 1, loop 0 (rule 9).
fn retrigger(
    inc: &mut Incident,
    rt: &Runtime,
    why: &str,
    overrides: &[Override],
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) {
    inc.state = IncidentState::Triggered;
    inc.step = 1;
    inc.loop_ = 0;
    inc.log(now, "retriggered", None, None, Some(why.to_string()));
    page_step(inc, rt, overrides, now, out);
}

/// The next step, or the next pass, or the end of the policy.
fn advance(
    inc: &mut Incident,
    rt: &Runtime,
    overrides: &[Override],
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) {
    let steps = inc.policy.steps.len() as u32;
    if inc.step < steps {
        inc.step += 1;
    } else if inc.loop_ < inc.policy.repeat {
        inc.loop_ += 1;
        inc.step = 1;
    } else {
        inc.next_escalation_at = None;
        inc.log(
            now,
            "exhausted",
            None,
            None,
            Some("every step was paged; nobody acknowledged".into()),
        );
        return;
    }
    inc.log(
        now,
        "escalated",
        None,
        None,
        Some(format!("step {} (loop {})", inc.step, inc.loop_)),
    );
    let line = status_line(rt, inc, "escalated", None);
    status_updates(inc, rt, &line, now, out);
    page_step(inc, rt, overrides, now, out);
}

/// Resolved: no more timers; everyone paged hears it.
fn close(
    inc: &mut Incident,
    rt: &Runtime,
    event: &str,
    by: Option<&str>,
    now: DateTime<Utc>,
    out: &mut Vec<NewJob>,
) {
    inc.state = IncidentState::Resolved;
    inc.resolved_at = Some(now);
    inc.next_escalation_at = None;
    inc.log(now, event, by, None, None);
    let by = by.map(|p| display_name(rt, p));
    let line = status_line(rt, inc, "resolved", by.as_deref());
    status_updates(inc, rt, &line, now, out);
}

/// Why an act was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("no incident {0}")]
    NotFound(String),
    #[error("unknown person {0:?}")]
    UnknownPerson(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an act did.
#[derive(Debug, Clone)]
pub struct Acted {
    /// False when it had already happened (or the incident had moved past it): nothing done.
    pub changed: bool,
    pub incident: Incident,
}

/// Applies `change` to incident `id` with a compare-and-set, then queues what it returned.
/// `change` returns `None` when there is nothing to do.
async fn act(
    store: &Store,
    metrics: &Metrics,
    id: i64,
    mut change: impl FnMut(&mut Incident, &mut Vec<NewJob>) -> bool,
) -> Result<Acted, ActError> {
    for _ in 0..CAS_TRIES {
        let Some(mut inc) = store.incident(id).await? else {
            return Err(ActError::NotFound(id.to_string()));
        };
        let mut out = Vec::new();
        let from = inc.timeline.len();
        if !change(&mut inc, &mut out) {
            return Ok(Acted {
                changed: false,
                incident: inc,
            });
        }
        // The change and its status updates and timers in one write: a crash between the
        // two would lose the updates.
        if store.incident_commit(&inc, Vec::new(), out).await? {
            count(metrics, from, &inc);
            inc.version += 1;
            return Ok(Acted {
                changed: true,
                incident: inc,
            });
        }
    }
    Err(StoreError::Db("the incident kept changing under this change".into()).into())
}

/// Acknowledges incident `id` as `person` (a configured person's name, or `console:USER`)
/// through `via` (`link`, `reply`, `api`, `wecom_card`, `voice`): stops the escalation,
/// sends everyone paged a status update, and starts `ack_timeout`. Idempotent: acknowledging
/// an acknowledged or resolved incident changes nothing.
pub async fn acknowledge(
    store: &Store,
    rt: &Runtime,
    metrics: &Metrics,
    id: i64,
    person: &str,
    via: &str,
    now: DateTime<Utc>,
) -> Result<Acted, ActError> {
    act(store, metrics, id, |inc, out| {
        if inc.state != IncidentState::Triggered {
            return false;
        }
        inc.state = IncidentState::Acknowledged;
        inc.acknowledged_by = Some(person.to_string());
        inc.acknowledged_at = Some(now);
        inc.next_escalation_at = None;
        inc.log(now, "acknowledged", Some(person), Some(via), None);
        let line = status_line(rt, inc, "acknowledged", Some(&display_name(rt, person)));
        status_updates(inc, rt, &line, now, out);
        if let Some(t) = inc.policy.ack_timeout_ms {
            out.push(timer_job(
                inc,
                Control::AckTimeout {
                    id: inc.id,
                    acked_at: now.timestamp_millis(),
                },
                now + ms(t),
            ));
        }
        true
    })
    .await
}

/// Escalates incident `id` now, from step `from_step` (rule 9: nothing once it has moved
/// past it; `None`: from whatever step it is on). `by` is recorded.
pub async fn escalate(
    store: &Store,
    rt: &Runtime,
    metrics: &Metrics,
    id: i64,
    from_step: Option<u32>,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Acted, ActError> {
    let overrides = overrides(store, now).await;
    act(store, metrics, id, |inc, out| {
        if inc.state == IncidentState::Resolved || from_step.is_some_and(|s| s != inc.step) {
            return false;
        }
        inc.state = IncidentState::Triggered;
        inc.log(now, "escalate_requested", Some(by), None, None);
        advance(inc, rt, &overrides, now, out);
        true
    })
    .await
}

/// Resolves incident `id` by hand (`by`); the group's own resolve does the same.
pub async fn resolve(
    store: &Store,
    rt: &Runtime,
    metrics: &Metrics,
    id: i64,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Acted, ActError> {
    act(store, metrics, id, |inc, out| {
        if inc.state == IncidentState::Resolved {
            return false;
        }
        close(inc, rt, "resolved", Some(by), now, out);
        true
    })
    .await
}

/// The incident whose reference is `reference` (case-insensitive), open ones first.
pub async fn by_reference(
    store: &Store,
    rt: &Runtime,
    reference: &str,
    now: DateTime<Utc>,
) -> Result<Option<Incident>, StoreError> {
    let all = store.incidents(keep_since(rt, now)).await?;
    let wanted = reference.to_ascii_uppercase();
    let mut found: Vec<Incident> = all.into_iter().filter(|i| i.reference == wanted).collect();
    found.sort_by_key(|i| (i.state == IncidentState::Resolved, -i.id));
    Ok(found.into_iter().next())
}

/// Resolved incidents older than this are pruned (`web.history_retention`).
pub fn keep_since(rt: &Runtime, now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::from_std(rt.config.web.history_retention).unwrap_or(Duration::days(7))
}

/// An incident as `GET /api/v1/incidents` shows it.
pub fn view(inc: &Incident) -> Value {
    json!({
        "id": inc.id,
        "ref": inc.reference,
        "receiver": inc.receiver,
        "state": inc.state.as_str(),
        "policy": inc.policy.name,
        "step": inc.step,
        "opened_at": inc.opened_at,
        "acknowledged_by": inc.acknowledged_by,
        "acknowledged_at": inc.acknowledged_at,
        "resolved_at": inc.resolved_at,
        "next_escalation_at": inc.next_escalation_at,
        "timeline": inc.timeline,
    })
}

#[cfg(test)]
mod tests;
