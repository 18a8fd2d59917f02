//! The overview at `/ui/`: what a person on call opens first. What is firing now (from the
//! delivery history: groups whose latest notification was firing), open incidents, who is on
//! call per schedule and until when, the dead letters waiting, and charts of the last 24 h or
//! 7 days read from the store's hourly counters ([`crate::store::stats`]).
//!
//! Incidents have a slot of their own ([`Incidents`]), read from the stored incidents: the open
//! ones, and time to acknowledge per day (median and p90 of `acknowledged_at − opened_at` of
//! the incidents opened that day; resolved ones are kept for `web.history_retention`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use maud::{Markup, html};

use super::{Cx, chart, long, pages::person};
use crate::server::App;
use crate::store::history::{Delivery, HistoryFilter};
use crate::store::oncall::Override;
use crate::store::stats::{SEVERITIES, hour_of};

/// Most history records read to find what is firing.
const FIRING_SCAN: usize = 1000;
/// Most firing groups listed.
const FIRING_SHOWN: usize = 20;

/// One group firing now, as its newest notification says.
struct Firing<'a> {
    newest: &'a Delivery,
    /// When its earliest firing alert started.
    since: Option<DateTime<Utc>>,
    alerts: usize,
}

/// Groups (receiver, group key) whose newest record is firing, newest first.
fn firing(history: &[Delivery]) -> Vec<Firing<'_>> {
    let mut seen: BTreeMap<(&str, &str), ()> = BTreeMap::new();
    let mut out = Vec::new();
    for d in history {
        if seen.insert((&d.receiver, &d.group_key), ()).is_some() {
            continue;
        }
        if d.status != "firing" {
            continue;
        }
        let firing_alerts: Vec<_> = d
            .notification
            .iter()
            .flat_map(|n| n.alerts.iter())
            .filter(|a| a.status == crate::webhook::Status::Firing)
            .collect();
        out.push(Firing {
            newest: d,
            since: firing_alerts
                .iter()
                .map(|a| a.starts_at.with_timezone(&Utc))
                .min(),
            alerts: firing_alerts.len().max(1),
        });
    }
    out
}

/// An open incident, as the overview lists it.
pub struct OpenIncident {
    pub id: String,
    pub reference: String,
    pub receiver: String,
    pub state: String,
    pub step: u32,
    pub next_escalation_at: Option<DateTime<Utc>>,
}

/// Time to acknowledge on one day (local to `global.timezone`).
pub struct AckDay {
    pub day: chrono::NaiveDate,
    pub median_seconds: f64,
    pub p90_seconds: f64,
}

/// What the overview shows of incidents.
#[derive(Default)]
pub struct Incidents {
    pub open: Vec<OpenIncident>,
    pub ack: Vec<AckDay>,
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Open incidents (newest first) and, per local day of the range that opened any acknowledged
/// incident, the median and p90 of its time to acknowledge.
pub(super) fn summarise(
    all: &[crate::store::incident::Incident],
    from: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Incidents {
    use crate::store::incident::IncidentState;
    let open = all
        .iter()
        .filter(|i| i.state != IncidentState::Resolved)
        .map(|i| OpenIncident {
            id: i.id.to_string(),
            reference: i.reference.clone(),
            receiver: i.receiver.clone(),
            state: i.state.as_str().to_string(),
            step: i.step,
            next_escalation_at: i.next_escalation_at,
        })
        .collect();
    let mut per_day: BTreeMap<chrono::NaiveDate, Vec<f64>> = BTreeMap::new();
    for i in all.iter().filter(|i| i.opened_at >= from) {
        if let Some(at) = i.acknowledged_at {
            let secs = (at - i.opened_at).num_milliseconds().max(0) as f64 / 1000.0;
            per_day
                .entry(i.opened_at.with_timezone(&tz).date_naive())
                .or_default()
                .push(secs);
        }
    }
    let ack = per_day
        .into_iter()
        .map(|(day, mut v)| {
            v.sort_by(f64::total_cmp);
            AckDay {
                day,
                median_seconds: quantile(&v, 0.5),
                p90_seconds: quantile(&v, 0.9),
            }
        })
        .collect();
    Incidents { open, ack }
}

/// The incidents known to this server (an unreadable store shows the empty state; the other
/// panels say what failed).
async fn incidents(app: &App, from: DateTime<Utc>, tz: chrono_tz::Tz) -> Incidents {
    let rt = app.runtime.load_full();
    let since = crate::incident::keep_since(&rt, Utc::now());
    match app.queue.store.incidents(since).await {
        Ok(all) => summarise(&all, from, tz),
        Err(e) => {
            tracing::warn!(error = %e, "overview: incidents unreadable");
            Incidents::default()
        }
    }
}

fn open_incidents(cx: &Cx, inc: &Incidents) -> Markup {
    let t = cx.t;
    html! {
        section.panel #open-incidents {
            h2 { a href="incidents" { (t.open_incidents) } }
            @if inc.open.is_empty() {
                p.note.empty { (t.no_incidents) }
            } @else {
                ul.items { @for i in &inc.open {
                    li.item.incident data-id=(i.id) data-ref=(i.reference) data-state=(i.state) {
                        div { a href="incidents" { strong { (i.reference) } } " " span class={ "state state-" (i.state) } { (t.state(&i.state)) } }
                        div.note {
                            (i.receiver) " · " (t.step) " " (i.step)
                            @if let Some(at) = i.next_escalation_at { " · " (t.next_escalation) " " (cx.time(at)) }
                        }
                    }
                } }
            }
        }
    }
}

fn time_to_ack(cx: &Cx, inc: &Incidents) -> Markup {
    let t = cx.t;
    html! {
        section.panel #time-to-ack {
            h2 { (t.time_to_ack) }
            @if inc.ack.is_empty() {
                p.note.empty { (t.no_incidents) }
            } @else {
                (chart::ack_days(t.time_to_ack, &inc.ack))
                ul.legend {
                    li { span.swatch.ack-median {} (t.median) }
                    li { span.swatch.ack-p90 {} "p90" }
                }
            }
        }
    }
}

/// Per schedule: who is on call now, until when, who is next (shared with `/ui/oncall`).
pub(super) fn on_call_list(cx: &Cx, overrides: &[Override], now: DateTime<Utc>) -> Markup {
    let t = cx.t;
    let schedules = &cx.runtime.config.schedules;
    html! {
        @if schedules.is_empty() {
            p.note.empty { (t.no_schedules) }
        } @else {
            ul.items #oncall-now { @for s in schedules {
                @let o = s.on_call(overrides, now);
                li.item data-schedule=(s.name) {
                    div { strong { (s.name) } " · "
                        @match &o.person { Some(p) => (person(cx, p)), None => span.note { (t.nobody) } }
                    }
                    div.note {
                        @match o.until {
                            Some(u) => { (t.until) " " (cx.time(u)) }
                            None => (t.no_change),
                        }
                        @if let Some(n) = &o.next { " · " (t.next) " " (person(cx, n)) }
                    }
                }
            } }
        }
    }
}

pub(super) async fn overview(
    State(app): State<Arc<App>>,
    cx: Cx,
    RawQuery(q): RawQuery,
) -> Response {
    let t = cx.t;
    let week = q
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "range=7d"));
    let now = Utc::now();
    let store = &app.queue.store;
    let history = store
        .history(HistoryFilter {
            limit: FIRING_SCAN,
            ..HistoryFilter::default()
        })
        .await;
    let overrides = store.overrides(now).await;
    let dead = store.dead_letter_count().await;
    let hours: i64 = if week { 24 * 7 } else { 24 };
    let from = hour_of(now) - Duration::hours(hours - 1);
    let stats = store.stats(from).await;
    let inc = incidents(&app, from, cx.tz).await;
    let range = if week { t.last_7d } else { t.last_24h };

    let body = html! {
        h1 { (t.nav_overview) }
        div.grid {
            section.panel #firing {
                h2 { (t.firing_now) }
                @match &history {
                    Err(e) => p.error { (e.to_string()) },
                    Ok(h) => {
                        @let groups = firing(h);
                        @if groups.is_empty() {
                            p.note.empty { (t.firing_none) }
                        } @else {
                            p.note { (t.firing_note) }
                            ul.items { @for f in groups.iter().take(FIRING_SHOWN) {
                                li.item.firing data-group=(f.newest.group_key) {
                                    div.title { (long(&f.newest.alertnames.join(", "))) }
                                    div.note {
                                        (f.newest.receiver) " · " (f.alerts) " " (t.alerts)
                                        @if let Some(s) = f.since { " · " (t.since) " " (cx.time(s)) }
                                        " · " (t.last_sent) " " (cx.time(f.newest.accepted_at))
                                    }
                                }
                            } }
                        }
                    }
                }
            }
            (open_incidents(&cx, &inc))
            section.panel #oncall {
                h2 { a href="oncall" { (t.oncall_now) } }
                @match &overrides {
                    Err(e) => p.error { (e.to_string()) },
                    Ok(o) => (on_call_list(&cx, o, now)),
                }
            }
            section.panel #dead {
                h2 { a href="deadletters" { (t.dead_waiting) } }
                @match dead {
                    Err(e) => p.error { (e.to_string()) },
                    Ok(0) => p.note.empty { (t.dead_none) },
                    Ok(n) => p { strong.count data-n=(n) { (n) } " " a.button href="deadletters" { (t.dead_open) } },
                }
            }
        }
        nav.tabs aria-label=(range) {
            a href="./" aria-current=[(!week).then_some("true")] { (t.last_24h) }
            a href="./?range=7d" aria-current=[week.then_some("true")] { (t.last_7d) }
        }
        @match &stats {
            Err(e) => p.error { (e.to_string()) },
            Ok(stats) => {
                @let total: u64 = stats.iter().flat_map(|h| h.severities.iter().map(|s| s.1)).sum();
                div.grid {
                    section.panel #per-hour {
                        h2 { (t.per_hour) " · " (range) }
                        @if total == 0 {
                            p.note.empty { (t.no_data) }
                        } @else {
                            p.note { (t.chart_total) " " strong.total { (total) } " " (t.notifications) }
                            (chart::per_hour(t.per_hour, stats, from, hours, cx.tz))
                            ul.legend { @for s in SEVERITIES {
                                li { span class={ "swatch sev-" (s) } {} (s) }
                            } }
                        }
                    }
                    section.panel #top-names {
                        h2 { (t.top_names) " · " (range) }
                        @let top = chart::top_names(stats);
                        @if top.is_empty() {
                            p.note.empty { (t.no_data) }
                        } @else {
                            (chart::bars(t.top_names, &top))
                        }
                    }
                    (time_to_ack(&cx, &inc))
                }
            }
        }
    };
    cx.page(t.nav_overview, "overview", body)
}
