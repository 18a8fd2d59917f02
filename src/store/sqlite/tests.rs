//! The SQLite backend's own tests (the shared store tests run on both backends in
//! `tests/it/store.rs`).

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::checkpoint::{WAL_KEEP_BYTES, WAL_PAGES};
use super::jobs::{encode_jobs, insert_jobs};
use super::*;
use crate::store::{Admission, Admitted, Mark, NewJob, Store};

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
    use crate::store::history::{Change, Delivery, DeliveryState, Retention, Update};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), 100_000, true).unwrap();
    let keep = Retention {
        max_age: std::time::Duration::from_secs(3600),
        max: 10_000,
    };
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
    let tx = store.tx.clone();
    type Request = Box<dyn FnOnce(&mut Writer) -> Result<(), StoreError> + Send>;
    let send = |f: Request| {
        let (op, rx) = op_of(f);
        tx.send(op).unwrap();
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
    let mut left: Vec<String> = store
        .claim(Utc::now(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.receiver)
        .collect();
    left.sort();
    assert_eq!(left, ["c", "x"]);
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
    // expire, pruned by the next admission.
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
    use crate::store::history::{Change, DeliveryState, HistoryFilter, Outcome, Retention, Update};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 100).unwrap();
    let Store::Sqlite(sqlite) = &store else {
        unreachable!()
    };
    let keep = Retention {
        max_age: std::time::Duration::from_secs(3600),
        max: 100,
    };
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
