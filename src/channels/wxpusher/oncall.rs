//! WxPusher's on-call side: pages to a person's `contacts.wxpusher` keep each message's
//! `sendRecordId` ([`marker`]) and are followed by a few status queries ([`StatusJob`],
//! stored jobs of kind [`STATUS_KIND`], so they survive a restart), since no callback
//! reports what became of a message. Failed is a failed page (rule 8: the next step at once
//! when every page of the step failed); delivered, waiting or anything else is a timeline
//! entry only: a status is never a read receipt, never an acknowledgement.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tracing::{info, warn};

use super::WxPusher;
use super::status::Verdict;
use crate::channels::error::DeliveryError;
use crate::channels::reach::{Desk, Pager, STATUS_KIND, StatusQuery};
use crate::channels::{Env, Integration, Kind, Progress};
use crate::store::incident::IncidentState;
use crate::store::{IntegrationId, NewJob};
use crate::webhook::Notification;

/// When a page's status is asked, after it went out: a few times, no more (the API allows
/// about 2 calls a second per app, and the status is only a hint).
pub const STATUS_POLLS: [chrono::Duration; 2] = [
    chrono::Duration::seconds(30),
    chrono::Duration::seconds(120),
];

/// The timeline event of a status answer that concludes nothing yet (waiting, unknown).
const DELIVERY_STATUS: &str = "delivery_status";

/// A message to one uid, by the `sendRecordId` of its send answer (what the status query
/// names; no callback reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    pub send_record_id: i64,
}

impl RecordRef {
    /// The marker of the `sent` entry recording the message, and its contact kind.
    pub fn marker(&self) -> (String, &'static str) {
        (format!("sendRecordId={}", self.send_record_id), super::KIND)
    }
}

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

    /// [`Self::parse`], for the registry's status queries.
    pub fn read(id: &IntegrationId) -> Option<Box<dyn StatusQuery>> {
        StatusJob::parse(id).map(|q| Box::new(q) as Box<dyn StatusQuery>)
    }

    /// When it is due: [`STATUS_POLLS`] after the page; `None` past the last.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        let after = STATUS_POLLS.get(self.poll.checked_sub(1)?)?;
        Some(self.sent + *after)
    }

    /// The stored job, under the person's contacts (`receiver`), carrying only the group (no
    /// alerts, no incident context: it is no page).
    fn stored(&self, receiver: &str, n: &Notification) -> NewJob {
        let mut shell = n.without_alerts();
        shell.incident = None;
        NewJob {
            receiver: receiver.to_string(),
            integration: self.id(),
            kind: STATUS_KIND.to_string(),
            notification: std::sync::Arc::new(shell),
            accepted_at: self.due().unwrap_or(self.sent),
            fallback: false,
        }
    }
}

impl StatusQuery for StatusJob {
    fn incident(&self) -> i64 {
        self.incident
    }

    fn next(&self, receiver: &str, n: &Notification) -> Option<NewJob> {
        let next = StatusJob {
            poll: self.poll + 1,
            ..*self
        };
        next.due().map(|_| next.stored(receiver, n))
    }

    fn ask<'a>(&'a self, desk: &'a dyn Desk) -> BoxFuture<'a, ()> {
        Box::pin(ask(self, desk))
    }
}

/// Asks WxPusher what became of the desk's person's page `query` names, unless the incident
/// no longer waits (acknowledged, resolved) or an earlier answer was final.
async fn ask(query: &StatusJob, desk: &dyn Desk) {
    let (incident, record, person) = (query.incident, query.record, desk.person());
    let contact = super::KIND;
    let (marker, _) = RecordRef {
        send_record_id: record,
    }
    .marker();
    let inc = match desk.store().incident(incident).await {
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
    let wx = desk.contacts().iter().find_map(|i| match &i.kind {
        Kind::WxPusher(w) => Some(w),
        _ => None,
    });
    let Some(wx) = wx else {
        info!(
            incident,
            person, "no WxPusher contact any more; status not asked"
        );
        return;
    };
    let status = match wx.query_status(&desk.env(), record).await {
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
            let failed = (status.verdict == Verdict::Failed).then_some("failed");
            desk.outcome(contact, failed, query.sent, detail).await
        }
        Verdict::Waiting | Verdict::Unknown => desk
            .log(DELIVERY_STATUS, contact, detail)
            .await
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = result {
        warn!(incident, error = %e, "a WxPusher status is not recorded with the incident");
    }
}

impl Pager for WxPusher {
    fn send_oncall<'a>(
        &'a self,
        desk: &'a dyn Desk,
        _: &'a Integration,
        env: &'a Env<'a>,
        n: &'a Notification,
        progress: &'a mut Progress,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let mut records = Vec::new();
            let result = self.send_with_records(env, n, progress, &mut records).await;
            // The queries carry the page (incident, person, record, when sent) themselves: the
            // timeline hears only what they learn.
            let receiver = desk.receiver();
            let queries: Vec<NewJob> = records
                .into_iter()
                .map(|(_, record)| {
                    let job = StatusJob {
                        incident: desk.incident(),
                        record,
                        poll: 1,
                        sent: env.now,
                    };
                    job.stored(&receiver, n)
                })
                .collect();
            if !queries.is_empty()
                && let Err(e) = desk.store().enqueue(queries).await
            {
                warn!(incident = desk.incident(), error = %e, "cannot queue the WxPusher status queries of a page; it escalates on time");
            }
            result
        })
    }
}
