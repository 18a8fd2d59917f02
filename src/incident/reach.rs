//! The engine's end of the on-call callbacks: the callback keys taken from the configuration
//! in force ([`callback_keys`]), and the [`Sink`] the service connects to the `/callback/…`
//! endpoints, which turns their events into the engine's acts as the person whose contact the
//! upstream names (a card's button acknowledges or escalates as the clicker); and the
//! delivery step ([`Cards`]) through which the channels that keep their pages' ids with the
//! incident send to people's contacts and ask what became of a page, at the engine's
//! [`Desk`]: it records what they report and decides what a failed page means (the next
//! step at once when every page of the step failed). It names no channel: each one's
//! handling is in its folder's `oncall.rs`, reached through the channels' registry.
//!
//! An event about an incident or a person the engine does not know is ignored (logged): the
//! upstream ids are untrusted text, and an unknown one means nothing.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tracing::{info, warn};

use crate::channels::error::DeliveryError;
pub use crate::channels::reach::STATUS_KIND;
use crate::channels::reach::{
    CallbackKeys, Contact, Desk, EventSink, OncallEvent, PageRef, SENT, SinkError,
};
use crate::channels::{Env, Integration, Progress};
use crate::delivery::steps::{Attempt, Claimed, Step};
use crate::runtime::{CONTACT_PREFIX, Runtime, Shared, contact_receiver};
use crate::store::incident::{Incident, IncidentState};
use crate::store::{Job, Store};
use crate::webhook::Notification;

/// The callback keys of the `oncall.channels` entries in force: the WeCom application's
/// token and EncodingAESKey (with its corp id), the Official Account's token (and key in safe
/// mode). A channel without them has no callback endpoint.
pub fn callback_keys(rt: &Runtime) -> CallbackKeys {
    match &rt.config.oncall {
        Some(o) => CallbackKeys::of(o.contacts.iter().map(|c| &c.entry)),
        None => CallbackKeys::default(),
    }
}

/// The person whose contact the upstream names: WeCom userids compared case-insensitively
/// (WeCom lower-cases them in callbacks), openids and numbers exactly.
pub fn person_of(rt: &Runtime, by: &Contact) -> Option<String> {
    rt.config
        .people
        .iter()
        .find(|p| by.among(&p.contacts))
        .map(|p| p.name.clone())
}

/// The engine as the callbacks' sink: reads the runtime in force at each event.
pub struct Sink {
    store: Store,
    runtime: Shared,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Sink {
    pub fn new(
        store: Store,
        runtime: Shared,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Sink {
        Sink {
            store,
            runtime,
            metrics,
        }
    }

    /// The incident and the person an act is about: the incident its reference names and
    /// the person whose contact acted (a card's button), or, when the event names no
    /// incident (a keypress), both from the `sent` entry of the page it answers. `None`
    /// (logged) when the engine knows neither: the ids are untrusted text.
    async fn actor(
        &self,
        rt: &Runtime,
        by: &Contact,
        reference: Option<&str>,
        page: &PageRef,
        now: DateTime<Utc>,
    ) -> Result<Option<(Incident, String)>, SinkError> {
        let Some(reference) = reference else {
            let found = page_of(&self.store, rt, page, now).await?;
            if found.is_none() {
                info!(page = ?page, contact = ?by, "an act for a page not known to the engine; ignored");
            }
            return Ok(found.map(|(inc, person, _)| (inc, person)));
        };
        let Some(inc) = super::by_reference(&self.store, rt, reference, now)
            .await
            .map_err(|e| SinkError::Engine(e.to_string()))?
        else {
            info!(reference, "an act for an unknown incident; ignored");
            return Ok(None);
        };
        let Some(person) = person_of(rt, by) else {
            info!(incident = inc.id, contact = ?by, "an act from nobody configured; ignored");
            return Ok(None);
        };
        Ok(Some((inc, person)))
    }

    /// Applies one event; `Err` only when the store failed (the upstream sends it again).
    pub async fn handle(&self, event: OncallEvent, now: DateTime<Utc>) -> Result<(), SinkError> {
        let rt = self.runtime.load_full();
        let engine = |e: super::ActError| SinkError::Engine(e.to_string());
        match event {
            OncallEvent::Ack { by, incident, page } => {
                let Some((inc, person)) = self
                    .actor(&rt, &by, incident.as_deref(), &page, now)
                    .await?
                else {
                    return Ok(());
                };
                let acted = super::acknowledge(
                    &self.store,
                    &rt,
                    &self.metrics,
                    inc.id,
                    &person,
                    page.via(),
                    now,
                )
                .await
                .map_err(engine)?;
                info!(
                    incident = inc.id,
                    person,
                    changed = acted.changed,
                    via = page.via(),
                    "acknowledged by a callback"
                );
            }
            OncallEvent::Escalate {
                by,
                incident,
                from_step,
                page,
            } => {
                let Some((inc, person)) = self.actor(&rt, &by, Some(&incident), &page, now).await?
                else {
                    return Ok(());
                };
                let acted = super::escalate(
                    &self.store,
                    &rt,
                    &self.metrics,
                    inc.id,
                    Some(from_step),
                    &person,
                    now,
                )
                .await
                .map_err(engine)?;
                info!(
                    incident = inc.id,
                    person,
                    from_step,
                    changed = acted.changed,
                    via = page.via(),
                    "escalation asked by a callback"
                );
            }
            OncallEvent::PageFailed { page, failure } => {
                report(
                    &self.store,
                    &rt,
                    &self.metrics,
                    &page,
                    true,
                    Some(failure.detail),
                    now,
                )
                .await?;
            }
            OncallEvent::Delivered { page } => {
                report(&self.store, &rt, &self.metrics, &page, false, None, now).await?;
            }
        }
        Ok(())
    }
}

/// The incident, person and time of the `sent` entry recording `page`.
async fn page_of(
    store: &Store,
    rt: &Runtime,
    page: &PageRef,
    now: DateTime<Utc>,
) -> Result<Option<(Incident, String, DateTime<Utc>)>, SinkError> {
    let (marker, contact) = page.marker();
    let names = |d: &str| d.split(' ').any(|w| w == marker);
    let all = store
        .incidents(super::keep_since(rt, now))
        .await
        .map_err(|e| SinkError::Engine(e.to_string()))?;
    Ok(all.into_iter().find_map(|inc| {
        let e = inc.timeline.iter().find(|e| {
            e.event == SENT
                && e.contact.as_deref() == Some(contact)
                && e.detail.as_deref().is_some_and(names)
        })?;
        let (person, at) = (e.person.clone()?, e.at);
        Some((inc, person, at))
    }))
}

/// A delivery report about a page recorded as sent (`failed`, with the upstream's words in
/// `why`): a timeline entry, a failed one counted in `oncall_pages_total`; when every page of
/// the current step and loop has failed, the next step now (rule 8). A report about an
/// earlier step goes to the timeline only.
async fn report(
    store: &Store,
    rt: &Runtime,
    metrics: &crate::metrics::Metrics,
    page: &PageRef,
    failed: bool,
    why: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), SinkError> {
    let (marker, contact) = page.marker();
    let Some((inc, person, sent_at)) = page_of(store, rt, page, now).await? else {
        info!(page = ?page, "a delivery report for a page not known to the engine; ignored");
        return Ok(());
    };
    let detail = match &why {
        Some(why) => format!("{marker}: {why}"),
        None => marker.clone(),
    };
    if failed {
        count_page(metrics, contact, "failed");
    }
    outcome(
        store,
        rt,
        metrics,
        (inc.id, &person, contact, sent_at),
        failed,
        detail,
        now,
    )
    .await
    .map_err(|e| SinkError::Engine(e.to_string()))
}

fn count_page(metrics: &crate::metrics::Metrics, contact: &str, result: &'static str) {
    metrics
        .oncall_pages
        .get_or_create(&crate::metrics::PageLabels {
            contact: contact.to_string(),
            result,
        })
        .inc();
}

/// Records what became of a page (`failed` or `delivered`) in its incident's timeline; when
/// every page of the current step and loop has failed, the next step now (rule 8).
async fn outcome(
    store: &Store,
    rt: &Runtime,
    metrics: &crate::metrics::Metrics,
    (id, person, contact, sent_at): (i64, &str, &str, DateTime<Utc>),
    failed: bool,
    detail: String,
    now: DateTime<Utc>,
) -> Result<(), super::ActError> {
    let event = if failed { "failed" } else { "delivered" };
    {
        let inc_id = id;
        let mut all_failed = None;
        change(store, inc_id, |inc| {
            inc.log(
                now,
                event,
                Some(person),
                Some(contact),
                Some(detail.clone()),
            );
            all_failed = (failed && every_page_failed(inc, sent_at)).then_some(inc.step);
            true
        })
        .await?;
        if let Some(step) = all_failed {
            info!(
                incident = inc_id,
                step, "every page of the step failed: the next step now"
            );
            super::escalate(
                store,
                rt,
                metrics,
                inc_id,
                Some(step),
                "delivery failed",
                now,
            )
            .await?;
        }
        Ok(())
    }
}

/// Rule 8: whether the page sent at `sent_at` belongs to the current step and loop of a
/// triggered incident, and every page of that step and loop has a `failed` entry since the
/// step began.
fn every_page_failed(inc: &Incident, sent_at: DateTime<Utc>) -> bool {
    if inc.state != IncidentState::Triggered {
        return false;
    }
    let began = inc
        .timeline
        .iter()
        .rev()
        .find(|e| matches!(e.event.as_str(), "triggered" | "escalated" | "retriggered"))
        .map(|e| e.at);
    let Some(began) = began else {
        return false;
    };
    if sent_at < began {
        return false;
    }
    let pages: Vec<_> = inc
        .paged
        .iter()
        .filter(|p| p.step == inc.step && p.loop_ == inc.loop_)
        .collect();
    !pages.is_empty()
        && pages.iter().all(|p| {
            inc.timeline.iter().any(|e| {
                e.event == "failed"
                    && e.at >= began
                    && e.person.as_deref() == Some(p.person.as_str())
                    && e.contact.as_deref() == Some(p.contact.as_str())
            })
        })
}

impl EventSink for Sink {
    fn accept(
        &self,
        event: OncallEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        Box::pin(self.handle(event, Utc::now()))
    }
}

/// The delivery step that sends on-call pages and status updates to people's contacts through
/// the channels that keep their ids with the incident ([`send`]), and runs the status queries
/// of pages (stored jobs of kind [`STATUS_KIND`]).
pub struct Cards {
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The configuration in force when a status query runs (it runs off the worker's loop).
    runtime: Shared,
}

impl Cards {
    pub fn new(metrics: std::sync::Arc<crate::metrics::Metrics>, runtime: Shared) -> Cards {
        Cards { metrics, runtime }
    }
}

impl Step for Cards {
    fn sends(&self, at: &Attempt<'_>, n: &Notification) -> bool {
        at.receiver.starts_with(CONTACT_PREFIX)
            && at.integration.pager().is_some_and(|p| p.sends(n))
    }

    fn claimed<'a>(
        &'a self,
        store: &'a Store,
        _: &'a Runtime,
        jobs: Vec<Job>,
    ) -> BoxFuture<'a, Claimed> {
        Box::pin(async move {
            let (queries, jobs): (Vec<Job>, Vec<Job>) =
                jobs.into_iter().partition(|j| j.kind == STATUS_KIND);
            for job in queries {
                self.start_query(store, job).await;
            }
            Claimed {
                jobs,
                queued: false,
                merged: Vec::new(),
            }
        })
    }

    fn send<'a>(
        &'a self,
        at: &'a Attempt<'a>,
        env: &'a Env<'a>,
        n: &'a Notification,
        progress: &'a mut Progress,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(send(
            env,
            at.store,
            at.runtime,
            at.receiver,
            at.integration,
            n,
            progress,
        ))
    }

    fn prepare<'a>(
        &'a self,
        _: &'a Attempt<'a>,
        _: &'a mut Notification,
        _: &'a mut Vec<String>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Sends one claimed delivery. A page or status update to a person's contact of a kind that
/// keeps its pages' ids with the incident goes through the channel's own sending
/// ([`crate::channels::reach::Pager`]), at the engine's [`Desk`]; everything else goes as the
/// integration sends it.
pub async fn send(
    env: &Env<'_>,
    store: &Store,
    rt: &Runtime,
    receiver: &str,
    integration: &Integration,
    n: &Notification,
    progress: &mut Progress,
) -> Result<(), DeliveryError> {
    let (Some(person), Some(ctx)) = (receiver.strip_prefix(CONTACT_PREFIX), &n.incident) else {
        return integration.send(env, n, progress).await;
    };
    let Some(pager) = integration.pager().filter(|p| p.sends(n)) else {
        return integration.send(env, n, progress).await;
    };
    let desk = Clerk {
        store,
        rt,
        metrics: env.metrics,
        incident: ctx.id,
        person,
        now: env.now,
    };
    pager
        .send_oncall(&desk, integration, env, n, progress)
        .await
}

/// The engine's [`Desk`] for one person's pages of one incident, at one time.
struct Clerk<'a> {
    store: &'a Store,
    rt: &'a Runtime,
    /// Where failed pages are counted; `None` outside the delivery workers, where nothing
    /// is counted or concluded.
    metrics: Option<&'a crate::metrics::Metrics>,
    incident: i64,
    person: &'a str,
    now: DateTime<Utc>,
}

impl Desk for Clerk<'_> {
    fn store(&self) -> &Store {
        self.store
    }

    fn incident(&self) -> i64 {
        self.incident
    }

    fn person(&self) -> &str {
        self.person
    }

    fn receiver(&self) -> String {
        contact_receiver(self.person)
    }

    fn recipient(&self, kind: &str) -> Option<String> {
        self.rt
            .config
            .people
            .iter()
            .find(|p| p.name == self.person)
            .and_then(|p| p.contacts.recipient(kind))
            .map(str::to_string)
    }

    fn display_name(&self, person: &str) -> String {
        super::display_name(self.rt, person)
    }

    fn locale(&self) -> crate::template::Locale {
        self.rt.config.global.locale
    }

    fn keys(&self) -> CallbackKeys {
        callback_keys(self.rt)
    }

    fn contacts(&self) -> &[Integration] {
        self.rt
            .contacts
            .get(self.person)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn env(&self) -> Env<'_> {
        self.rt.env(self.now)
    }

    fn log<'a>(
        &'a self,
        event: &'a str,
        contact: &'a str,
        detail: String,
    ) -> BoxFuture<'a, Result<(), crate::store::StoreError>> {
        Box::pin(change(self.store, self.incident, move |inc| {
            inc.log(
                self.now,
                event,
                Some(self.person),
                Some(contact),
                Some(detail.clone()),
            );
            true
        }))
    }

    fn sent<'a>(&'a self, contact: &'a str, detail: String, lost: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let recorded = change(self.store, self.incident, |inc| {
                inc.log(
                    self.now,
                    SENT,
                    Some(self.person),
                    Some(contact),
                    Some(detail.clone()),
                );
                true
            })
            .await;
            if let Err(e) = &recorded {
                warn!(incident = self.incident, contact, error = %e, lost, "the page went out but is not recorded with the incident");
            }
        })
    }

    fn outcome<'a>(
        &'a self,
        contact: &'a str,
        failed: Option<&'static str>,
        sent_at: DateTime<Utc>,
        detail: String,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(metrics) = self.metrics else {
                return Ok(());
            };
            if let Some(result) = failed {
                count_page(metrics, contact, result);
            }
            let page = (self.incident, self.person, contact, sent_at);
            let failed = failed.is_some();
            outcome(self.store, self.rt, metrics, page, failed, detail, self.now)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// A timeline change to incident `id`, compare-and-set, tried again when another change came
/// first.
async fn change(
    store: &Store,
    id: i64,
    mut f: impl FnMut(&mut Incident) -> bool,
) -> Result<(), crate::store::StoreError> {
    for _ in 0..8 {
        let Some(mut inc) = store.incident(id).await? else {
            return Ok(());
        };
        if !f(&mut inc) {
            return Ok(());
        }
        if store.incident_update(&inc).await? {
            return Ok(());
        }
    }
    Err(crate::store::StoreError::Db(
        "the incident kept changing under this change".into(),
    ))
}

impl Cards {
    /// Settles a claimed status query, queueing the next one (if any) in the same write, so
    /// the chain survives a restart and no query is asked twice by a claim given back; then
    /// asks off the worker's loop (the query waits its turn in the upstream's rate limit).
    async fn start_query(&self, store: &Store, job: Job) {
        let parsed = crate::channels::status_query(&job.integration);
        let person = job
            .receiver
            .strip_prefix(CONTACT_PREFIX)
            .map(str::to_string);
        let (Some(query), Some(person)) = (parsed, person) else {
            warn!(job = job.id, "dropping a status query it cannot read");
            let _ = store.complete(vec![job.id], Vec::new()).await;
            return;
        };
        let next = query.next(&contact_receiver(&person), &job.notification);
        if let Err(e) = store
            .complete(vec![job.id], next.into_iter().collect())
            .await
        {
            warn!(job = job.id, error = %e, "cannot settle a status query; it is claimed again");
            return;
        }
        let (store, rt, metrics) = (
            store.clone(),
            self.runtime.load_full(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            let desk = Clerk {
                store: &store,
                rt: &rt,
                metrics: Some(&metrics),
                incident: query.incident(),
                person: &person,
                now: Utc::now(),
            };
            query.ask(&desk).await;
        });
    }
}
