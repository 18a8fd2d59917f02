//! The engine's end of the on-call callbacks: the callback keys taken from the configuration
//! in force ([`callback_keys`]), and the [`Sink`] the service connects to the `/callback/…`
//! endpoints, which turns their events into the engine's acts as the person whose contact the
//! upstream names (a WeCom card's button acknowledges or escalates as the clicker).
//!
//! An event about an incident or a person the engine does not know is ignored (logged): the
//! upstream ids are untrusted text, and an unknown one means nothing.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tracing::{info, warn};

use crate::channels::error::DeliveryError;
use crate::channels::reach::{
    CallbackKeys, Contact, EventSink, OfficialAccountKeys, OncallEvent, PageRef, SinkError,
};
use crate::channels::wecom_app::card::{
    Lang, MEMBER_LIMITS, Page, Sent, UpdateTo, acked_label, count_member,
};
use crate::channels::wxcrypt::MsgCrypt;
use crate::channels::wxpusher::status::Verdict;
use crate::channels::{Env, Integration, Kind, Progress};
use crate::config::oncall::ContactEntry;
use crate::delivery::steps::{Attempt, Claimed, Step};
use crate::runtime::{CONTACT_PREFIX, Runtime, Shared, contact_receiver};
use crate::store::incident::{Incident, IncidentState};
use crate::store::{IntegrationId, Job, NewJob, Store};
use crate::webhook::Notification;

/// The callback keys of the `oncall.channels` entries in force: the WeCom application's
/// token and EncodingAESKey (with its corp id), the Official Account's token (and key in safe
/// mode). A channel without them has no callback endpoint.
pub fn callback_keys(rt: &Runtime) -> CallbackKeys {
    let mut keys = CallbackKeys::default();
    let Some(o) = &rt.config.oncall else {
        return keys;
    };
    // Every person's contact of a kind carries the same `oncall.channels` entry: the first
    // one gives the keys.
    for c in &o.contacts {
        match &c.entry {
            ContactEntry::WecomApp(w) if keys.wecom.is_none() => {
                if let (Some(token), Some(key)) = (&w.callback_token, &w.callback_aes_key) {
                    match MsgCrypt::new(token.clone(), key, w.corp_id.clone()) {
                        Ok(crypt) => keys.wecom = Some(crypt),
                        Err(e) => {
                            warn!(error = %e, "oncall.channels.wecom_app: unusable callback key")
                        }
                    }
                }
            }
            ContactEntry::OfficialAccount(a) if keys.official_account.is_none() => {
                if let Some(token) = &a.callback_token {
                    let crypt = a.callback_aes_key.as_ref().and_then(|key| {
                        MsgCrypt::new(token.clone(), key, a.app_id.clone())
                            .inspect_err(|e| {
                                warn!(error = %e, "oncall.channels.official_account: unusable callback key")
                            })
                            .ok()
                    });
                    keys.official_account = Some(OfficialAccountKeys {
                        token: token.clone(),
                        crypt,
                    });
                }
            }
            ContactEntry::Voice(v) if keys.voice.is_none() => {
                if let Some(secret) = &v.callback_secret {
                    keys.voice = Some((v.provider, secret.clone()));
                }
            }
            _ => {}
        }
    }
    keys
}

/// The person whose contact the upstream names: WeCom userids compared case-insensitively
/// (WeCom lower-cases them in callbacks), openids and numbers exactly.
pub fn person_of(rt: &Runtime, by: &Contact) -> Option<String> {
    rt.config
        .people
        .iter()
        .find(|p| match by {
            Contact::WecomApp { userid } => p
                .contacts
                .wecom_app
                .as_ref()
                .is_some_and(|c| c.userid.eq_ignore_ascii_case(userid)),
            Contact::OfficialAccount { openid } => p
                .contacts
                .official_account
                .as_ref()
                .is_some_and(|c| &c.openid == openid),
            Contact::Voice { number } => p
                .contacts
                .voice
                .as_ref()
                .is_some_and(|c| &c.number == number),
        })
        .map(|p| p.name.clone())
}

/// How the act came (the timeline's `contact` of an acknowledgement).
fn via(page: &PageRef) -> &'static str {
    match page {
        PageRef::WecomCard { .. } => "wecom_card",
        PageRef::OfficialAccount { .. } => "official_account",
        PageRef::Voice { .. } => "voice",
        PageRef::WxPusher { .. } => crate::channels::wxpusher::KIND,
    }
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
                    via(&page),
                    now,
                )
                .await
                .map_err(engine)?;
                info!(
                    incident = inc.id,
                    person,
                    changed = acted.changed,
                    via = via(&page),
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
                    via = via(&page),
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

/// The timeline marker and contact kind of the `sent` entry recording a page.
fn marker(page: &PageRef) -> (String, &'static str) {
    match page {
        PageRef::OfficialAccount { msg_id, .. } => (format!("msgid={msg_id}"), "official_account"),
        PageRef::WecomCard { task_id, .. } => (format!("task_id={task_id}"), "wecom_app"),
        PageRef::Voice { call_id, .. } => (format!("call_id={call_id}"), "voice"),
        PageRef::WxPusher { send_record_id } => (
            format!("sendRecordId={send_record_id}"),
            crate::channels::wxpusher::KIND,
        ),
    }
}

/// The incident, person and time of the `sent` entry recording `page`.
async fn page_of(
    store: &Store,
    rt: &Runtime,
    page: &PageRef,
    now: DateTime<Utc>,
) -> Result<Option<(Incident, String, DateTime<Utc>)>, SinkError> {
    let (marker, contact) = marker(page);
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
    let (marker, contact) = marker(page);
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

/// The timeline event recording what a page went out as (the upstream's ids for it).
const SENT: &str = "sent";
/// The timeline event recording a card greyed out after an acknowledgement.
const CARD_UPDATED: &str = "card_updated";

fn lang(rt: &Runtime) -> Lang {
    match rt.config.global.locale {
        crate::template::Locale::En => Lang::En,
        _ => Lang::Zh,
    }
}

/// The delivery step that sends on-call pages and status updates to people's contacts where
/// their ids must be kept with the incident ([`send`]), and runs WxPusher's status queries
/// (stored jobs of kind [`STATUS_KIND`], [`status_query`]).
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
        let page = n.incident.as_ref().is_some_and(|c| c.update.is_none());
        at.receiver.starts_with(CONTACT_PREFIX)
            && match at.integration.kind {
                Kind::WecomApp(_) => n.incident.is_some(),
                Kind::OfficialAccount(_) | Kind::Voice(_) | Kind::WxPusher(_) => page,
                _ => false,
            }
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

/// Records in incident `id`'s timeline what a page to `person` went out as (`detail`: the
/// upstream's ids for it, which its reports and queries name); `lost` says what a failure to
/// record costs (logged: the page itself went out).
async fn record_sent(
    store: &Store,
    id: i64,
    (person, contact): (&str, &str),
    detail: String,
    now: DateTime<Utc>,
    lost: &str,
) -> bool {
    let recorded = change(store, id, |inc| {
        inc.log(now, SENT, Some(person), Some(contact), Some(detail.clone()));
        true
    })
    .await;
    if let Err(e) = &recorded {
        warn!(incident = id, contact, error = %e, lost, "the page went out but is not recorded with the incident");
    }
    recorded.is_ok()
}

/// Sends one claimed delivery. A page to a person's WeCom contact goes as a button card when
/// the application's callback keys are configured, and the card's `task_id` and
/// `response_code` are recorded in the incident's timeline; a status update saying the
/// incident was acknowledged also greys out every card that person got for it, each with its
/// own `response_code`. Every message to a WeCom member is counted against WeCom's
/// per-member limits; a page past them still goes, marked likely dropped and failed. A page
/// to an Official Account, WxPusher or voice contact keeps the upstream's ids with the
/// incident (what its reports name); a WxPusher page is followed by its status queries.
/// Everything else goes as the integration sends it.
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
    let page = ctx.update.is_none();
    let step = ctx.step;
    match &integration.kind {
        Kind::Voice(voice) if page => call(env, store, rt, voice, person, ctx, n).await,
        Kind::OfficialAccount(oa) if page => {
            let mut ids = Vec::new();
            let result = oa.send_with_ids(env, n, progress, &mut ids).await;
            for (_, msgid) in ids {
                let detail = format!("step {step}: msgid={msgid}");
                let lost = "its delivery report will be ignored";
                record_sent(
                    store,
                    ctx.id,
                    (person, "official_account"),
                    detail,
                    env.now,
                    lost,
                )
                .await;
            }
            result
        }
        Kind::WxPusher(wx) if page => {
            let mut records = Vec::new();
            let result = wx.send_with_records(env, n, progress, &mut records).await;
            // The queries carry the page (incident, person, record, when sent) themselves: the
            // timeline hears only what they learn.
            let queries: Vec<NewJob> = records
                .into_iter()
                .map(|(_, record)| {
                    let job = StatusJob {
                        incident: ctx.id,
                        record,
                        poll: 1,
                        sent: env.now,
                    };
                    job.stored(person, n)
                })
                .collect();
            if !queries.is_empty()
                && let Err(e) = store.enqueue(queries).await
            {
                warn!(incident = ctx.id, error = %e, "cannot queue the WxPusher status queries of a page; it escalates on time");
            }
            result
        }
        Kind::WecomApp(app) => {
            wecom(env, store, rt, app, integration, person, ctx, n, progress).await
        }
        _ => integration.send(env, n, progress).await,
    }
}

/// A message to a person's WeCom application contact (see [`send`]).
#[allow(clippy::too_many_arguments)]
async fn wecom(
    env: &Env<'_>,
    store: &Store,
    rt: &Runtime,
    app: &crate::channels::wecom_app::WecomApp,
    integration: &Integration,
    person: &str,
    ctx: &crate::webhook::IncidentContext,
    n: &Notification,
    progress: &mut Progress,
) -> Result<(), DeliveryError> {
    let userid = rt
        .config
        .people
        .iter()
        .find(|p| p.name == person)
        .and_then(|p| p.contacts.wecom_app.as_ref())
        .map(|c| c.userid.clone());
    let Some(userid) = userid else {
        return integration.send(env, n, progress).await;
    };
    // Counted before sending, pages and status updates alike: each is a message to the member.
    let within = match count_member(store, &app.corp_id, &userid, env.now).await {
        Ok(within) => within,
        Err(e) => {
            warn!(incident = ctx.id, error = %e, "cannot count WeCom's per-member limits; sending uncounted");
            true
        }
    };
    if ctx.update.is_some() {
        integration.send(env, n, progress).await?;
        if ctx.state == IncidentState::Acknowledged.as_str() {
            update_cards(env, store, rt, app, ctx.id, person).await;
        }
        return Ok(());
    }
    let step = ctx.step;
    let preview = env.context_with_preview(n, n, &app.summary, app.summary_max)?;
    let preview = preview["preview"].as_str().unwrap_or_default().to_string();
    let lines: Vec<String> = n
        .alerts
        .iter()
        .filter(|a| a.status == crate::webhook::Status::Firing)
        .map(|a| {
            a.annotations
                .get("summary")
                .or_else(|| a.labels.get("alertname"))
                .cloned()
                .unwrap_or_default()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let page = Page {
        touser: &userid,
        preview: &preview,
        reference: &ctx.reference,
        incident: &ctx.reference,
        step,
        person,
        lines: &lines,
        ack_url: ctx.ack_url.as_deref().unwrap_or_default(),
        lang: lang(rt),
    };
    let detail = if callback_keys(rt).wecom.is_some() {
        match app.send_page(env, &page).await? {
            Sent::Card {
                task_id,
                response_code: Some(code),
                ..
            } => format!("step {step}: card task_id={task_id} response_code={code}"),
            Sent::Card { task_id, .. } => format!("step {step}: card task_id={task_id}"),
            Sent::Textcard { card_error, .. } => {
                format!("step {step}: textcard (card refused: {card_error})")
            }
        }
    } else if !page.ack_url.is_empty() {
        // Without the callback keys no button: the link is the ack path, the textcard's url.
        let msgid = app.send_textcard(env, &page).await?;
        format!("step {step}: textcard msgid={msgid}")
    } else {
        integration.send(env, n, progress).await?;
        format!("step {step}: {}", app.msgtype.as_str())
    };
    let lost = "it will not be updated";
    record_sent(store, ctx.id, (person, "wecom_app"), detail, env.now, lost).await;
    if !within && let Some(m) = env.metrics {
        // WeCom drops it without a word: a failed page (rule 8), though it went out.
        count_page(m, "wecom_app", "failed");
        {
            let detail = format!(
                "step {step}: likely dropped: past WeCom's {} a minute or {} an hour to one member",
                MEMBER_LIMITS[0].2, MEMBER_LIMITS[1].2
            );
            let recorded = outcome(
                store,
                rt,
                m,
                (ctx.id, person, "wecom_app", env.now),
                true,
                detail,
                env.now,
            )
            .await;
            if let Err(e) = recorded {
                warn!(incident = ctx.id, error = %e, "a page likely dropped is not recorded with the incident");
            }
        }
    }
    Ok(())
}

/// A page to a person's voice contact: one call, its ids recorded as a `sent` entry so that
/// the reports (keypress, not answered) find the incident. A call not placed (the number's
/// limit spent, the vendor refusing) is a failed page at once: a `failed` entry, counted as
/// `limited` or `failed`, and the next step now if every page of the step has failed.
async fn call(
    env: &Env<'_>,
    store: &Store,
    rt: &Runtime,
    voice: &crate::channels::voice::Voice,
    person: &str,
    ctx: &crate::webhook::IncidentContext,
    n: &Notification,
) -> Result<(), DeliveryError> {
    let step = ctx.step;
    let placed = voice.page(env, store, n).await;
    let placed = match placed {
        Ok(p) => p,
        Err(e) => {
            let label = e.result_label();
            if let Some(m) = env.metrics {
                count_page(m, crate::channels::voice::KIND, label);
                let detail = format!("step {step}: not placed ({label}): {e}");
                let recorded = outcome(
                    store,
                    rt,
                    m,
                    (ctx.id, person, "voice", env.now),
                    true,
                    detail,
                    env.now,
                )
                .await;
                if let Err(e) = recorded {
                    warn!(incident = ctx.id, error = %e, "a call not placed is not recorded with the incident");
                }
            }
            return Err(e.into_delivery());
        }
    };
    let detail = format!(
        "step {step}: call_id={} out_id={}",
        placed.call_id, placed.out_id
    );
    let lost = "its reports will be ignored";
    record_sent(store, ctx.id, (person, "voice"), detail, env.now, lost).await;
    Ok(())
}

/// Greys out every card `person` got for incident `id` that has a `response_code` not yet
/// spent: "张三 已认领 K7Q2". A code is spent once whatever WeCom answers (never retried).
async fn update_cards(
    env: &Env<'_>,
    store: &Store,
    rt: &Runtime,
    app: &crate::channels::wecom_app::WecomApp,
    id: i64,
    person: &str,
) {
    let Ok(Some(inc)) = store.incident(id).await else {
        return;
    };
    let Some(by) = inc.acknowledged_by.as_deref() else {
        return;
    };
    let label = acked_label(&super::display_name(rt, by), &inc.reference, lang(rt));
    let spent: Vec<&str> = inc
        .timeline
        .iter()
        .filter(|e| e.event == CARD_UPDATED)
        .filter_map(|e| e.detail.as_deref())
        .collect();
    let codes: Vec<(String, String)> = inc
        .timeline
        .iter()
        .filter(|e| e.event == SENT && e.person.as_deref() == Some(person))
        .filter_map(|e| {
            let d = e.detail.as_deref()?;
            let task = d.split("task_id=").nth(1)?.split(' ').next()?.to_string();
            let code = d
                .split("response_code=")
                .nth(1)?
                .split(' ')
                .next()?
                .to_string();
            Some((task, code))
        })
        .filter(|(task, _)| !spent.iter().any(|s| s.contains(task.as_str())))
        .collect();
    let userid = rt
        .config
        .people
        .iter()
        .find(|p| p.name == person)
        .and_then(|p| p.contacts.wecom_app.as_ref())
        .map(|c| c.userid.clone())
        .unwrap_or_default();
    for (task, code) in codes {
        let result = app
            .update_card(env, &code, &UpdateTo::Users(vec![userid.clone()]), &label)
            .await;
        let detail = match &result {
            Ok(()) => format!("task_id={task}: {label}"),
            Err(e) => format!("task_id={task}: not updated: {e}"),
        };
        let _ = change(store, id, |inc| {
            inc.log(
                env.now,
                CARD_UPDATED,
                Some(person),
                Some("wecom_app"),
                Some(detail.clone()),
            );
            true
        })
        .await;
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

/// The job kind of a WxPusher page's status query: taken out of the delivery round by
/// [`Cards`], never sent.
pub const STATUS_KIND: &str = "oncall_status";

/// When a WxPusher page's status is asked, after it went out: a few times, no more (the
/// API allows about 2 calls a second per app, and the status is only a hint).
pub const STATUS_POLLS: [chrono::Duration; 2] = [
    chrono::Duration::seconds(30),
    chrono::Duration::seconds(120),
];

/// One stored status query: the `poll`-th (from 1) of send record `record`, the page to a
/// person of incident `incident` sent at `sent`. Its stored identity names all of it, so the
/// query needs nothing else to find its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusJob {
    pub incident: i64,
    pub record: i64,
    pub poll: usize,
    pub sent: DateTime<Utc>,
}

impl StatusJob {
    /// The stored identity; unique, so each query is stored once.
    pub fn id(&self) -> IntegrationId {
        IntegrationId(format!(
            "status-wxpusher-{}-{}-{}-{}",
            self.incident,
            self.record,
            self.poll,
            self.sent.timestamp_millis()
        ))
    }

    pub fn parse(id: &IntegrationId) -> Option<StatusJob> {
        let mut p = id.as_str().strip_prefix("status-wxpusher-")?.split('-');
        let (incident, record, poll, sent) = (p.next()?, p.next()?, p.next()?, p.next()?);
        Some(StatusJob {
            incident: incident.parse().ok()?,
            record: record.parse().ok()?,
            poll: poll.parse().ok()?,
            sent: DateTime::from_timestamp_millis(sent.parse().ok()?)?,
        })
    }

    /// When it is due: [`STATUS_POLLS`] after the page; `None` past the last.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        let after = STATUS_POLLS.get(self.poll.checked_sub(1)?)?;
        Some(self.sent + *after)
    }

    /// The stored job, under the person's contacts, carrying only the group (no alerts, no
    /// incident context: it is no page).
    fn stored(&self, person: &str, n: &Notification) -> NewJob {
        let mut shell = n.without_alerts();
        shell.incident = None;
        NewJob {
            receiver: contact_receiver(person),
            integration: self.id(),
            kind: STATUS_KIND.to_string(),
            notification: std::sync::Arc::new(shell),
            accepted_at: self.due().unwrap_or(self.sent),
            fallback: false,
        }
    }
}

impl Cards {
    /// Settles a claimed status query, queueing the next one (if any) in the same write, so
    /// the chain survives a restart and no query is asked twice by a claim given back; then
    /// asks off the worker's loop (the query waits its turn in the app's rate limit).
    async fn start_query(&self, store: &Store, job: Job) {
        let parsed = StatusJob::parse(&job.integration);
        let person = job
            .receiver
            .strip_prefix(CONTACT_PREFIX)
            .map(str::to_string);
        let (Some(query), Some(person)) = (parsed, person) else {
            warn!(job = job.id, "dropping a status query it cannot read");
            let _ = store.complete(vec![job.id], Vec::new()).await;
            return;
        };
        let next = StatusJob {
            poll: query.poll + 1,
            ..query
        };
        let next = next.due().map(|_| next.stored(&person, &job.notification));
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
            status_query(&store, &rt, &metrics, &query, &person, Utc::now()).await;
        });
    }
}

/// Asks WxPusher what became of `person`'s page `query` names, unless the incident no longer
/// waits (acknowledged, resolved) or an earlier answer was final. Failed is a failed page
/// (rule 8: the next step at once when every page of the step failed); delivered, waiting or
/// anything else is a timeline entry only: a status is never a read receipt, never an
/// acknowledgement.
pub async fn status_query(
    store: &Store,
    rt: &Runtime,
    metrics: &crate::metrics::Metrics,
    query: &StatusJob,
    person: &str,
    now: DateTime<Utc>,
) {
    let (incident, record) = (query.incident, query.record);
    let contact = crate::channels::wxpusher::KIND;
    let (marker, _) = marker(&PageRef::WxPusher {
        send_record_id: record,
    });
    let inc = match store.incident(incident).await {
        Ok(Some(inc)) => inc,
        Ok(None) => return,
        Err(e) => {
            warn!(incident, error = %e, "cannot read the incident of a status query; not asked");
            return;
        }
    };
    let concluded = inc.timeline.iter().any(|e| {
        matches!(e.event.as_str(), "failed" | "delivered")
            && e.contact.as_deref() == Some(contact)
            && e.detail.as_deref().is_some_and(|d| d.starts_with(&marker))
    });
    if inc.state != IncidentState::Triggered || concluded {
        return;
    }
    let wx = rt.contacts.get(person).and_then(|list| {
        list.iter().find_map(|i| match &i.kind {
            Kind::WxPusher(w) => Some(w),
            _ => None,
        })
    });
    let Some(wx) = wx else {
        info!(
            incident,
            person, "no WxPusher contact any more; status not asked"
        );
        return;
    };
    let status = match wx.query_status(&rt.env(now), record).await {
        Ok(s) => s,
        Err(e) => {
            warn!(incident, person, error = %e, "WxPusher status query failed; asked again at the next poll, if any");
            return;
        }
    };
    let detail = match status.data {
        Some(d) => format!("{marker}: {} (status {d})", status.text),
        None => format!("{marker}: {}", status.text),
    };
    let result = match status.verdict {
        Verdict::Failed | Verdict::Delivered => {
            let failed = status.verdict == Verdict::Failed;
            if failed {
                count_page(metrics, contact, "failed");
            }
            let page = (incident, person, contact, query.sent);
            outcome(store, rt, metrics, page, failed, detail, now).await
        }
        Verdict::Waiting | Verdict::Unknown => change(store, incident, |inc| {
            inc.log(
                now,
                DELIVERY_STATUS,
                Some(person),
                Some(contact),
                Some(detail.clone()),
            );
            true
        })
        .await
        .map_err(super::ActError::from),
    };
    if let Err(e) = result {
        warn!(incident, error = %e, "a WxPusher status is not recorded with the incident");
    }
}

/// The timeline event of a status answer that concludes nothing yet (waiting, unknown).
const DELIVERY_STATUS: &str = "delivery_status";
