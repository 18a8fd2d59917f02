//! What the on-call end-to-end tests share: the one incident of a test server, waited for
//! until it reaches a state (the store has no change signal, so it is read again every 20 ms,
//! with a generous deadline), and the stored status queries of WxPusher pages made due now
//! (a test does not wait the 30 s and 2 min they are stored for).

use std::time::Duration;

use alertmanager_wechat::channels::reach::STATUS_KIND;
use alertmanager_wechat::channels::wxpusher::oncall::StatusJob;
use alertmanager_wechat::runtime::contact_receiver;
use alertmanager_wechat::store::NewJob;
use alertmanager_wechat::store::incident::Incident;

use super::TestServer;

/// How long a test waits for anything (a loaded 2-core machine is slow, never this slow).
pub const WAIT: Duration = Duration::from_secs(60);

/// The test server's one incident.
pub async fn the_incident(srv: &TestServer) -> Incident {
    let mut all = srv
        .app
        .queue
        .store
        .incidents(chrono::Utc::now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

/// The incident once `pred` holds for it (or a panic after [`WAIT`]).
pub async fn wait_incident(srv: &TestServer, pred: impl Fn(&Incident) -> bool) -> Incident {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let inc = the_incident(srv).await;
        if pred(&inc) {
            return inc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:#?}",
            inc.timeline
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the incident's timeline has an `event` entry for `person` through `contact`
/// whose detail contains `detail`.
pub fn logged(inc: &Incident, event: &str, person: &str, contact: &str, detail: &str) -> bool {
    inc.timeline.iter().any(|e| {
        e.event == event
            && e.person.as_deref() == Some(person)
            && e.contact.as_deref() == Some(contact)
            && e.detail.as_deref().is_some_and(|d| d.contains(detail))
    })
}

/// Makes the stored status query `query` of `person`'s WxPusher page due now, as if its
/// time had come, and wakes the workers; false when no such query is stored.
pub async fn status_due_now(srv: &TestServer, person: &str, query: &StatusJob) -> bool {
    let store = &srv.app.queue.store;
    let receiver = contact_receiver(person);
    let mut jobs = store
        .claim_target(&receiver, &query.id(), 0, 1)
        .await
        .unwrap();
    let Some(job) = jobs.pop() else {
        return false;
    };
    assert_eq!(job.kind, STATUS_KIND);
    let now_due = NewJob {
        receiver: job.receiver.clone(),
        integration: job.integration.clone(),
        kind: job.kind.clone(),
        notification: job.notification.clone(),
        accepted_at: chrono::Utc::now(),
        fallback: false,
    };
    store.complete(vec![job.id], vec![now_due]).await.unwrap();
    srv.app.queue.wake.notify_one();
    true
}

/// The status queries stored (pending) for WxPusher pages.
pub async fn stored_status_queries(srv: &TestServer) -> Vec<StatusJob> {
    srv.app
        .queue
        .store
        .depth()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|d| StatusJob::parse(&d.integration))
        .collect()
}
