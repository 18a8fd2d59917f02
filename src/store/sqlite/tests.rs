//! The SQLite backend's own tests (the shared store tests run on both backends in
//! `tests/it/store.rs`).

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::checkpoint::{WAL_KEEP_BYTES, WAL_PAGES};
use super::jobs::{encode_jobs, insert_jobs};
use super::*;
use crate::store::history::Delivery;
use crate::store::{Admission, Admitted, Mark, NewJob, Store};

/// History bounds: an hour, and at most `max` records.
fn kept_an_hour(max: usize) -> crate::store::history::Retention {
    crate::store::history::Retention {
        max_age: std::time::Duration::from_secs(3600),
        max,
    }
}

fn job(receiver: &str) -> NewJob {
    NewJob {
        receiver: receiver.into(),
        integration: crate::store::IntegrationId("console-0".into()),
        kind: "console".into(),
        notification: std::sync::Arc::new(crate::webhook::sample_notification()),
        accepted_at: Utc::now(),
        fallback: false,
    }
}

#[test]
fn refuses_a_path_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let e = Store::open(&file, 10).unwrap_err();
    assert!(
        e.to_string().starts_with("cannot open the store at "),
        "{e}"
    );
}

/// Commits that never stop (a burst) still let the WAL start over: it stays near
/// `WAL_PAGES`, however much is written, and everything written reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_a_steady_stream_of_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 1_000_000, true).unwrap();
    let wal = dir.path().join(format!("{FILE}-wal"));
    // Jobs of about 20 KB, from 8 tasks at once: the writer commits back to back, about
    // 130 MB in all.
    let mut big = job("a");
    let alert = big.notification.alerts[0].clone();
    std::sync::Arc::make_mut(&mut big.notification).alerts = (0..60)
        .map(|i| {
            let mut a = alert.clone();
            a.fingerprint = format!("fp{i}");
            a
        })
        .collect();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, big) = (store.clone(), big.clone());
            tokio::spawn(async move {
                for _ in 0..40 {
                    let jobs: Vec<NewJob> = (0..20).map(|_| big.clone()).collect();
                    store.enqueue(jobs).await.unwrap();
                }
            })
        })
        .collect();
    let mut largest = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        tokio::task::yield_now().await;
    }
    let bound = u64::from(WAL_PAGES) * 4096 * 2 + WAL_KEEP_BYTES;
    assert!(
        largest <= bound,
        "WAL grew to {largest} bytes (bound {bound})"
    );
    let depth: u64 = store.depth().await.unwrap().iter().map(|d| d.count).sum();
    assert_eq!(depth, 8 * 40 * 20);
}

#[tokio::test]
async fn a_burst_far_past_the_old_count_fits_while_the_file_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        crate::store::StorageConfig::default().queue_capacity,
    )
    .unwrap();
    // 25,000 distinct deliveries: 2.5 times what the old 10,000 cap refused beyond.
    for _ in 0..25 {
        let jobs: Vec<NewJob> = (0..1000).map(|_| job("a")).collect();
        store.enqueue(jobs).await.unwrap();
    }
    let depth: u64 = store.depth().await.unwrap().iter().map(|d| d.count).sum();
    assert_eq!(depth, 25_000);
}

#[tokio::test]
async fn the_file_size_bound_refuses_new_jobs_with_full() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::Sqlite(SqliteStore::open_with(dir.path(), 1_000_000, 512 * 1024, true).unwrap());
    let mut refused = false;
    // Bounded: 512 KiB, the empty schema's pages included, is a few hundred sample jobs.
    for _ in 0..5000 {
        match store.enqueue(vec![job("a")]).await {
            Ok(_) => {}
            Err(StoreError::Full) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused, "never refused past max_bytes");
    // Room again once deliveries are done and their pages are free.
    let ids: Vec<i64> = store
        .claim(Utc::now(), 5000)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    store.complete(ids, Vec::new()).await.unwrap();
    store.enqueue(vec![job("b")]).await.unwrap();
}

/// A backlog is taken chunk by chunk from past the last id taken: the scan starts there, so
/// jobs at or below it are not looked at (nor taken, claimed or not).
/// The file's size is read once per batch; the webhooks appended in that batch count their
/// bodies on top, so a batch of large ones cannot run far past `max_bytes`.
#[tokio::test]
async fn appends_in_one_batch_count_their_bodies_towards_the_size_bound() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path(), 1_000, 1024 * 1024, true).unwrap();
    // An annotation that does not compress: 300 KB stored per webhook.
    let mut n = crate::webhook::sample_notification();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    n.alerts[0].annotations.insert("noise".into(), noise);
    let (hold, blocker) = hold_writer(&store).await;
    let mut appends: Vec<_> = (0..8)
        .map(|_| Box::pin(store.append(&n, None, Utc::now())))
        .collect();
    // Each sent to the writer, which takes them in one batch once let go.
    let mut cx = Context::from_waker(Waker::noop());
    for a in &mut appends {
        assert!(matches!(a.as_mut().poll(&mut cx), Poll::Pending));
    }
    hold.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    let mut stored = 0;
    for a in appends {
        match a.await {
            Ok(_) => stored += 1,
            Err(StoreError::Full) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!((1..=4).contains(&stored), "{stored} of 8 stored in 1 MiB");
}

#[tokio::test]
async fn a_backlog_is_taken_from_past_the_last_id_taken() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), usize::MAX, true).unwrap();
    let ids = store
        .enqueue((0..5).map(|_| job("a")).collect())
        .await
        .unwrap();
    let target = crate::store::IntegrationId("console-0".into());
    let taken = |jobs: Vec<crate::store::Job>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    // Started past the third: the first three are not looked at, though they wait.
    let later = store.claim_target("a", &target, ids[2], 10).await.unwrap();
    assert_eq!(taken(later), ids[3..]);
    let first = store.claim_target("a", &target, 0, 2).await.unwrap();
    assert_eq!(taken(first), ids[..2]);
    let next = store.claim_target("a", &target, ids[1], 10).await.unwrap();
    assert_eq!(taken(next), ids[2..3]);
    assert!(
        store
            .claim_target("a", &target, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn jobs_round_trip_capacity_holds_and_inflight_is_reclaimed_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 2).unwrap();
    let ids = store.enqueue(vec![job("a"), job("b")]).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert!(matches!(
        store.enqueue(vec![job("c")]).await,
        Err(StoreError::Full)
    ));
    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(
        claimed[0].notification,
        std::sync::Arc::new(crate::webhook::sample_notification())
    );
    assert!(store.claim(Utc::now(), 10).await.unwrap().is_empty());
    store.complete(vec![ids[0]], Vec::new()).await.unwrap();
    drop(store);
    // As after a crash: the job that was in flight is pending again.
    let store = Store::open(dir.path(), 2).unwrap();
    let again = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(again.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[1]]);
    // Counters are tested on both backends in tests/it/store.rs.
}

/// A digest that merged hundreds of stored notifications marks each one's history record
/// in one request: more undo pages than SQLite keeps in memory, so they move to a file.
/// With a spill threshold past 128 KiB that move failed as a full disk and SQLite rolled
/// back the whole batch: the webhooks committed with it were refused.
#[tokio::test]
async fn marking_hundreds_of_merged_deliveries_commits_with_its_batch() {
    use crate::store::history::{Change, Delivery, DeliveryState, Update};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100_000, true).unwrap();
    let keep = kept_an_hour(10_000);
    let now = Utc::now();
    let base = crate::webhook::sample_notification();
    let mut n = base.without_alerts();
    for i in 0..30 {
        let mut a = base.alerts[0].clone();
        a.fingerprint = format!("fp{i}");
        n.alerts.push(a);
    }
    let records: Vec<Delivery> = (1..=400)
        .map(|job| Delivery {
            id: 0,
            job: Some(job),
            receiver: "oncall".into(),
            kind: "console".into(),
            integration: "console-0".into(),
            group_key: n.group_key.clone(),
            status: "firing".into(),
            alertnames: vec!["HighCPU".into()],
            external_url: None,
            generator_urls: Vec::new(),
            state: DeliveryState::Queued,
            attempts: 0,
            accepted_at: now,
            updated_at: now,
            sent_at: None,
            next_attempt: None,
            last_error: None,
            digest: None,
            merged: None,
            notification: Some(n.clone()),
        })
        .collect();
    store.history_add(records, keep, now).await.unwrap();
    let updates = (1..=400)
        .map(|job| Update {
            job,
            change: Change::Merged { digest: 1 },
            or_insert: None,
        })
        .collect();
    // A webhook's jobs in the same batch as the marking.
    let (marked, queued) = tokio::join!(
        store.history_update(updates, keep, now),
        store.enqueue(vec![job("a")])
    );
    marked.unwrap();
    queued.unwrap();
    let merged = crate::store::history::HistoryFilter {
        receiver: None,
        state: Some(DeliveryState::Merged),
        alertname: None,
        limit: 1000,
    };
    assert_eq!(store.history(merged).await.unwrap().len(), 400);
}

/// The receivers of every job claimed now, sorted.
async fn claimed_receivers(store: &SqliteStore) -> Vec<String> {
    let mut claimed: Vec<String> = store
        .claim(Utc::now(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.receiver)
        .collect();
    claimed.sort();
    claimed
}

/// Holds the writer in a request of its own until the sender is used (or dropped), so that
/// the requests sent meanwhile are taken in one batch; the handle ends with that request.
async fn hold_writer(
    store: &SqliteStore,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), StoreError>>,
) {
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let (running, started) = oneshot::channel::<()>();
    let blocker = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .call(move |_| {
                    let _ = running.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
        })
    };
    started.await.unwrap();
    (hold, blocker)
}

/// When SQLite rolls a batch's transaction back in the middle (an I/O error, a full disk
/// inside a statement), the requests before lose their writes and are told so, the
/// requests after are committed in a transaction of their own, and the writer's counts
/// and claims follow what the file holds.
#[tokio::test]
async fn the_writer_follows_a_transaction_sqlite_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 2, true).unwrap();
    let x = store.enqueue(vec![job("x")]).await.unwrap()[0];
    assert_eq!(store.claim(Utc::now(), 10).await.unwrap()[0].id, x);
    // The writer held while the batch is queued, so that it takes the four at once.
    let (hold, blocker) = hold_writer(&store).await;
    let tx = store.tx.clone();
    type Request = Box<dyn FnOnce(&mut Writer) -> Result<(), StoreError> + Send>;
    let send = |f: Request| {
        let (op, rx) = op_of(f);
        tx.send((op, writer::Place::InTurn)).unwrap();
        rx
    };
    let completed = send(Box::new(move |w| {
        w.release(x);
        w.conn
            .execute("DELETE FROM jobs WHERE id = ?1", [x])
            .map_err(db)?;
        w.live -= 1;
        Ok(())
    }));
    let a = send(Box::new(|w| {
        let jobs = encode_jobs(vec![job("a")])?;
        w.live += insert_jobs(&w.conn, &jobs)?.len() as u64;
        Ok(())
    }));
    // What SQLite does after such an error: the transaction is gone.
    let failing = send(Box::new(|w| {
        w.conn.execute_batch("ROLLBACK").map_err(db)?;
        Err(StoreError::Db("disk I/O error".into()))
    }));
    let c = send(Box::new(|w| {
        let jobs = encode_jobs(vec![job("c")])?;
        w.live += insert_jobs(&w.conn, &jobs)?.len() as u64;
        Ok(())
    }));
    hold.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    assert!(completed.await.unwrap().is_err(), "x's outcome was lost");
    assert!(a.await.unwrap().is_err(), "a was lost");
    assert!(failing.await.unwrap().is_err());
    c.await.unwrap().unwrap();
    // x is still claimed (its outcome was not recorded), a is not there, c is.
    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].receiver, "c");
    // Two live jobs (x and c) fill the capacity of 2: counted as the file holds them.
    assert!(matches!(
        store.enqueue(vec![job("d")]).await,
        Err(StoreError::Full)
    ));
    drop(store);
    let store = SqliteStore::open(dir.path(), 10, true).unwrap();
    assert_eq!(claimed_receivers(&store).await, ["c", "x"]);
}

/// A request sent to go first runs first in its batch, without a savepoint (its pages are not
/// copied to the statement journal); when it fails, the transaction is rolled back and begun
/// again for the requests after it, which commit.
#[tokio::test]
async fn a_request_that_goes_first_runs_without_a_savepoint_and_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 3, true).unwrap();
    let (hold, blocker) = hold_writer(&store).await;
    // Each request in the order run, and whether it ran inside a savepoint of its own.
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(&str, bool)>::new()));
    let tx = store.tx.clone();
    type Request = Box<dyn FnOnce(&mut Writer) -> Result<(), StoreError> + Send>;
    let send = |place: writer::Place, name: &'static str, fail: bool| {
        let order = order.clone();
        let f: Request = Box::new(move |w| {
            let jobs = encode_jobs(vec![job(name)])?;
            w.live += insert_jobs(&w.conn, &jobs)?.len() as u64;
            // Inside a savepoint of its own, releasing it succeeds.
            let in_savepoint = w.conn.execute_batch("RELEASE op").is_ok();
            if in_savepoint {
                w.conn.execute_batch("SAVEPOINT op").map_err(db)?;
            }
            order.lock().unwrap().push((name, in_savepoint));
            if fail {
                return Err(StoreError::Db(format!("{name} failed")));
            }
            Ok(())
        });
        let (op, rx) = op_of(f);
        tx.send((op, place)).unwrap();
        rx
    };
    let a = send(writer::Place::InTurn, "a", false);
    let first = send(writer::Place::First, "first", true);
    let c = send(writer::Place::InTurn, "c", false);
    hold.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    assert!(first.await.unwrap().is_err());
    a.await.unwrap().unwrap();
    c.await.unwrap().unwrap();
    // "a" begins the transaction after the one "first" failed in.
    assert_eq!(
        *order.lock().unwrap(),
        [("first", false), ("a", false), ("c", true)]
    );
    // "first" left nothing: a and c are queued, and one more job fits the capacity of 3.
    assert_eq!(claimed_receivers(&store).await, ["a", "c"]);
    store.enqueue(vec![job("d")]).await.unwrap();
    assert!(matches!(
        store.enqueue(vec![job("e")]).await,
        Err(StoreError::Full)
    ));
}

fn admission(key: &str, now: DateTime<Utc>, ttl_ms: i64) -> Admission {
    let exp = now + chrono::Duration::milliseconds(ttl_ms);
    Admission {
        job: job("a"),
        not_before: now,
        held: false,
        identity: Some(Mark {
            key: format!("dup:{key}"),
            value: 1,
            expires_at: exp,
        }),
        once: vec![(
            1,
            Mark {
                key: format!("resolved:{key}"),
                value: 1,
                expires_at: exp,
            },
        )],
        remember: vec![Mark {
            key: format!("firing:{key}"),
            value: now.timestamp_millis(),
            expires_at: exp,
        }],
    }
}

#[tokio::test]
async fn admit_is_once_per_identity_drops_announced_alerts_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 10_000).unwrap();
    let t0 = Utc::now();
    let out = store
        .admit(vec![admission("k", t0, 1000), admission("k", t0, 1000)], t0)
        .await
        .unwrap();
    assert!(matches!(out[0], Admitted::Queued { dropped: 0, .. }));
    assert_eq!(out[1], Admitted::Duplicate);
    // Another identity carrying the same resolved alert: that alert is left out.
    let mut other = admission("k", t0, 1000);
    other.identity.as_mut().unwrap().key = "dup:other".into();
    let out = store.admit(vec![other], t0).await.unwrap();
    let Admitted::Queued { id, dropped: 1 } = out[0] else {
        panic!("{out:?}");
    };
    let jobs = store.claim(t0, 10).await.unwrap();
    let again = jobs.iter().find(|j| j.id == id).unwrap();
    assert_eq!(again.notification.alerts.len(), 1);
    assert_eq!(again.notification.status, crate::webhook::Status::Firing);
    // take-or-extend keeps the first value.
    let first = t0.timestamp_millis();
    store
        .remember(
            vec![Mark {
                key: "firing:k".into(),
                value: first + 5,
                expires_at: t0 + chrono::Duration::seconds(60),
            }],
            t0,
        )
        .await
        .unwrap();
    let got = store
        .recall(vec!["firing:k".into(), "nothing".into()], t0)
        .await
        .unwrap();
    assert_eq!(got, [Some(first), None]);
    // After the window the same identity is admitted again (a reminder).
    let later = t0 + chrono::Duration::seconds(2);
    let out = store
        .admit(vec![admission("k", later, 1000)], later)
        .await
        .unwrap();
    assert!(
        matches!(out[0], Admitted::Queued { dropped: 0, .. }),
        "{out:?}"
    );
    // Many distinct notifications with a short life: the state shrinks back once they
    // expire (their rows go when a merge passes them).
    let many: Vec<Admission> = (0..500)
        .map(|i| admission(&format!("n{i}"), later, 1000))
        .collect();
    store.admit(many, later).await.unwrap();
    assert!(store.state_size().await.unwrap() >= 1500);
    let much_later = later + chrono::Duration::seconds(120);
    store
        .admit(vec![admission("last", much_later, 1000)], much_later)
        .await
        .unwrap();
    // Left: the three keys just taken, and `firing:k` extended to t0+60s is gone too.
    assert_eq!(store.state_size().await.unwrap(), 3);
}

#[tokio::test]
async fn a_full_queue_undoes_the_state_taken() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1).unwrap();
    let t0 = Utc::now();
    let both = vec![admission("x", t0, 1000), admission("y", t0, 1000)];
    assert!(matches!(store.admit(both, t0).await, Err(StoreError::Full)));
    assert_eq!(store.state_size().await.unwrap(), 0);
    let out = store
        .admit(vec![admission("x", t0, 1000)], t0)
        .await
        .unwrap();
    assert!(matches!(out[0], Admitted::Queued { .. }));
}

/// An attempt's outcome and its history record are one write: both land, or (the commit
/// refused) neither, and the job is not handed out again meanwhile.
#[tokio::test]
async fn an_outcome_and_its_history_record_commit_together() {
    use crate::store::history::{Change, DeliveryState, HistoryFilter, Outcome, Update};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 100).unwrap();
    let Store::Sqlite(sqlite) = &store else {
        unreachable!()
    };
    let keep = kept_an_hour(100);
    let id = store.enqueue(vec![job("a")]).await.unwrap()[0];
    // After the job's `not_before` (its acceptance), so that it is due.
    let now = Utc::now();
    let claimed = store.claim(now, 10).await.unwrap();
    assert_eq!(claimed[0].id, id);
    let mut record = crate::store::history::Delivery {
        id: 0,
        job: Some(id),
        receiver: "a".into(),
        kind: "console".into(),
        integration: "console-0".into(),
        group_key: String::new(),
        status: "firing".into(),
        alertnames: Vec::new(),
        external_url: None,
        generator_urls: Vec::new(),
        state: DeliveryState::Queued,
        attempts: 0,
        accepted_at: now,
        updated_at: now,
        sent_at: None,
        next_attempt: None,
        last_error: None,
        digest: None,
        merged: None,
        notification: None,
    };
    record.notification = Some(crate::webhook::sample_notification());
    let sent = Update {
        job: id,
        change: Change::Sent { attempts: 1 },
        or_insert: Some(record),
    };
    let all = HistoryFilter {
        receiver: None,
        state: None,
        alertname: None,
        limit: 10,
    };
    super::testing::refuse_writes(sqlite, true).await.unwrap();
    assert!(
        store
            .finish(id, Outcome::Delivered, sent.clone(), keep, now)
            .await
            .is_err()
    );
    super::testing::refuse_writes(sqlite, false).await.unwrap();
    assert!(store.history(all.clone()).await.unwrap().is_empty());
    assert!(
        store.claim(now, 10).await.unwrap().is_empty(),
        "handed out again"
    );
    let failed = store
        .finish(id, Outcome::Delivered, sent, keep, now)
        .await
        .unwrap();
    assert!(failed.is_none());
    let history = store.history(all).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, DeliveryState::Sent);
    assert!(store.depth().await.unwrap().is_empty());
}

/// Rows of `bodies`, and the readers of each, on the writer thread.
async fn bodies_of(store: &SqliteStore) -> Vec<i64> {
    store
        .call(|w| {
            let mut s = w
                .conn
                .prepare("SELECT refs FROM body_refs ORDER BY body")
                .map_err(db)?;
            let refs = s
                .query_map([], |r| r.get(0))
                .map_err(db)?
                .collect::<Result<Vec<i64>, _>>()
                .map_err(db)?;
            assert_eq!(super::bodies::count(&w.conn), refs.len() as i64);
            Ok(refs)
        })
        .await
        .unwrap()
}

/// A fresh record of a queued delivery of `n` to receiver `a`.
fn queued_record(
    integration: &str,
    n: &crate::webhook::Notification,
    now: DateTime<Utc>,
) -> Delivery {
    Delivery {
        id: 0,
        job: None,
        receiver: "a".into(),
        kind: "console".into(),
        integration: integration.into(),
        group_key: n.group_key.clone(),
        status: "firing".into(),
        alertnames: Vec::new(),
        external_url: None,
        generator_urls: Vec::new(),
        state: crate::store::history::DeliveryState::Queued,
        attempts: 0,
        accepted_at: now,
        updated_at: now,
        sent_at: None,
        next_attempt: None,
        last_error: None,
        digest: None,
        merged: None,
        notification: Some(n.clone()),
    }
}

fn job_of(integration: &str, n: &std::sync::Arc<crate::webhook::Notification>) -> NewJob {
    NewJob {
        integration: crate::store::IntegrationId(integration.into()),
        notification: n.clone(),
        ..job("a")
    }
}

/// A notification shared by several jobs is encoded once, stored once (one body, one reader
/// per job), read and parsed once when they are claimed together (the jobs share it again),
/// and deleted with its last job; a job with a notification of its own (a filtered
/// integration's) has its own body.
#[tokio::test]
async fn jobs_of_one_notification_share_one_body() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let shared = Arc::new(crate::webhook::sample_notification());
    let mut own = crate::webhook::sample_notification();
    own.alerts.truncate(1);
    let own = Arc::new(own);
    let jobs = vec![
        job_of("i-1", &shared),
        job_of("i-2", &shared),
        job_of("i-3", &own),
        job_of("i-4", &shared),
    ];

    let encoded = encode_jobs(jobs.clone()).unwrap();
    let mut encoder = super::bodies::Encoder::default();
    let a = encoder.encode(&shared).unwrap();
    assert!(
        Arc::ptr_eq(&a, &encoder.encode(&shared).unwrap()),
        "encoded once"
    );
    assert!(!Arc::ptr_eq(&a, &encoder.encode(&own).unwrap()));
    drop(encoded);

    let ids = store.enqueue(jobs).await.unwrap();
    assert_eq!(bodies_of(&store).await, [3, 1], "one body per notification");

    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(Arc::ptr_eq(
        &claimed[0].notification,
        &claimed[1].notification
    ));
    assert!(Arc::ptr_eq(
        &claimed[0].notification,
        &claimed[3].notification
    ));
    assert!(!Arc::ptr_eq(
        &claimed[0].notification,
        &claimed[2].notification
    ));
    assert_eq!(*claimed[0].notification, *shared);
    assert_eq!(*claimed[2].notification, *own);

    store
        .complete(vec![ids[0], ids[1]], Vec::new())
        .await
        .unwrap();
    assert_eq!(bodies_of(&store).await, [1, 1]);
    store.complete(vec![ids[3]], Vec::new()).await.unwrap();
    assert_eq!(bodies_of(&store).await, [1], "deleted with its last job");
    store.complete(vec![ids[2]], Vec::new()).await.unwrap();
    assert!(bodies_of(&store).await.is_empty());
}

/// Past `web.history_max`, the oldest records go a sixteenth of the maximum at a time, before
/// the next batch: the history holds the newest records, never more than the maximum once a
/// later request has run, and a run of old pages is freed at once.
#[tokio::test]
async fn history_past_its_maximum_is_pruned_in_runs_before_the_next_batch() {
    use crate::store::history::HistoryFilter;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let now = Utc::now();
    let keep = kept_an_hour(32);
    let n = std::sync::Arc::new(crate::webhook::sample_notification());
    let mut ids = Vec::new();
    for i in 0..40 {
        let added = store
            .history_add(vec![queued_record(&format!("i-{i}"), &n, now)], keep, now)
            .await
            .unwrap();
        ids.extend(added);
    }
    let all = HistoryFilter {
        receiver: None,
        state: None,
        alertname: None,
        limit: 1000,
    };
    let mut kept: Vec<i64> = store
        .history(all)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    kept.sort();
    // 33 records: down to 30 (two beyond the one too many), then 33 again three records later.
    // The 40th record's batch began with 33: 30 were left, and it made 31.
    assert_eq!(kept, ids[9..]);
}

/// A queued delivery's record is stored without what its body shows (group key, status,
/// alertnames, links) and reads back whole, after a change too; a record whose notification
/// has as many alerts as a record keeps is stored whole.
#[tokio::test]
async fn a_record_reading_a_body_is_stored_without_what_the_body_shows() {
    use crate::store::history::{Change, DeliveryState, HistoryFilter, Update};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let now = Utc::now();
    let keep = kept_an_hour(100);
    let small = Arc::new(crate::webhook::sample_notification());
    let mut large = crate::webhook::sample_notification();
    let one = large.alerts[0].clone();
    large.alerts = (0..crate::store::history::RECORD_ALERTS)
        .map(|i| {
            let mut a = one.clone();
            a.labels.insert("alertname".into(), format!("A{i}"));
            a.generator_url = format!("http://prometheus/graph?g{i}");
            a
        })
        .collect();
    let large = Arc::new(large);
    // A fresh record, showing what its notification gives as the accept path's records do.
    let made = |integration: &str, n: &crate::webhook::Notification| {
        let mut d = queued_record(integration, n, now);
        crate::store::history::Derived::of(n).show_in(&mut d);
        d
    };
    assert!(!made("i-1", &small).generator_urls.is_empty());
    assert!(made("i-1", &small).external_url.is_some());
    let (admitted, failed) = store
        .admit_recorded(
            vec![
                Admission::of(job_of("i-1", &small)),
                Admission::of(job_of("i-2", &large)),
            ],
            vec![made("i-1", &small), made("i-2", &large)],
            keep,
            now,
        )
        .await
        .unwrap();
    assert!(failed.is_none());
    let Admitted::Queued { id: first, .. } = admitted[0] else {
        panic!("queued: {admitted:?}")
    };
    let raw = || async {
        store
            .call(|w| {
                let mut s = w
                    .conn
                    .prepare("SELECT record FROM history ORDER BY id")
                    .map_err(db)?;
                let rows = s
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(db)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?;
                Ok(rows)
            })
            .await
            .unwrap()
    };
    let rows = raw().await;
    assert!(rows[0].starts_with(r#"{"lean":1"#), "{}", rows[0]);
    // Neither what the body shows nor what the row's columns hold, nor empty fields.
    for left in ["generator_urls", "integration", "receiver", "state", "null"] {
        assert!(!rows[0].contains(left), "{left}: {}", rows[0]);
    }
    assert!(
        !rows[1].starts_with(r#"{"lean""#),
        "kept whole: {}",
        rows[1]
    );
    assert!(rows[1].contains("generator_urls"));
    let all = HistoryFilter {
        receiver: None,
        state: None,
        alertname: None,
        limit: 10,
    };
    let shown = |d: &Delivery| {
        (
            d.group_key.clone(),
            d.status.clone(),
            d.alertnames.clone(),
            d.external_url.clone(),
            d.generator_urls.clone(),
        )
    };
    let expect = |n: &crate::webhook::Notification| shown(&made("x", n));
    let read = store.history(all.clone()).await.unwrap();
    let by = |i: &str| read.iter().find(|d| d.integration == i).unwrap().clone();
    assert_eq!(shown(&by("i-1")), expect(&small));
    assert_eq!(shown(&by("i-2")), expect(&large));
    assert_eq!(by("i-1").job, Some(first));
    // A change rewrites the record, still without what the body shows.
    let sent = Update {
        job: first,
        change: Change::Sent { attempts: 1 },
        or_insert: None,
    };
    store.history_update(vec![sent], keep, now).await.unwrap();
    assert!(raw().await[0].starts_with(r#"{"lean":1"#));
    let read = store.history(all.clone()).await.unwrap();
    let d = read
        .iter()
        .find(|d| d.integration == "i-1")
        .unwrap()
        .clone();
    assert_eq!(d.state, DeliveryState::Sent);
    assert_eq!(d.attempts, 1);
    assert_eq!(shown(&d), expect(&small));
    // A row written in the form before (the columns' values in the record too) reads the same.
    let time = |t: &DateTime<Utc>| serde_json::to_string(t).unwrap();
    let before = format!(
        r#"{{"derived":true,"job":{first},"receiver":"{}","kind":"{}","integration":"i-1","state":"sent","attempts":1,"accepted_at":{},"updated_at":{},"sent_at":{},"next_attempt":null,"last_error":null,"digest":null,"merged":null}}"#,
        d.receiver,
        d.kind,
        time(&d.accepted_at),
        time(&d.updated_at),
        serde_json::to_string(&d.sent_at).unwrap(),
    );
    store
        .call(move |w| {
            w.conn
                .execute(
                    "UPDATE history SET record = ?1 WHERE integration = 'i-1'",
                    [before],
                )
                .map_err(db)
        })
        .await
        .unwrap();
    let read = store.history(all).await.unwrap();
    let again = read.iter().find(|d| d.integration == "i-1").unwrap();
    assert_eq!(*again, d);
}

/// A queued delivery's history record reads its job's body instead of a copy (the row holds
/// no notification of its own) and shows it; a suppressed duplicate's record holds its own.
/// The body outlives the job while its record is kept, and goes when the record is pruned.
#[tokio::test]
async fn a_queued_deliverys_record_reads_its_jobs_body() {
    use crate::store::history::{HistoryFilter, Retention};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let now = Utc::now();
    let keep = kept_an_hour(100);
    let n = Arc::new(crate::webhook::sample_notification());
    let record = |integration: &str| queued_record(integration, &n, now);
    let marked = |integration: &str| {
        let mut a = Admission::of(job_of(integration, &n));
        a.identity = Some(Mark {
            key: format!("dup:{integration}"),
            value: 1,
            expires_at: now + chrono::Duration::hours(1),
        });
        a
    };
    let (admitted, failed) = store
        .admit_recorded(
            vec![marked("i-1"), marked("i-2")],
            vec![record("i-1"), record("i-2")],
            keep,
            now,
        )
        .await
        .unwrap();
    assert!(failed.is_none());
    let Admitted::Queued { id, .. } = admitted[0] else {
        panic!("{admitted:?}")
    };
    // Both jobs and both records read the one body.
    assert_eq!(bodies_of(&store).await, [4]);
    let (admitted, _) = store
        .admit_recorded(vec![marked("i-1")], vec![record("i-1")], keep, now)
        .await
        .unwrap();
    assert_eq!(admitted, [Admitted::Duplicate]);
    assert_eq!(bodies_of(&store).await, [4], "a duplicate stores no body");
    let copies = count(
        &store,
        "SELECT count(*) FROM history WHERE notification IS NOT NULL".into(),
    )
    .await;
    assert_eq!(copies, 1, "only the suppressed record holds a copy");
    let all = HistoryFilter {
        receiver: None,
        state: None,
        alertname: None,
        limit: 10,
    };
    let read = store.history(all.clone()).await.unwrap();
    assert_eq!(read.len(), 3);
    for d in &read {
        assert_eq!(d.notification.as_ref(), Some(&*n), "record {}", d.id);
    }

    store.claim(now, 10).await.unwrap();
    store.complete(vec![id, id + 1], Vec::new()).await.unwrap();
    assert_eq!(bodies_of(&store).await, [2], "the records still read it");
    let read = store.history(all).await.unwrap();
    assert!(read.iter().all(|d| d.notification.as_ref() == Some(&*n)));
    // Pruned to one record (the newest, the duplicate's), the body goes with the others.
    let one = Retention { max: 1, ..keep };
    store
        .history_add(vec![record("i-3")], one, now)
        .await
        .unwrap();
    assert!(bodies_of(&store).await.is_empty());
}

/// A store written by an older version opens: its jobs (their notification in the row), its
/// history records and its dedupe state read back, the dedupe table is moved into a run
/// (keys kept), the indexes no longer kept are gone, and new jobs go to bodies beside the old.
#[tokio::test]
async fn a_store_of_the_older_format_opens_and_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let n = crate::webhook::sample_notification();
    let json = serde_json::to_string(&n).unwrap();
    let now = Utc::now();
    {
        let conn = rusqlite::Connection::open(dir.path().join(FILE)).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE jobs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL,
                 integration TEXT NOT NULL, kind TEXT NOT NULL, notification TEXT NOT NULL,
                 attempt INTEGER NOT NULL DEFAULT 0, progress TEXT NOT NULL DEFAULT '[]',
                 accepted_at INTEGER NOT NULL, not_before INTEGER NOT NULL, state TEXT NOT NULL,
                 fallback INTEGER NOT NULL DEFAULT 0, last_error TEXT, reason TEXT,
                 failed_at INTEGER, held INTEGER NOT NULL DEFAULT 0,
                 starts INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX jobs_due ON jobs (state, not_before);
             CREATE INDEX jobs_target ON jobs (receiver, integration, state);
             CREATE TABLE dedupe (key TEXT PRIMARY KEY, value INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL);
             CREATE INDEX dedupe_expiry ON dedupe (expires_at);
             CREATE TABLE counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL);
             CREATE TABLE history (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, job INTEGER, receiver TEXT NOT NULL,
                 integration TEXT NOT NULL, state TEXT NOT NULL, alertnames TEXT NOT NULL,
                 adoptable INTEGER NOT NULL DEFAULT 0, accepted_at INTEGER NOT NULL,
                 record TEXT NOT NULL, notification TEXT);
             CREATE INDEX history_job ON history (job);
             CREATE INDEX history_accepted ON history (accepted_at);
             CREATE INDEX history_adopt ON history (receiver, integration, adoptable);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO jobs (receiver, integration, kind, notification, accepted_at, not_before,
             state) VALUES ('a', 'console-0', 'console', ?1, ?2, ?2, 'pending')",
            rusqlite::params![json, ms(now)],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO dedupe (key, value, expires_at) VALUES ('dup:old', 7, ?1)",
            [ms(now) + 3_600_000],
        )
        .unwrap();
        let mut d = queued_record("console-0", &n, now);
        d.job = Some(1);
        let record = serde_json::to_string(&Delivery {
            notification: None,
            ..d
        })
        .unwrap();
        conn.execute(
            "INSERT INTO history (job, receiver, integration, state, alertnames, accepted_at,
             record, notification) VALUES (1, 'a', 'console-0', 'queued', '[]', ?1, ?2, ?3)",
            rusqlite::params![ms(now), record, json],
        )
        .unwrap();
    }

    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    assert_eq!(
        store.recall(vec!["dup:old".into()], now).await.unwrap(),
        [Some(7)]
    );
    let (dedupe, indexes): (String, Vec<String>) = store
        .call(|w| {
            let sql = w
                .conn
                .query_row(
                    "SELECT (SELECT count(*) FROM sqlite_master WHERE name = 'dedupe')
                       || ' ' || (SELECT group_concat(hex(key)) FROM dedupe_runs)
                       || ' ' || (SELECT group_concat(state) FROM dedupe_run_list)",
                    [],
                    |r| r.get(0),
                )
                .map_err(db)?;
            let mut s = w
                .conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")
                .map_err(db)?;
            let names = s
                .query_map([], |r| r.get(0))
                .map_err(db)?
                .collect::<Result<Vec<String>, _>>()
                .map_err(db)?;
            Ok((sql, names))
        })
        .await
        .unwrap();
    assert_eq!(
        dedupe,
        format!(
            "0 {} sealed",
            hex::encode_upper(super::dedupe::digest("dup:old"))
        ),
        "the old table is gone, its key in a run (as its digest)"
    );
    assert!(
        !indexes
            .iter()
            .any(|i| i == "history_accepted" || i == "history_adopt" || i == "dedupe_expiry"),
        "{indexes:?}"
    );
    assert!(
        indexes.iter().any(|i| i == "history_adoptable"),
        "{indexes:?}"
    );

    let history = store
        .history(crate::store::history::HistoryFilter {
            receiver: None,
            state: None,
            alertname: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].notification.as_ref(), Some(&n));

    let new = store.enqueue(vec![job("a")]).await.unwrap();
    assert_eq!(bodies_of(&store).await, [1]);
    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].id, 1);
    assert_eq!(
        *claimed[0].notification, n,
        "the old row's own notification"
    );
    assert_eq!(claimed[1].id, new[0]);
    assert_eq!(*claimed[1].notification, n);
    store.complete(vec![1, new[0]], Vec::new()).await.unwrap();
    assert!(bodies_of(&store).await.is_empty());
    drop(store);
    // Opened again: nothing to migrate twice.
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    assert_eq!(
        store.recall(vec!["dup:old".into()], now).await.unwrap(),
        [Some(7)]
    );
}

/// Dedupe keys are appended to the log, not written into the key B-tree: what was taken is
/// known again after a restart (the log read back), and a commit that does not stand takes
/// its keys out of memory too.
#[tokio::test]
async fn dedupe_keys_in_the_log_survive_a_reopen_and_follow_a_refused_commit() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Utc::now();
    {
        let store = SqliteStore::open(dir.path(), 100, true).unwrap();
        let out = store
            .admit(vec![admission("k", t0, 60_000)], t0)
            .await
            .unwrap();
        assert!(matches!(out[0], Admitted::Queued { .. }), "{out:?}");
        // A refused commit: the keys it took are not held afterwards.
        testing::refuse_writes(&store, true).await.unwrap();
        assert!(
            store
                .admit(vec![admission("r", t0, 60_000)], t0)
                .await
                .is_err()
        );
        testing::refuse_writes(&store, false).await.unwrap();
        let got = store
            .recall(vec!["dup:k".into(), "dup:r".into()], t0)
            .await
            .unwrap();
        assert_eq!(got, [Some(1), None]);
        let merged: i64 = store
            .call(|w| {
                w.conn
                    .query_row("SELECT count(*) FROM dedupe_runs", [], |r| r.get(0))
                    .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(merged, 0, "keys wait in the log until it is merged");
        // Dropped without any merge, as a kill would leave it.
    }
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let out = store
        .admit(vec![admission("k", t0, 60_000)], t0)
        .await
        .unwrap();
    assert_eq!(
        out,
        [Admitted::Duplicate],
        "the identity taken before the restart"
    );
    let out = store
        .admit(vec![admission("r", t0, 60_000)], t0)
        .await
        .unwrap();
    assert!(matches!(out[0], Admitted::Queued { .. }), "{out:?}");
    assert_eq!(store.state_size().await.unwrap(), 6);
}

/// Rows of `dedupe_runs` and of `dedupe_log`.
async fn dedupe_rows(store: &SqliteStore) -> (usize, usize) {
    let rows = |t: &str| count(store, format!("SELECT count(*) FROM {t}"));
    (
        rows("dedupe_runs").await as usize,
        rows("dedupe_log").await as usize,
    )
}

/// What a `SELECT count(*) …` answers on the writer's connection.
async fn count(store: &SqliteStore, sql: String) -> i64 {
    store
        .call(move |w| w.conn.query_row(&sql, [], |r| r.get(0)).map_err(db))
        .await
        .unwrap()
}

/// Past `MERGE_AT` keys the log is written out as a run a slice before each batch, and
/// emptied of what the merge took by the last slice; every key answers throughout, with the
/// value it was first taken with; a key taken again during the merge answers with its newer state,
/// and extending a merged key keeps its value.
#[tokio::test]
async fn the_dedupe_log_is_merged_a_slice_per_batch_once_it_is_full() {
    use super::dedupe::{LOG_STEP, MERGE_AT, SLICE};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), usize::MAX, true).unwrap();
    let t0 = Utc::now();
    let exp = t0 + chrono::Duration::seconds(600);
    let key = |i: usize| format!("firing:{i:08}");
    let mark = |i: usize, value: i64, expires_at| Mark {
        key: key(i),
        value,
        expires_at,
    };
    let n = MERGE_AT + 10;
    store
        .remember((0..n).map(|i| mark(i, i as i64, exp)).collect(), t0)
        .await
        .unwrap();
    // The merge's steps: its slices, then the log emptied of what they took (rows 1..=n).
    let slices = n.div_ceil(SLICE);
    let steps = slices + n.div_ceil(LOG_STEP as usize);
    let rounds = steps.div_ceil(2);
    let later = t0 + chrono::Duration::seconds(900);
    // Two batches a round (each after one step): one takes a new key (the first also extends
    // the log's last key, which the merge has taken already: its later state waits in the
    // log), one reads what the tables hold and what four keys answer.
    for k in 0..rounds {
        let mut marks = vec![mark(n + k, 7, exp)];
        if k == 0 {
            marks.push(mark(n - 1, 99, later));
        }
        store.remember(marks, t0).await.unwrap();
        let probe = [key(3), key(n / 2), key(n - 1), key(n + k)];
        let (merged, logged, values) = store
            .call(move |w| {
                let count = |t: &str| {
                    w.conn
                        .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
                            r.get::<_, i64>(0)
                        })
                        .map(|n| n as usize)
                        .map_err(db)
                };
                let values = probe
                    .iter()
                    .map(|k| {
                        super::dedupe::current(w, &super::dedupe::digest(k))
                            .map(|e| e.map(|e| e.value))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((count("dedupe_runs")?, count("dedupe_log")?, values))
            })
            .await
            .unwrap();
        let done = (2 * (k + 1)).min(steps);
        let written = k + 2;
        assert_eq!(merged, (done.min(slices) * SLICE).min(n), "round {k}");
        // Once every slice is merged, the log loses LOG_STEP rows of what they took a step;
        // the keys taken since stay, latest state each.
        let deleted = (done.saturating_sub(slices) as i64 * LOG_STEP).min(n as i64) as usize;
        assert_eq!(logged, n - deleted + written, "round {k}");
        assert_eq!(
            values,
            [Some(3), Some(n as i64 / 2), Some(n as i64 - 1), Some(7)],
            "round {k}"
        );
    }
    let merged = dedupe_rows(&store).await.0;
    // Every key the merge took, the one taken again during it with the state the merge took:
    // its later state waits in the log, and answers first.
    assert_eq!(merged, n);
    assert_eq!(store.state_size().await.unwrap(), (n + rounds) as u64);
    // Extended with a later expiry and another value: the first value stays.
    store.remember(vec![mark(5, 99, later)], t0).await.unwrap();
    let keys = vec![key(5), key(n - 1), key(n - 2), key(n)];
    assert_eq!(
        store.recall(keys.clone(), t0).await.unwrap(),
        [Some(5), Some(n as i64 - 1), Some(n as i64 - 2), Some(7)]
    );
    // Past the first expiry only the extended keys are left.
    let after = t0 + chrono::Duration::seconds(700);
    assert_eq!(
        store.recall(keys, after).await.unwrap(),
        [Some(5), Some(n as i64 - 1), None, None]
    );
}

/// Expired keys are not counted, and a run whose keys have all expired is deleted: a store
/// written through for a day holds what is live, not every key ever taken.
#[tokio::test]
async fn a_run_whose_keys_have_all_expired_is_deleted() {
    use super::dedupe::{LOG_STEP, MERGE_AT, SLICE};
    use super::dedupe_runs::ROWS_STEP;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), usize::MAX, true).unwrap();
    let t0 = Utc::now();
    let marks = |prefix: &str, at: DateTime<Utc>| {
        (0..MERGE_AT)
            .map(|i| Mark {
                key: format!("{prefix}:{i:08}"),
                value: 1,
                expires_at: at + chrono::Duration::seconds(60),
            })
            .collect::<Vec<_>>()
    };
    let merge = |at: DateTime<Utc>| {
        let store = &store;
        async move {
            // The log written out and emptied, an expired run marked and deleted.
            let steps = MERGE_AT / SLICE + MERGE_AT / LOG_STEP as usize + MERGE_AT / ROWS_STEP;
            for _ in 0..steps + 4 {
                store.remember(Vec::new(), at).await.unwrap();
            }
        }
    };
    store.remember(marks("old", t0), t0).await.unwrap();
    merge(t0).await;
    assert_eq!(dedupe_rows(&store).await, (MERGE_AT, 0));
    assert_eq!(store.state_size().await.unwrap(), MERGE_AT as u64);
    // Two minutes on, the old keys have expired: not counted, and gone with the next merge.
    let t1 = t0 + chrono::Duration::seconds(120);
    store.remember(marks("new", t1), t1).await.unwrap();
    assert_eq!(store.state_size().await.unwrap(), MERGE_AT as u64);
    merge(t1).await;
    assert_eq!(dedupe_rows(&store).await, (MERGE_AT, 0));
    let row_of = |key: &str| {
        format!(
            "SELECT count(*) FROM dedupe_runs WHERE key = x'{}'",
            hex::encode(super::dedupe::digest(key))
        )
    };
    assert_eq!(count(&store, row_of("old:00000000")).await, 0);
    assert_eq!(count(&store, row_of("new:00000000")).await, 1);
}

/// The runs' listing: (state, keys) of each, oldest first.
async fn run_list(store: &SqliteStore) -> Vec<(String, i64)> {
    store
        .call(|w| {
            let mut s = w
                .conn
                .prepare("SELECT state, keys FROM dedupe_run_list ORDER BY upto, run")
                .map_err(db)?;
            let rows = s
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            Ok(rows)
        })
        .await
        .unwrap()
}

/// Batches (each after a step of the dedupe state's upkeep) until the runs' listing is `until`.
async fn settle(store: &SqliteStore, at: DateTime<Utc>, until: impl Fn(&[(String, i64)]) -> bool) {
    for _ in 0..2_000 {
        if until(&run_list(store).await) {
            return;
        }
        store.remember(Vec::new(), at).await.unwrap();
    }
    panic!("not reached in 2000 batches: {:?}", run_list(store).await);
}

/// `FANOUT` runs of one size are merged into one a step per batch: each key keeps its newest
/// state (a key extended in every run answers until its last expiry), expired keys are left
/// out, and the runs merged are deleted. A restart in the middle of the merge, or a step of it
/// that cannot commit, gives up what it was writing and loses nothing: the runs' filters are
/// built again from the file, every key answers, and the merge is done again.
#[tokio::test]
async fn runs_of_a_size_merge_into_one_keeping_each_keys_newest_state() {
    use super::dedupe::MERGE_AT;
    use super::dedupe_runs::FANOUT;
    let dir = tempfile::tempdir().unwrap();
    let t0 = Utc::now();
    let secs = |s: i64| t0 + chrono::Duration::seconds(s);
    let mark = |key: String, value: i64, expires_at| Mark {
        key,
        value,
        expires_at,
    };
    // Each run: its own keys, 8 keys shared by all (extended each time, to a later expiry),
    // and, in the first, 100 keys that expire within a second.
    let round = |r: usize| {
        let mut marks: Vec<Mark> = (0..MERGE_AT - 8 - 100)
            .map(|i| mark(format!("r{r}:{i:06}"), (r * MERGE_AT + i) as i64, secs(600)))
            .collect();
        marks.extend(
            (0..8).map(|j| mark(format!("shared:{j}"), r as i64, secs(100 * (r as i64 + 1)))),
        );
        marks.extend((0..100).map(|j| {
            mark(
                format!("short{r}:{j}"),
                1,
                if r == 0 { secs(1) } else { secs(600) },
            )
        }));
        marks
    };
    let probe: Vec<String> = (0..FANOUT)
        .flat_map(|r| [format!("r{r}:000000"), format!("r{r}:{:06}", MERGE_AT / 2)])
        .chain((0..8).map(|j| format!("shared:{j}")))
        .collect();
    let want: Vec<Option<i64>> = (0..FANOUT)
        .flat_map(|r| {
            [
                Some((r * MERGE_AT) as i64),
                Some((r * MERGE_AT + MERGE_AT / 2) as i64),
            ]
        })
        .chain((0..8).map(|_| Some(0)))
        .collect();
    {
        let store = SqliteStore::open(dir.path(), usize::MAX, true).unwrap();
        for r in 0..FANOUT {
            store.remember(round(r), t0).await.unwrap();
            // Written out and sealed.
            settle(&store, t0, |l| {
                l.len() == r + 1 && l.iter().all(|(s, _)| s == "sealed")
            })
            .await;
        }
        let later = secs(5);
        // Merged: a run being built beside them, part of it written.
        settle(&store, later, |l| l.iter().any(|(s, _)| s == "building")).await;
        store.remember(Vec::new(), later).await.unwrap();
        store.remember(Vec::new(), later).await.unwrap();
        let l = run_list(&store).await;
        assert_eq!(l.len(), FANOUT + 1, "{l:?}");
        let (rows, _) = dedupe_rows(&store).await;
        assert!(rows > FANOUT * MERGE_AT - 100, "{rows} rows");
        assert_eq!(store.recall(probe.clone(), later).await.unwrap(), want);
        // Dropped in the middle of the merge, as a kill would leave it.
    }
    let store = SqliteStore::open(dir.path(), usize::MAX, true).unwrap();
    let later = secs(5);
    assert_eq!(store.recall(probe.clone(), later).await.unwrap(), want);
    // Begun again; a step that cannot commit gives it up (what it wrote is deleted as gone)
    // and it is begun once more, the runs it merges answering throughout.
    settle(&store, later, |l| l.iter().any(|(s, _)| s == "building")).await;
    store.remember(Vec::new(), later).await.unwrap();
    let building = |after: i64| {
        count(
            &store,
            format!(
                "SELECT count(*) FROM dedupe_run_list WHERE state = 'building' AND run > {after}"
            ),
        )
    };
    let first: i64 = count(
        &store,
        "SELECT run FROM dedupe_run_list WHERE state = 'building'".into(),
    )
    .await;
    testing::refuse_writes(&store, true).await.unwrap();
    store.remember(Vec::new(), later).await.unwrap();
    testing::refuse_writes(&store, false).await.unwrap();
    assert_eq!(store.recall(probe.clone(), later).await.unwrap(), want);
    let mut again = false;
    for _ in 0..2_000 {
        if building(first).await == 1 {
            again = true;
            break;
        }
        store.remember(Vec::new(), later).await.unwrap();
    }
    assert!(again, "{:?}", run_list(&store).await);
    assert_eq!(
        count(
            &store,
            format!("SELECT count(*) FROM dedupe_runs WHERE run = {first}")
        )
        .await,
        0,
        "what the merge given up wrote is deleted"
    );
    settle(&store, later, |l| l.len() == 1 && l[0].0 == "sealed").await;
    let l = run_list(&store).await;
    // Every key but the 100 expired, once each.
    let keys = (FANOUT * (MERGE_AT - 8 - 100) + 8 + (FANOUT - 1) * 100) as i64;
    assert_eq!(l, [("sealed".to_string(), keys)]);
    assert_eq!(dedupe_rows(&store).await, (keys as usize, 0));
    assert_eq!(store.recall(probe.clone(), later).await.unwrap(), want);
    // The shared keys hold the last run's expiry: past the others', they still answer.
    let shared: Vec<String> = (0..8).map(|j| format!("shared:{j}")).collect();
    assert_eq!(
        store
            .recall(shared.clone(), secs(100 * FANOUT as i64 - 50))
            .await
            .unwrap(),
        vec![Some(0); 8]
    );
    assert_eq!(
        store
            .recall(shared, secs(100 * FANOUT as i64 + 50))
            .await
            .unwrap(),
        vec![None; 8]
    );
    assert_eq!(store.state_size().await.unwrap(), keys as u64);
}

/// A run's filter never misses a key it holds, and lets few absent keys through.
#[test]
fn a_runs_filter_holds_its_keys_and_few_others() {
    let holds = super::dedupe_runs::Bloom::of((0..10_000).map(|i| format!("k:{i}")));
    assert!((0..10_000).all(|i| holds(&format!("k:{i}"))));
    let through = (0..10_000)
        .filter(|i| holds(&format!("absent:{i}")))
        .count();
    assert!(through < 300, "{through} of 10000 absent keys let through");
}

/// A merge cut short by a restart loses nothing: the log is read back whole, the keys merged
/// already answer the same from either place, and the next merge finishes the work.
#[tokio::test]
async fn a_merge_cut_short_loses_nothing() {
    use super::dedupe::{LOG_STEP, MERGE_AT, SLICE};
    let dir = tempfile::tempdir().unwrap();
    let t0 = Utc::now();
    let exp = t0 + chrono::Duration::seconds(600);
    let mark = |i: usize| Mark {
        key: format!("k:{i:08}"),
        value: i as i64,
        expires_at: exp,
    };
    let n = MERGE_AT + 1;
    {
        let store = SqliteStore::open(dir.path(), usize::MAX, true).unwrap();
        store
            .remember((0..n).map(mark).collect(), t0)
            .await
            .unwrap();
        for k in 0..3 {
            store.remember(vec![mark(n + k)], t0).await.unwrap();
        }
        let (merged, logged) = dedupe_rows(&store).await;
        assert!(merged >= 2 * SLICE && merged < n, "{merged} merged");
        assert_eq!(logged, n + 3);
    }
    let store = SqliteStore::open(dir.path(), usize::MAX, true).unwrap();
    let probe: Vec<String> = [0, SLICE / 2, n / 2, n - 1, n + 2]
        .iter()
        .map(|&i| mark(i).key)
        .collect();
    let want: Vec<Option<i64>> = [0, SLICE / 2, n / 2, n - 1, n + 2]
        .iter()
        .map(|&i| Some(i as i64))
        .collect();
    assert_eq!(store.recall(probe.clone(), t0).await.unwrap(), want);
    for k in 3..3 + n.div_ceil(SLICE) + n.div_ceil(LOG_STEP as usize) {
        store.remember(vec![mark(n + k)], t0).await.unwrap();
    }
    let (merged, logged) = dedupe_rows(&store).await;
    assert!(
        merged >= n && logged < SLICE,
        "{merged} merged, {logged} logged"
    );
    assert_eq!(store.recall(probe, t0).await.unwrap(), want);
}

/// A body is stored compressed; one stored as text (by an older version) reads the same.
#[tokio::test]
async fn bodies_are_stored_compressed_and_text_bodies_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let j = job("a");
    let json = serde_json::to_string(&*j.notification).unwrap();
    let expected = j.notification.clone();
    store.enqueue(vec![j.clone(), j]).await.unwrap();
    let (kind, len): (String, i64) = store
        .call(|w| {
            w.conn
                .query_row(
                    "SELECT typeof(json), length(json) FROM bodies ORDER BY body LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db)
        })
        .await
        .unwrap();
    assert_eq!(kind, "blob");
    assert!((len as usize) < json.len(), "{len} of {}", json.len());
    // The body (one, shared by both jobs) rewritten as text, as an older version wrote it.
    store
        .call(move |w| {
            w.conn
                .execute(
                    "UPDATE bodies SET json = ?1 WHERE body = (SELECT max(body) FROM bodies)",
                    [json],
                )
                .map_err(db)
        })
        .await
        .unwrap();
    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    for c in claimed {
        assert_eq!(*c.notification, *expected);
    }
}

/// An escalation timer due behind a backlog of deliveries is claimed at once by
/// `claim_control`, which takes nothing else and nothing before it is due.
#[tokio::test]
async fn control_jobs_are_claimed_ahead_of_the_deliveries_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 100_000).unwrap();
    let now = Utc::now();
    let backlog: Vec<NewJob> = (0..50)
        .map(|i| NewJob {
            accepted_at: now - chrono::Duration::seconds(60 - i),
            ..job("storm")
        })
        .collect();
    store.enqueue(backlog).await.unwrap();
    let control = |name: &str, due: DateTime<Utc>| NewJob {
        integration: crate::store::IntegrationId(name.into()),
        kind: crate::store::incident::CONTROL_KIND.into(),
        accepted_at: due,
        ..job("oncall")
    };
    store
        .enqueue(vec![
            control("escalate-1-1-0", now - chrono::Duration::seconds(1)),
            control("escalate-2-1-0", now + chrono::Duration::hours(1)),
        ])
        .await
        .unwrap();
    // The ordinary claim takes the backlog first: the timer waits behind 50 deliveries.
    let first = store.claim(now, 16).await.unwrap();
    assert!(first.iter().all(|j| j.receiver == "storm"));
    let taken = store.claim_control(now, 64).await.unwrap();
    let names: Vec<&str> = taken.iter().map(|j| j.integration.as_str()).collect();
    assert_eq!(names, ["escalate-1-1-0"]);
    // Claimed once: not handed out again, and the one due later waits for its time.
    assert!(store.claim_control(now, 64).await.unwrap().is_empty());
    let later = store
        .claim_control(now + chrono::Duration::hours(2), 64)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].integration.as_str(), "escalate-2-1-0");
}

/// A statement with `LIMIT ?` runs compiled once: a new limit bound does not make SQLite
/// compile it again (the planner's stability guarantee is on).
#[tokio::test]
async fn a_limit_bound_anew_does_not_recompile_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let reprepared = store
        .call(|w| {
            let sql = "SELECT id FROM history ORDER BY id LIMIT ?1";
            for limit in [1, 2, 3] {
                let mut s = w.conn.prepare_cached(sql).map_err(db)?;
                s.query_map([limit], |r| r.get::<_, i64>(0))
                    .map_err(db)?
                    .for_each(drop);
            }
            let s = w.conn.prepare_cached(sql).map_err(db)?;
            Ok(s.get_status(rusqlite::StatementStatus::RePrepare))
        })
        .await
        .unwrap();
    assert_eq!(reprepared, 0);
}

/// Aged records are looked for at most once a second of the writes' time: a write within the
/// second leaves an aged record, the first write a second later takes it away.
#[tokio::test]
async fn aged_records_go_with_the_first_write_a_second_later() {
    use crate::store::history::HistoryFilter;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let keep = kept_an_hour(100);
    let n = crate::webhook::sample_notification();
    let t0 = Utc::now();
    let at = |t: DateTime<Utc>| queued_record("i-1", &n, t);
    // Accepted an hour less 200 ms ago: it ages 200 ms from now.
    let old = t0 - chrono::Duration::milliseconds(3_600_000 - 200);
    store.history_add(vec![at(old)], keep, t0).await.unwrap();
    let count = || async {
        store
            .history(HistoryFilter {
                limit: 100,
                ..HistoryFilter::default()
            })
            .await
            .unwrap()
            .len()
    };
    assert_eq!(count().await, 1, "not aged yet");
    // 500 ms later it has aged, but the oldest were looked at 500 ms ago.
    let t_half = t0 + chrono::Duration::milliseconds(500);
    store
        .history_add(vec![at(t_half)], keep, t_half)
        .await
        .unwrap();
    assert_eq!(count().await, 2, "not looked at again within the second");
    let t1 = t0 + chrono::Duration::milliseconds(1000);
    store.history_add(vec![at(t1)], keep, t1).await.unwrap();
    assert_eq!(
        count().await,
        2,
        "the aged record is gone, the two new ones kept"
    );
    let list = store
        .history(HistoryFilter {
            limit: 100,
            ..HistoryFilter::default()
        })
        .await
        .unwrap();
    assert!(list.iter().all(|d| d.accepted_at > old), "{list:#?}");
}

/// Webhooks appended and routed later: read back oldest first as appended; routed once, in
/// the transaction that queues their jobs and records; a job whose notification is the body
/// as appended reads that body (no second copy), and a body no job took is deleted.
#[tokio::test]
async fn appended_webhooks_are_routed_once_and_jobs_read_their_body() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(dir.path(), 100, true).unwrap());
    let now = Utc::now();
    let first = crate::webhook::sample_notification();
    let mut second = crate::webhook::sample_notification();
    second.group_key = "{}:{alertname=\"Other\"}".into();
    store.append(&first, None, now).await.unwrap();
    store
        .append(&second, Some("named".into()), now)
        .await
        .unwrap();
    assert_eq!(store.inbox_len().await.unwrap(), 2);

    let taken = store.inbox_take(10).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(taken[0].id < taken[1].id, "oldest first");
    assert_eq!(taken[0].notification.as_ref().unwrap(), &first);
    assert_eq!(taken[1].notification.as_ref().unwrap(), &second);
    assert_eq!(taken[0].receiver, None);
    assert_eq!(taken[1].receiver.as_deref(), Some("named"));
    assert_eq!(
        taken[0].received_at.timestamp_millis(),
        now.timestamp_millis()
    );

    // The first makes two jobs of its notification as read back; the second makes none.
    let n = Arc::new(taken[0].notification.clone().unwrap());
    let admissions = vec![
        Admission::of(job_of("i-1", &n)),
        Admission::of(job_of("i-2", &n)),
    ];
    let records = vec![queued_record("i-1", &n, now), queued_record("i-2", &n, now)];
    let keep = kept_an_hour(100);
    let (admitted, failed) = store
        .admit_inboxed(&taken, admissions, records, keep, now)
        .await
        .unwrap();
    assert!(failed.is_none());
    assert_eq!(admitted.len(), 2);
    assert_eq!(
        store.inbox_len().await.unwrap(),
        0,
        "consumed with the admission"
    );
    assert!(store.inbox_take(10).await.unwrap().is_empty());
    let Store::Sqlite(s) = &store else {
        unreachable!()
    };
    // One body: the first webhook's, read by two jobs and two records; the second's is gone.
    assert_eq!(bodies_of(s).await, [4]);
    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(*claimed[0].notification, first);
}

/// An appended webhook counts as a waiting job: past `queue_capacity` the next is refused
/// (503), across a restart too, and a routing that cannot be stored leaves it appended.
#[tokio::test]
async fn appended_webhooks_count_against_capacity_and_survive_a_failed_routing() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let n = crate::webhook::sample_notification();
    let now = Utc::now();
    {
        let store = Store::Sqlite(SqliteStore::open(dir.path(), 2, true).unwrap());
        store.append(&n, None, now).await.unwrap();
        store.append(&n, None, now).await.unwrap();
        assert!(matches!(
            store.append(&n, None, now).await,
            Err(StoreError::Full)
        ));
    }
    let store = Store::Sqlite(SqliteStore::open(dir.path(), 2, true).unwrap());
    assert_eq!(store.inbox_len().await.unwrap(), 2, "kept across a restart");
    assert!(matches!(
        store.append(&n, None, now).await,
        Err(StoreError::Full)
    ));
    // Routing the first into three jobs does not fit (2 − 1 consumed + 3 > 2): nothing moves.
    let taken = store.inbox_take(1).await.unwrap();
    let shared = Arc::new(taken[0].notification.clone().unwrap());
    let three = (0..3)
        .map(|i| Admission::of(job_of(&format!("i-{i}"), &shared)))
        .collect();
    let keep = kept_an_hour(100);
    assert!(matches!(
        store
            .admit_inboxed(&taken, three, Vec::new(), keep, now)
            .await,
        Err(StoreError::Full)
    ));
    assert_eq!(store.inbox_len().await.unwrap(), 2, "left appended");
    let again = store.inbox_take(1).await.unwrap();
    assert_eq!(again[0].id, taken[0].id);
    assert_eq!(again[0].notification.as_ref().unwrap(), &n);
    // One job fits: routed, and the room it leaves takes a new webhook.
    let one = vec![Admission::of(job_of("i-0", &shared))];
    store
        .admit_inboxed(&again, one, Vec::new(), keep, now)
        .await
        .unwrap();
    assert_eq!(store.inbox_len().await.unwrap(), 1);
    assert!(matches!(
        store.append(&n, None, now).await,
        Err(StoreError::Full)
    ));
}

/// A store whose bodies counted their readers in their own rows has the counts moved to
/// `body_refs` when it is opened, and they keep working.
#[tokio::test]
async fn body_counts_move_out_of_the_bodies_of_an_older_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join(FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE bodies (body INTEGER PRIMARY KEY, json TEXT NOT NULL, refs INTEGER NOT NULL);
             INSERT INTO bodies (body, json, refs) VALUES (7, '{}', 2), (8, '{}', 1);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    assert_eq!(bodies_of(&store).await, [2, 1]);
    store
        .call(|w| {
            super::bodies::release(&w.conn, 8)?;
            super::bodies::release(&w.conn, 7)?;
            let old: i64 = w
                .conn
                .query_row("SELECT count(*) FROM bodies WHERE refs != 0", [], |r| {
                    r.get(0)
                })
                .map_err(db)?;
            assert_eq!(old, 0, "no count left in the bodies");
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        bodies_of(&store).await,
        [1],
        "8 deleted with its last reader"
    );
}

/// A store whose runs and log hold keys as text (before keys were kept as digests) opens: the
/// runs' keys are moved to their digests (the column declared anew), the log's are digested as
/// it is read, and every key answers as before; keys taken afterwards are digests.
#[tokio::test]
async fn dedupe_keys_kept_as_text_by_an_older_store_answer_as_digests() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let later = ms(now) + 3_600_000;
    {
        let conn = rusqlite::Connection::open(dir.path().join(FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE dedupe_log (seq INTEGER PRIMARY KEY, key TEXT NOT NULL,
                 value INTEGER NOT NULL, expires_at INTEGER NOT NULL);
             CREATE TABLE dedupe_runs (run INTEGER NOT NULL, key TEXT NOT NULL,
                 value INTEGER NOT NULL, expires_at INTEGER NOT NULL,
                 PRIMARY KEY (run, key)) WITHOUT ROWID;
             CREATE TABLE dedupe_run_list (run INTEGER PRIMARY KEY, upto INTEGER NOT NULL,
                 keys INTEGER NOT NULL, expires_at INTEGER NOT NULL, state TEXT NOT NULL);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO dedupe_runs VALUES (1, 'dup:run', 3, ?1), (1, 'firing:run', 4, ?1)",
            [later],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO dedupe_run_list VALUES (1, 5, 2, ?1, 'sealed')",
            [later],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO dedupe_log VALUES (6, 'dup:log', 8, ?1)",
            [later],
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    assert_eq!(
        store
            .recall(
                vec![
                    "dup:run".into(),
                    "firing:run".into(),
                    "dup:log".into(),
                    "dup:no".into()
                ],
                now
            )
            .await
            .unwrap(),
        [Some(3), Some(4), Some(8), None]
    );
    let new = Mark {
        key: "firing:new".into(),
        value: 9,
        expires_at: now + chrono::Duration::hours(1),
    };
    store.remember(vec![new], now).await.unwrap();
    let shape = store
        .call(|w| {
            w.conn
                .query_row(
                    "SELECT (SELECT type FROM pragma_table_info('dedupe_runs') WHERE name = 'key')
                       || ' ' || (SELECT group_concat(DISTINCT typeof(key)) FROM dedupe_runs)
                       || ' ' || (SELECT typeof(key) FROM dedupe_log ORDER BY seq DESC LIMIT 1)",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .map_err(db)
        })
        .await
        .unwrap();
    assert_eq!(shape, "BLOB blob blob");
    assert_eq!(store.state_size().await.unwrap(), 4);
}

/// A history far past its maximum (a burst, or a lower `web.history_max`) is pruned
/// `PRUNE_STEP` records before each batch, not all at once: no batch waits behind a long
/// delete, and the pruning goes on until the maximum holds.
#[tokio::test]
async fn a_history_far_past_its_maximum_is_pruned_a_step_per_batch() {
    use super::history::PRUNE_STEP;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100, true).unwrap();
    let now = Utc::now();
    let keep = kept_an_hour(10);
    let n = std::sync::Arc::new(crate::webhook::sample_notification());
    let added = 2 * PRUNE_STEP as usize + 50;
    let records = (0..added)
        .map(|i| queued_record(&format!("i-{i}"), &n, now))
        .collect();
    store.history_add(records, keep, now).await.unwrap();
    // Each count is a batch of its own: a step of pruning runs before it.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(count(&store, "SELECT count(*) FROM history".into()).await as usize);
    }
    let step = PRUNE_STEP as usize;
    assert_eq!(seen, [added - step, added - 2 * step, 10, 10]);
}

/// A busy writer (more than one request waiting) waits for its batch to hold as many requests
/// as the previous one, and stops waiting as soon as it does; a quiet one (one request) does
/// not wait; the wait ends at its window when no more come.
#[test]
fn a_busy_writer_gathers_a_batch_as_large_as_the_last_and_a_quiet_one_does_not_wait() {
    use std::time::{Duration, Instant};
    use writer::{Op, Place, gather};
    let op = || -> (Op, Place) {
        let (op, _rx) = writer::op_of(|_| Ok(()));
        (op, Place::InTurn)
    };
    let long = Duration::from_secs(30);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Quiet: one request, a previous batch of 5: no wait.
    let mut ops = vec![op()];
    let t = Instant::now();
    gather(&mut rx, &mut ops, 5, long);
    assert_eq!(ops.len(), 1);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Busy: three waiting, two more sent from elsewhere: taken, then no more waiting.
    tx.send(op()).unwrap();
    tx.send(op()).unwrap();
    let late = tx.clone();
    let sender = std::thread::spawn(move || {
        late.send(op()).unwrap();
        late.send(op()).unwrap();
    });
    let mut ops = vec![op()];
    let t = Instant::now();
    gather(&mut rx, &mut ops, 5, long);
    sender.join().unwrap();
    assert_eq!(ops.len(), 5);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Busy, and no more come: the window ends the wait.
    tx.send(op()).unwrap();
    let mut ops = vec![op()];
    let t = Instant::now();
    gather(&mut rx, &mut ops, 5, Duration::from_millis(20));
    assert_eq!(ops.len(), 2);
    assert!(t.elapsed() >= Duration::from_millis(20));
}

/// A merge's keys in buckets come out in key order, slice after slice, each bucket sorted when
/// a slice first reaches it: the same keys a full sort gives, whatever their number.
#[test]
fn a_merges_buckets_give_its_keys_in_key_order_a_slice_at_a_time() {
    use super::dedupe::{Buckets, Entry, Key, SLICE, digest};
    for n in [
        0,
        1,
        7,
        SLICE - 1,
        SLICE,
        SLICE + 1,
        5 * SLICE + 17,
        40 * SLICE,
    ] {
        let keys: Vec<(Key, Entry)> = (0..n)
            .map(|i| {
                let e = Entry {
                    value: i as i64,
                    expires_at: 1,
                };
                (digest(&format!("k:{i}")), e)
            })
            .collect();
        let mut whole = keys.clone();
        whole.sort_unstable_by_key(|(k, _)| *k);
        let mut b = Buckets::of(keys);
        assert_eq!(b.len(), n);
        let mut got = Vec::new();
        let mut from = 0;
        while from < n {
            let to = (from + SLICE).min(n);
            got.extend_from_slice(b.sorted(from, to));
            from = to;
        }
        assert_eq!(got, whole, "{n} keys");
    }
}
