//! Accepting a webhook: validated, then either routed, deduplicated and queued before the
//! answer (one commit), or, under load, appended as received and answered at once, to be
//! routed right after by [`route_appended`] — the way a log-structured queue accepts.
//!
//! Both answers mean the same: the notification is committed to the store and survives a
//! crash or a power loss. A webhook is appended when more than `storage.accept_inline` are
//! being accepted at once, or while appended ones still wait (so that arrival order holds).
//! Its answer then cannot say whether it was a duplicate: dedupe runs when it is routed, and
//! its outcome is counted in the metrics as for any other.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tracing::{error, warn};

use super::{App, auth, read_body};
use crate::dedupe;
use crate::delivery::fanout::{Origin, fan_out};
use crate::metrics::{Metrics, ReasonLabels, StatusLabels};
use crate::runtime::Runtime;
use crate::store::inbox::Inboxed;
use crate::store::{Admission, StoreError};
use crate::webhook::{Notification, Received, Source, Status};

/// Appended webhooks routed per store request: the request holds the store's writer, and
/// the accept path waits for it. (256 wrote a quarter less once the accept path paused, but
/// held 66 MB at the peak.)
const CHUNK: usize = 64;

/// While webhooks are being accepted, appended ones are routed at least this often (one
/// [`CHUNK`] each time), and at once whenever none is being accepted.
const PACE: Duration = Duration::from_millis(100);

/// After a failed routing request (the store full or failing), the wait before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// What the accept path and [`route_appended`] share.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Webhooks appended (or being appended) and not routed yet. Counted up before the
    /// append, down once routed: never below what the store holds.
    pending: AtomicI64,
    /// Webhooks being accepted now.
    accepting: AtomicUsize,
    /// A webhook was appended.
    appended: Notify,
    /// None is being accepted any more.
    quiet: Notify,
}

/// One webhook being accepted, counted while it lives.
struct Accepting<'a>(&'a Inbox);

impl Inbox {
    /// Sets `alertmanager_wechat_webhooks_pending`.
    fn show(&self, metrics: &Metrics) {
        metrics
            .webhooks_pending
            .set(self.pending.load(Ordering::SeqCst).max(0));
    }

    fn enter(&self) -> (Accepting<'_>, usize) {
        let now = self.accepting.fetch_add(1, Ordering::SeqCst) + 1;
        (Accepting(self), now)
    }

    /// Waits for routing's turn: at once when no webhook is being accepted, else once none
    /// is or after [`PACE`].
    async fn turn(&self) {
        if self.accepting.load(Ordering::SeqCst) == 0 {
            return;
        }
        tokio::select! {
            () = self.quiet.notified() => {}
            () = tokio::time::sleep(PACE) => {}
        }
    }
}

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        if self.0.accepting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.quiet.notify_one();
        }
    }
}

pub(super) async fn accept(
    app: &App,
    receiver: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> (Option<Source>, StatusCode, String) {
    let rt = app.runtime.load_full();
    if app.draining.load(Ordering::SeqCst) {
        return (
            None,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down, retry later\n".into(),
        );
    }
    // Refused from the head alone, before a byte of the body is read: nothing is buffered
    // for an unauthenticated client, and it gets no `100 Continue`.
    if let Err(r) = auth::check_head(&rt.config.auth, headers) {
        return (None, StatusCode::UNAUTHORIZED, r.to_string());
    }
    let (_accepting, at_once) = app.inbox.enter();
    let bytes = match read_body(body, headers, rt.config.web.max_body_bytes).await {
        Ok(b) => b,
        Err((status, message)) => return (None, status, message),
    };
    if let Err(r) = auth::check_webhook(&rt.config.auth, headers, &bytes) {
        return (None, StatusCode::UNAUTHORIZED, r.to_string());
    }
    let append = app.queue.store.keeps_inbox()
        && (at_once > rt.config.storage.accept_inline
            || app.inbox.pending.load(Ordering::SeqCst) > 0);
    let (source, statuses, message) =
        if append {
            // Checked and encoded as stored, without the notification routing builds later.
            let received = match Received::parse(&bytes) {
                Ok(r) => r,
                Err(e) => return (None, StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
            drop(bytes);
            let source = Some(received.source);
            record_span(received.source, &received.group_key);
            if let Some(status) = unknown_receiver(&rt, receiver) {
                return (source, StatusCode::NOT_FOUND, status);
            }
            app.inbox.pending.fetch_add(1, Ordering::SeqCst);
            match app
                .queue
                .store
                .append_received(&received, receiver.map(str::to_string), Utc::now())
                .await
            {
                Ok(_) => {
                    app.inbox.show(&app.metrics);
                    app.inbox.appended.notify_one();
                }
                Err(e) => {
                    app.inbox.pending.fetch_sub(1, Ordering::SeqCst);
                    app.inbox.show(&app.metrics);
                    return (source, StatusCode::SERVICE_UNAVAILABLE, refusal(&e));
                }
            }
            let message = "accepted; routed after this answer\n".to_string();
            (source, received.statuses, message)
        } else {
            let n = match Notification::parse(&bytes) {
                Ok(n) => n,
                Err(e) => return (None, StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
            drop(bytes);
            let source = Some(n.source);
            record_span(n.source, &n.group_key);
            if let Some(status) = unknown_receiver(&rt, receiver) {
                return (source, StatusCode::NOT_FOUND, status);
            }
            let statuses: Vec<Status> = n.alerts.iter().map(|a| a.status).collect();
            let now = Utc::now();
            // Answered 200 only once the jobs are committed to the store; duplicates are checked
            // in the same transaction.
            let admissions = admissions_for(&rt, n, receiver, now);
            let message =
                match crate::delivery::history::admit(&app.queue, &rt.config.web, admissions, now)
                    .await
                {
                    Ok(admitted) => {
                        let outcome = dedupe::Outcome::of(&admitted);
                        count_suppressed(&app.metrics, &outcome);
                        accepted_message(&outcome)
                    }
                    Err(e) => return (source, StatusCode::SERVICE_UNAVAILABLE, refusal(&e)),
                };
            (source, statuses, message)
        };
    for status in statuses {
        app.metrics
            .alerts_received
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .inc();
    }
    (source, StatusCode::OK, message)
}

fn record_span(source: Source, group_key: &str) {
    tracing::Span::current()
        .record("source", source.as_str())
        .record("group_key", group_key);
}

/// The 404's body when the webhook's path names a receiver not configured.
fn unknown_receiver(rt: &Runtime, receiver: Option<&str>) -> Option<String> {
    receiver
        .filter(|r| !rt.receivers.contains_key(*r))
        .map(|r| format!("unknown receiver {r:?}\n"))
}

/// The 503's body when the store does not take a webhook.
fn refusal(e: &StoreError) -> String {
    match e {
        StoreError::Full => "delivery queue full, retry later\n".into(),
        e => {
            warn!(error = %e, "cannot store an accepted notification");
            "cannot store the notification, retry later\n".into()
        }
    }
}

/// The admissions a notification makes: routed (to `receiver`, or by the route tree), fanned
/// out to each receiver's integrations, and the incidents' share (one job per routed receiver
/// with an escalation policy, never held back by dedupe: a duplicate still counts for the
/// incident). A named receiver no longer configured (a reload between appending and routing)
/// is routed by the route tree instead.
fn admissions_for(
    rt: &Runtime,
    n: Notification,
    receiver: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<Admission> {
    let receiver = receiver.filter(|r| rt.receivers.contains_key(*r));
    let Some(routed) = rt.route(n, receiver) else {
        return Vec::new();
    };
    let mut jobs = Vec::new();
    let mut incidents = Vec::new();
    for r in routed {
        let integrations = rt.receivers.get(&r.receiver).map_or(&[][..], Vec::as_slice);
        let notification = Arc::new(r.notification);
        // Rule 6: when the policy pages this receiver itself, its message goes with the
        // incident's job, which sends it or replaces it by the page.
        let own = r.policy.as_deref().is_some_and(|p| {
            crate::incident::page_replaces_message(rt, &r.receiver, p, &notification)
        });
        if !own {
            jobs.extend(fan_out(
                &r.receiver,
                integrations,
                &notification,
                now,
                Origin::Accepted,
            ));
        }
        if let Some(policy) = &r.policy {
            incidents.push(crate::incident::notify_job(
                &r.receiver,
                policy,
                own,
                &notification,
                now,
            ));
        }
    }
    let mut admissions = dedupe::admissions(&dedupe::Policy::new(&rt.config.dedupe), jobs, now);
    admissions.extend(incidents.into_iter().map(Admission::of));
    admissions
}

/// Routes appended webhooks, oldest first, [`CHUNK`] per store request, as if each had been
/// routed when it was received (its jobs accepted then, dedupe windows counted from then),
/// with the configuration in force now. Runs until the service stops; what is left is routed
/// at the next start.
pub async fn route_appended(app: Arc<App>) {
    match app.queue.store.inbox_len().await {
        Ok(n) => {
            app.inbox.pending.fetch_add(n as i64, Ordering::SeqCst);
            app.inbox.show(&app.metrics);
        }
        Err(e) => warn!(error = %e, "cannot count the webhooks left to route"),
    }
    loop {
        if app.inbox.pending.load(Ordering::SeqCst) <= 0 {
            app.inbox.appended.notified().await;
            continue;
        }
        app.inbox.turn().await;
        let mut taken = match app.queue.store.inbox_take(CHUNK).await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "cannot read the webhooks left to route; trying again");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if taken.is_empty() {
            // Counted and not committed yet: it will say so.
            app.inbox.appended.notified().await;
            continue;
        }
        let rt = app.runtime.load_full();
        let mut admissions = Vec::new();
        for t in &mut taken {
            match std::mem::replace(&mut t.notification, Err(String::new())) {
                Ok(n) => {
                    admissions.extend(admissions_for(&rt, n, t.receiver.as_deref(), t.received_at))
                }
                Err(e) => error!(
                    id = t.id,
                    error = %e,
                    "an appended webhook cannot be read back; it is dropped"
                ),
            }
        }
        if route(&app, &rt, &taken, admissions).await {
            app.inbox
                .pending
                .fetch_sub(taken.len() as i64, Ordering::SeqCst);
            app.inbox.show(&app.metrics);
        } else {
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Queues what `taken` made and consumes it; whether that committed.
async fn route(app: &App, rt: &Runtime, taken: &[Inboxed], admissions: Vec<Admission>) -> bool {
    let now = Utc::now();
    match crate::delivery::history::admit_inboxed(
        &app.queue,
        &rt.config.web,
        taken,
        admissions,
        now,
    )
    .await
    {
        Ok(admitted) => {
            count_suppressed(&app.metrics, &dedupe::Outcome::of(&admitted));
            true
        }
        Err(e) => {
            warn!(error = %e, webhooks = taken.len(), "cannot route appended webhooks yet; trying again");
            false
        }
    }
}

fn count_suppressed(metrics: &Metrics, o: &dedupe::Outcome) {
    for (reason, n) in [
        (dedupe::Suppressed::Duplicate, o.duplicates),
        (dedupe::Suppressed::ResolvedAgain, o.resolved_again),
    ] {
        if n > 0 {
            metrics
                .dedupe_suppressed
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str(),
                })
                .inc_by(n as u64);
        }
    }
}

/// The 200 body: a duplicate is answered 200 too (it was accepted the first time), and says so.
fn accepted_message(o: &dedupe::Outcome) -> String {
    if o.queued == 0 && o.duplicates > 0 && o.empty == 0 {
        return "duplicate: the same notification was accepted within dedupe.window, not sent again\n"
            .into();
    }
    let mut s = format!("accepted {} deliveries", o.queued);
    if o.duplicates > 0 {
        s += &format!(", {} duplicates not sent again", o.duplicates);
    }
    if o.resolved_again > 0 {
        s += &format!(
            ", {} resolved alerts already announced left out",
            o.resolved_again
        );
    }
    s + "\n"
}
