//! The console's pages besides the overview: the template playground, the deliveries, the
//! dead letters, who is on call with the schedule overrides, and the incidents. What a page
//! can know on the server it renders; what changes (rendering, replaying, overrides,
//! incidents) the script does through the JSON API.

use std::sync::Arc;

use axum::extract::{Query, RawQuery, State};
use axum::response::Response;
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Cx, long};
use crate::server::App;
use crate::store::history::{Delivery, DeliveryState, HistoryFilter};

pub(super) async fn playground(cx: Cx) -> Response {
    let t = cx.t;
    let body = html! {
        h1 { (t.playground) }
        p.note { (t.playground_note) }
        section.controls {
            label { (t.receiver) " "
                select #receiver {
                    option value="" { (t.route_tree_picks) }
                    @for name in cx.runtime.receivers.keys() { option { (name) } }
                }
            }
            label { (t.payload) " "
                select #example { option value="" { (t.pick_payload) } }
            }
            label.wide { (t.payload_json) " " textarea #payload rows="10" spellcheck="false" {} }
            details #templates-box {
                summary { (t.templates) }
                p.note {
                    (t.templates_note) " "
                    @for name in crate::channels::EXAMPLE_TEMPLATES { code { (name) } ", " }
                    "…)"
                }
                div #templates {}
                button type="button" #add-template { (t.add_template) }
            }
            div.buttons {
                button type="button" #render { (t.render) }
                button type="button" #send-test .danger { (t.send_test) }
            }
        }
        p #error .error role="alert" hidden {}
        p #status .note role="status" {}
        section #results {}
    };
    cx.page(t.playground, "playground", body)
}

#[derive(Debug, Default, Deserialize)]
struct DeliveriesQuery {
    receiver: Option<String>,
    status: Option<String>,
    alertname: Option<String>,
    limit: Option<usize>,
}

fn state_cell(cx: &Cx, d: &Delivery) -> Markup {
    let t = cx.t;
    let s = d.state.as_str();
    html! {
        span class={ "state state-" (s) } { (t.state(s)) }
        @match d.state {
            DeliveryState::Sent => { " " (t.at) " " (cx.time_opt(d.sent_at)) }
            DeliveryState::Retrying => {
                ", " (t.next_attempt) " " (cx.time_opt(d.next_attempt))
                br;
                span.err { (long(d.last_error.as_deref().unwrap_or(""))) }
            }
            DeliveryState::Dead => {
                br;
                span.err { (long(d.last_error.as_deref().unwrap_or(""))) }
            }
            DeliveryState::Merged => { " " (t.into_digest) " " (d.digest.unwrap_or_default()) }
            DeliveryState::Suppressed => { " " (t.as_duplicate) }
            DeliveryState::Queued => {
                @if let Some(n) = d.merged { " (" (t.digest_of) " " (n) ")" }
            }
        }
    }
}

pub(super) async fn deliveries(
    State(app): State<Arc<App>>,
    cx: Cx,
    RawQuery(raw): RawQuery,
) -> Response {
    let t = cx.t;
    let q: DeliveriesQuery = raw
        .as_deref()
        .and_then(|r| Query::<DeliveriesQuery>::try_from_uri(&format!("/?{r}").parse().ok()?).ok())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let state = nonempty(&q.status).and_then(|s| DeliveryState::parse(&s));
    let filter = HistoryFilter {
        receiver: nonempty(&q.receiver),
        state,
        alertname: nonempty(&q.alertname),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let form = html! {
        form.filters method="get" action="deliveries" {
            label { (t.receiver) " "
                select name="receiver" {
                    option value="" { (t.any_receiver) }
                    @for name in cx.runtime.receivers.keys() {
                        option value=(name) selected[filter.receiver.as_deref() == Some(name)] { (name) }
                    }
                }
            }
            label { (t.status) " "
                select name="status" {
                    option value="" { (t.any_status) }
                    @for s in ["queued", "sent", "retrying", "dead", "suppressed", "merged"] {
                        option value=(s) selected[state.map(DeliveryState::as_str) == Some(s)] { (t.state(s)) }
                    }
                }
            }
            label { (t.alert_name) " " input name="alertname" value=(filter.alertname.as_deref().unwrap_or("")); }
            button type="submit" { (t.filter) }
        }
    };
    let list = app.queue.store.history(filter).await;
    let body = html! {
        h1 { (t.deliveries) }
        (form)
        @match &list {
            Err(e) => p.error { (e.to_string()) },
            Ok(list) if list.is_empty() => p.note #empty { (t.no_deliveries) },
            Ok(list) => div.table { table #deliveries .cards {
                thead { tr {
                    th { "#" } th { (t.accepted) } th { (t.receiver) } th { (t.alert_name) }
                    th { (t.status) } th { (t.tries) } th { (t.links) }
                } }
                tbody { @for d in list {
                    tr data-state=(d.state.as_str()) {
                        td data-label="#" { (d.id) }
                        td data-label=(t.accepted) { (cx.time(d.accepted_at)) }
                        td data-label=(t.receiver) {
                            (d.receiver) br;
                            small { (d.kind) " · " (long(&d.integration)) }
                        }
                        td data-label=(t.alert_name) { (t.state(&d.status)) ": " (long(&d.alertnames.join(", "))) }
                        td data-label=(t.status) { (state_cell(&cx, d)) }
                        td data-label=(t.tries) { (d.attempts) }
                        td data-label=(t.links) {
                            @if let Some(u) = &d.external_url {
                                a href=(u) rel="noreferrer" target="_blank" { (t.source) } " "
                            }
                            @for (i, u) in d.generator_urls.iter().enumerate() {
                                a href=(u) rel="noreferrer" target="_blank" { (t.alert_n) " " (i + 1) } " "
                            }
                        }
                    }
                } }
            } }
        }
    };
    cx.page(t.deliveries, "deliveries", body)
}

pub(super) async fn dead_letters(State(app): State<Arc<App>>, cx: Cx) -> Response {
    let t = cx.t;
    let list = crate::delivery::dead_letter_items(&app.queue.store).await;
    let body = html! {
        h1 { (t.deadletters) }
        p.note { (t.deadletters_note) }
        div.buttons {
            button type="button" #replay-all { (t.replay_all) }
            button type="button" #purge .danger { (t.purge_all) }
        }
        p #error .error role="alert" hidden {}
        p #status .note role="status" {}
        @match &list {
            Err(e) => p.error { (e.to_string()) },
            Ok(list) if list.is_empty() => p.note #empty { (t.no_deadletters) },
            Ok(list) => div.table { table #deadletters .cards {
                thead { tr {
                    th { "ID" } th { (t.failed) } th { (t.receiver) } th { (t.alert_name) }
                    th { (t.tries) } th { (t.reason_error) } th {}
                } }
                tbody { @for d in list {
                    tr data-id=(d.id) {
                        td data-label="ID" { (d.id) }
                        td data-label=(t.failed) { (cx.time_opt(d.failed_at)) }
                        td data-label=(t.receiver) { (d.receiver) br; small { (d.kind) } }
                        td data-label=(t.alert_name) { (d.alerts) ": " (long(&d.alertnames.join(", "))) }
                        td data-label=(t.tries) { (d.attempts) }
                        td data-label=(t.reason_error) {
                            code { (d.reason) } " "
                            span.err { (long(&d.last_error)) }
                        }
                        td.actions { button type="button" .replay data-id=(d.id) { (t.replay) } }
                    }
                } }
            } }
        }
    };
    cx.page(t.deadletters, "deadletters", body)
}

/// A person as the page names them: the display name, and the configured name beside it.
pub(super) fn person(cx: &Cx, name: &str) -> Markup {
    let shown = cx
        .runtime
        .config
        .people
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.display_name.as_deref());
    html! {
        span.person {
            @if let Some(d) = shown { (d) " " small { "(" (name) ")" } } @else { (name) }
        }
    }
}

pub(super) async fn oncall(State(app): State<Arc<App>>, cx: Cx) -> Response {
    let t = cx.t;
    let now = Utc::now();
    let overrides = app.queue.store.overrides(now).await;
    let schedules = &cx.runtime.config.schedules;
    let people = &cx.runtime.config.people;
    let body = html! {
        h1 { (t.oncall) }
        p #error .error role="alert" hidden {}
        p #status .note role="status" {}
        @match &overrides {
            Err(e) => p.error { (e.to_string()) },
            Ok(overrides) => {
                @if schedules.is_empty() {
                    p.note #empty { (t.no_schedules) }
                } @else {
                    (super::overview::on_call_list(&cx, overrides, now))
                    h2 { (t.overrides) }
                    @let mine: Vec<_> = overrides.iter().filter(|o| o.end > now).collect();
                    @if mine.is_empty() {
                        p.note #no-overrides { (t.no_overrides) }
                    } @else {
                        ul.items #overrides { @for o in mine {
                            li.item data-id=(o.id) {
                                div {
                                    strong { (o.schedule) } " · " (person(&cx, &o.person)) " " (t.covers) " "
                                    @if let Some(r) = &o.replaces {
                                        @if !t.replaces.is_empty() { (t.replaces) " " }
                                        (person(&cx, r))
                                    } @else { (t.whoever) }
                                }
                                div.note { (t.from) " " (cx.time(o.start)) " " (t.until) " " (cx.time(o.end)) }
                                button type="button" .delete-override data-schedule=(o.schedule) data-id=(o.id) { (t.delete) }
                            }
                        } }
                    }
                    h2 { (t.cover_title) }
                    p.note { (t.cover_note) }
                    form #cover .stack {
                        label { (t.schedule) " "
                            select name="schedule" { @for s in schedules { option value=(s.name) { (s.name) } } }
                        }
                        label { (t.cover_person) " "
                            select name="person" { @for p in people { option value=(p.name) { (p.display_name.as_deref().unwrap_or(&p.name)) } } }
                        }
                        label { (t.cover_replaces) " "
                            select name="replaces" {
                                option value="" { (t.whoever) }
                                @for p in people { option value=(p.name) { (p.display_name.as_deref().unwrap_or(&p.name)) } }
                            }
                        }
                        label { (t.cover_until) " (" (cx.tz.name()) ") " input type="datetime-local" name="until" required; }
                        button type="submit" { (t.cover_add) }
                    }
                }
            }
        }
    };
    cx.page(t.oncall, "oncall", body)
}

pub(super) async fn incidents(cx: Cx) -> Response {
    let t = cx.t;
    let body = html! {
        h1 { (t.incidents) }
        p.note { (t.incidents_note) }
        form.filters #incident-filter {
            label { (t.status) " "
                select name="state" {
                    option value="" { (t.any_state) }
                    @for s in ["triggered", "acknowledged", "resolved"] { option value=(s) { (t.state(s)) } }
                }
            }
        }
        p #error .error role="alert" hidden {}
        p #status .note role="status" { (t.loading) }
        section #incidents .items {}
    };
    cx.page(t.incidents, "incidents", body)
}
