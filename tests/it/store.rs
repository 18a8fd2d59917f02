//! The store's contract, run against both backends: SQLite in a temporary directory and a
//! real `redis-server`. Each case is written once and instantiated per backend.

use std::collections::BTreeSet;
use std::time::Duration;

use alertmanager_wechat::chatops::command::REF_ALPHABET;
use alertmanager_wechat::config::StorageConfig;
use alertmanager_wechat::secret::Secret;
use alertmanager_wechat::store::chatops::{self, Touch};
use alertmanager_wechat::store::progress::{Entry, Recipient};
use alertmanager_wechat::store::{
    Admission, Admitted, Failure, IntegrationId, Job, Mark, NewJob, Store, StoreError,
};
use alertmanager_wechat::webhook::Ack;
use chrono::{DateTime, Utc};

use crate::support::redis::RedisServer;
use crate::support::stored::{self, Raw};

/// What keeps a backend alive for the test (held for its `Drop`).
#[allow(dead_code)]
enum Guard {
    Sqlite(tempfile::TempDir),
    Redis(RedisServer),
}

async fn sqlite(capacity: usize) -> Option<(Store, Guard)> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), capacity).unwrap();
    Some((store, Guard::Sqlite(dir)))
}

fn redis_config(url: &str, capacity: usize, visibility: Duration) -> StorageConfig {
    StorageConfig {
        queue_capacity: capacity,
        redis_url: Some(Secret::new(url)),
        redis_prefix: "test:".into(),
        redis_visibility_timeout: visibility,
        ..StorageConfig::default()
    }
}

async fn redis(capacity: usize) -> Option<(Store, Guard)> {
    let server = RedisServer::start().await?;
    let store = Store::from_config(&redis_config(
        &server.url,
        capacity,
        Duration::from_secs(30),
    ))
    .unwrap();
    Some((store, Guard::Redis(server)))
}

/// Instantiates `async fn $name(store: Store, guard: &mut Guard)` for both backends.
macro_rules! both {
    ($name:ident, $capacity:expr) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                if let Some((store, mut guard)) = super::sqlite($capacity).await {
                    super::$name(store, &mut guard).await;
                }
            }
            #[tokio::test]
            async fn redis() {
                if let Some((store, mut guard)) = super::redis($capacity).await {
                    super::$name(store, &mut guard).await;
                }
            }
        }
    };
}

/// The identity of the test's integration number `n`.
fn id(n: usize) -> IntegrationId {
    IntegrationId(format!("wxpusher-{n:016x}"))
}

/// The number [`id`] was made from.
fn number(id: &IntegrationId) -> usize {
    id.as_str()
        .strip_prefix("wxpusher-")
        .and_then(|h| usize::from_str_radix(h, 16).ok())
        .unwrap_or(usize::MAX)
}

fn job(receiver: &str, integration: usize) -> NewJob {
    NewJob {
        receiver: receiver.into(),
        integration: id(integration),
        kind: "wxpusher".into(),
        notification: std::sync::Arc::new(alertmanager_wechat::runtime::sample_notification()),
        accepted_at: Utc::now(),
        fallback: false,
    }
}

fn failure(attempt: u32, error: &str) -> Failure {
    Failure {
        attempt,
        progress: [Entry::Sent {
            part: 0,
            to: Recipient::Uid("UID_a".into()),
        }]
        .into_iter()
        .collect(),
        error: error.into(),
        reason: "http_5xx",
    }
}

fn ids(jobs: &[Job]) -> Vec<i64> {
    jobs.iter().map(|j| j.id).collect()
}

/// Millisecond precision is what both backends keep.
fn trunc(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

async fn depth_of(store: &Store) -> Vec<(String, usize, u64)> {
    store
        .depth()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.receiver, number(&d.integration), d.count))
        .collect()
}

both!(jobs_round_trip_and_are_claimed_once, 100);
async fn jobs_round_trip_and_are_claimed_once(store: Store, _: &mut Guard) {
    let mut a = job("oncall", 0);
    a.accepted_at = Utc::now() - chrono::Duration::seconds(5);
    let mut b = job("dba:east", 1);
    b.fallback = true;
    let new = store.enqueue(vec![a.clone(), b.clone()]).await.unwrap();
    assert_eq!(new.len(), 2);
    assert!(new[0] < new[1]);
    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(ids(&claimed), new);
    let (ja, jb) = (&claimed[0], &claimed[1]);
    assert_eq!(
        (
            ja.receiver.as_str(),
            number(&ja.integration),
            ja.kind.as_str()
        ),
        ("oncall", 0, "wxpusher")
    );
    assert_eq!(ja.notification, a.notification);
    assert_eq!(trunc(ja.accepted_at), trunc(a.accepted_at));
    assert_eq!(trunc(ja.not_before), trunc(a.accepted_at));
    assert_eq!((ja.attempt, ja.fallback), (0, false));
    assert!(ja.progress.is_empty() && ja.last_error.is_none() && ja.failed_at.is_none());
    assert_eq!(
        (jb.receiver.as_str(), number(&jb.integration), jb.fallback),
        ("dba:east", 1, true)
    );
    // In flight: nobody else gets them, but they still count as waiting.
    assert!(store.claim(Utc::now(), 10).await.unwrap().is_empty());
    assert_eq!(
        depth_of(&store).await,
        [("dba:east".into(), 1, 1), ("oncall".into(), 0, 1)]
    );
    store.complete(vec![new[0]], Vec::new()).await.unwrap();
    assert_eq!(depth_of(&store).await, [("dba:east".into(), 1, 1)]);
    // Completing twice (a replica that was slow to finish) changes nothing.
    store.complete(vec![new[0]], Vec::new()).await.unwrap();
    store.complete(vec![new[1]], Vec::new()).await.unwrap();
    assert!(depth_of(&store).await.is_empty());
    assert!(store.claim(Utc::now(), 10).await.unwrap().is_empty());
    // Claims honour the limit, oldest first.
    let more = store
        .enqueue((0..5).map(|_| job("oncall", 0)).collect())
        .await
        .unwrap();
    assert_eq!(ids(&store.claim(Utc::now(), 2).await.unwrap()), more[..2]);
    assert_eq!(ids(&store.claim(Utc::now(), 10).await.unwrap()), more[2..]);
}

both!(capacity_is_all_or_nothing, 3);
async fn capacity_is_all_or_nothing(store: Store, _: &mut Guard) {
    let first = store.enqueue(vec![job("a", 0), job("a", 0)]).await.unwrap();
    assert!(matches!(
        store.enqueue(vec![job("b", 0), job("b", 0)]).await,
        Err(StoreError::Full)
    ));
    // Nothing of the refused batch was kept.
    assert_eq!(depth_of(&store).await, [("a".into(), 0, 2)]);
    store.enqueue(vec![job("c", 0)]).await.unwrap();
    assert!(matches!(
        store.enqueue(vec![job("d", 0)]).await,
        Err(StoreError::Full)
    ));
    // Delivered jobs free their place; in-flight ones do not.
    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(store.enqueue(vec![job("d", 0)]).await.is_err());
    store.complete(first, Vec::new()).await.unwrap();
    store.enqueue(vec![job("d", 0), job("d", 0)]).await.unwrap();
}

both!(a_rescheduled_job_waits_until_due_with_its_failure, 100);
async fn a_rescheduled_job_waits_until_due_with_its_failure(store: Store, _: &mut Guard) {
    let id = store.enqueue(vec![job("oncall", 0)]).await.unwrap()[0];
    assert_eq!(ids(&store.claim(Utc::now(), 10).await.unwrap()), [id]);
    let at = Utc::now() + chrono::Duration::hours(1);
    store
        .reschedule(id, failure(1, "HTTP 502 from WxPusher"), at)
        .await
        .unwrap();
    assert!(store.claim(Utc::now(), 10).await.unwrap().is_empty());
    assert_eq!(store.next_due().await.unwrap().map(trunc), Some(trunc(at)));
    // Still waiting: it counts, and coalescing could take it.
    assert_eq!(depth_of(&store).await, [("oncall".into(), 0, 1)]);
    let again = store.claim(at, 10).await.unwrap();
    assert_eq!(ids(&again), [id]);
    let j = &again[0];
    assert_eq!(j.attempt, 1);
    assert_eq!(j.progress, failure(1, "").progress);
    assert_eq!(j.last_error.as_deref(), Some("HTTP 502 from WxPusher"));
    assert_eq!(j.reason.as_deref(), Some("http_5xx"));
    assert_eq!(trunc(j.not_before), trunc(at));
    assert_eq!(store.next_due().await.unwrap(), None);
}

both!(dead_letters_keep_their_error_and_replay_or_purge, 100);
async fn dead_letters_keep_their_error_and_replay_or_purge(store: Store, _: &mut Guard) {
    let new = store
        .enqueue(vec![job("oncall", 0), job("oncall", 0)])
        .await
        .unwrap();
    store.claim(Utc::now(), 10).await.unwrap();
    // Three attempts begun (and ended) on the first before it gave up.
    for _ in 0..3 {
        store.started(new[0]).await.unwrap();
    }
    let mut backup = job("backup", 0);
    backup.fallback = true;
    store
        .dead_letter(new[0], failure(3, "bad token 1001"), vec![backup])
        .await
        .unwrap();
    store
        .dead_letter(new[1], failure(5, "gave up"), Vec::new())
        .await
        .unwrap();
    assert_eq!(store.dead_letter_count().await.unwrap(), 2);
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(ids(&dead), new);
    assert_eq!(dead[0].attempt, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("bad token 1001"));
    assert!(dead[0].failed_at.is_some());
    // Dead letters do not count as waiting; the fallback copy does, and is claimable.
    assert_eq!(depth_of(&store).await, [("backup".into(), 0, 1)]);
    let fb = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(fb.len(), 1);
    assert!(fb[0].fallback && fb[0].receiver == "backup");
    store.complete(ids(&fb), Vec::new()).await.unwrap();
    // Replay one: attempts reset, fresh age, claimable again.
    let now = Utc::now();
    assert_eq!(store.replay(Some(new[0]), now).await.unwrap(), 1);
    assert_eq!(store.replay(Some(new[0]), now).await.unwrap(), 0);
    assert_eq!(store.replay(Some(999_999), now).await.unwrap(), 0);
    let back = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(ids(&back), [new[0]]);
    assert_eq!(back[0].attempt, 0);
    // The attempts begun before are forgotten too, so the replay is not taken for a
    // notification the process died on.
    assert_eq!(store.started(new[0]).await.unwrap(), 1);
    assert_eq!(trunc(back[0].accepted_at), trunc(now));
    assert!(back[0].failed_at.is_none());
    assert_eq!(store.dead_letter_count().await.unwrap(), 1);
    store
        .dead_letter(new[0], failure(1, "again"), Vec::new())
        .await
        .unwrap();
    // Replay all, dead-letter them again, purge.
    assert_eq!(store.replay(None, Utc::now()).await.unwrap(), 2);
    let all = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(
        ids(&all).into_iter().collect::<BTreeSet<_>>(),
        new.iter().copied().collect()
    );
    for id in &new {
        store
            .dead_letter(*id, failure(1, "x"), Vec::new())
            .await
            .unwrap();
    }
    assert_eq!(store.purge().await.unwrap(), 2);
    assert_eq!(store.dead_letter_count().await.unwrap(), 0);
    assert!(store.dead_letters().await.unwrap().is_empty());
    assert!(depth_of(&store).await.is_empty());
    assert!(store.claim(Utc::now(), 10).await.unwrap().is_empty());
}

impl Guard {
    /// The backend's own rows, around the store's interface.
    fn raw(&self) -> Raw<'_> {
        match self {
            Guard::Sqlite(dir) => Raw::Sqlite(dir.path()),
            Guard::Redis(server) => Raw::Redis(server, "test:"),
        }
    }
}

both!(progress_stored_by_earlier_versions_reads_back_typed, 100);
/// Jobs stored before progress was typed hold its entries as strings: they read back as the
/// typed entries, and are written back as the same strings (so an earlier version can read
/// them again).
async fn progress_stored_by_earlier_versions_reads_back_typed(store: Store, guard: &mut Guard) {
    let id = store.enqueue(vec![job("oncall", 0)]).await.unwrap()[0];
    store.claim(Utc::now(), 10).await.unwrap();
    let mut f = failure(1, "HTTP 502");
    f.progress = Default::default();
    store.reschedule(id, f, Utc::now()).await.unwrap();
    let legacy = [
        "0/uid/UID_a",
        "1/wxid_b",
        "failed/o1/43004",
        "quota/2026-11-26/500/uid/UID_c",
    ];
    stored::set_progress(guard.raw(), &serde_json::to_string(&legacy).unwrap()).await;
    let j = store.claim(Utc::now(), 10).await.unwrap().remove(0);
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let want = [
        Entry::Sent {
            part: 0,
            to: Recipient::Uid("UID_a".into()),
        },
        Entry::Sent {
            part: 1,
            to: Recipient::Id("wxid_b".into()),
        },
        Entry::RefusedWith {
            to: "o1".into(),
            code: 43004,
        },
        Entry::OverBudget {
            day,
            budget: 500,
            to: "UID_c".into(),
        },
    ];
    assert_eq!(j.progress.len(), want.len());
    for e in &want {
        assert!(j.progress.contains(e), "{e:?} not in {:?}", j.progress);
    }
    // Dead-lettered with one more entry: stored as the strings earlier versions write.
    let mut f = failure(2, "gave up");
    f.progress = j.progress.clone();
    f.progress.insert(Entry::SentPart(2));
    store.dead_letter(id, f, Vec::new()).await.unwrap();
    let raw = stored::progress(guard.raw()).await;
    let written: BTreeSet<String> = serde_json::from_str(&raw[&id]).unwrap();
    let mut expected: BTreeSet<String> = legacy.iter().map(|s| s.to_string()).collect();
    expected.insert("part/2".into());
    assert_eq!(written, expected);
    let dead = store.dead_letters().await.unwrap();
    assert!(dead[0].progress.contains(&Entry::SentPart(2)));
}

both!(claim_target_takes_one_backlog_for_a_digest, 100);
async fn claim_target_takes_one_backlog_for_a_digest(store: Store, _: &mut Guard) {
    let a = store
        .enqueue(vec![job("oncall", 0), job("oncall", 0), job("other", 0)])
        .await
        .unwrap();
    let later = store.enqueue(vec![job("oncall", 0)]).await.unwrap();
    // One of them waits for a retry: it is part of the backlog too.
    assert_eq!(ids(&store.claim(Utc::now(), 1).await.unwrap()), [a[0]]);
    store
        .reschedule(
            a[0],
            failure(1, "502"),
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    // Taken in chunks, oldest first.
    let mut backlog = store.claim_target("oncall", &id(0), 0, 2).await.unwrap();
    assert_eq!(ids(&backlog), [a[0], a[1]]);
    let last = backlog.last().map_or(0, |j| j.id);
    backlog.extend(
        store
            .claim_target("oncall", &id(0), last, 10)
            .await
            .unwrap(),
    );
    assert_eq!(ids(&backlog), [a[0], a[1], later[0]]);
    assert!(
        store
            .claim_target("oncall", &id(0), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The other receiver's job is untouched; the backlog's jobs are gone from the queue.
    assert_eq!(ids(&store.claim(Utc::now(), 10).await.unwrap()), [a[2]]);
    let mut digest = job("oncall", 0);
    std::sync::Arc::make_mut(&mut digest.notification)
        .alerts
        .truncate(1);
    store.complete(ids(&backlog), vec![digest]).await.unwrap();
    let d = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].notification.alerts.len(), 1);
    assert_eq!(
        depth_of(&store).await,
        [("oncall".into(), 0, 1), ("other".into(), 0, 1)]
    );
    assert_eq!(store.next_due().await.unwrap(), None);
}

both!(counters_add_up_and_expire, 100);
async fn counters_add_up_and_expire(store: Store, _: &mut Guard) {
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    assert_eq!(
        store
            .add_counter("uid:U".into(), 3, tomorrow)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .add_counter("uid:U".into(), 2, tomorrow)
            .await
            .unwrap(),
        5
    );
    assert_eq!(store.counter("uid:U".into(), Utc::now()).await.unwrap(), 5);
    assert_eq!(store.counter("uid:V".into(), Utc::now()).await.unwrap(), 0);
    let past = Utc::now() - chrono::Duration::seconds(1);
    store.add_counter("uid:W".into(), 7, past).await.unwrap();
    assert_eq!(store.counter("uid:W".into(), Utc::now()).await.unwrap(), 0);
}

both!(counters_are_taken_up_to_a_limit_and_given_back, 100);
async fn counters_are_taken_up_to_a_limit_and_given_back(store: Store, _: &mut Guard) {
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    store.add_counter("b:A".into(), 2, tomorrow).await.unwrap();
    // A is at the limit of 2, B and C are not.
    assert_eq!(
        store
            .take_counters(keys(&["b:A", "b:B", "b:C"]), 1, Some(2), tomorrow)
            .await
            .unwrap(),
        [false, true, true]
    );
    assert_eq!(
        store
            .take_counters(keys(&["b:A", "b:B"]), 1, Some(2), tomorrow)
            .await
            .unwrap(),
        [false, true]
    );
    assert_eq!(store.counter("b:A".into(), Utc::now()).await.unwrap(), 2);
    assert_eq!(store.counter("b:B".into(), Utc::now()).await.unwrap(), 2);
    // Given back without a limit.
    assert_eq!(
        store
            .take_counters(keys(&["b:B", "b:C"]), -1, None, tomorrow)
            .await
            .unwrap(),
        [true, true]
    );
    assert_eq!(store.counter("b:B".into(), Utc::now()).await.unwrap(), 1);
    assert_eq!(store.counter("b:C".into(), Utc::now()).await.unwrap(), 0);
    assert!(
        store
            .take_counters(Vec::new(), 1, Some(2), tomorrow)
            .await
            .unwrap()
            .is_empty()
    );
    // An expired counter starts again from zero.
    let past = Utc::now() - chrono::Duration::seconds(1);
    store.add_counter("b:D".into(), 5, past).await.unwrap();
    assert_eq!(
        store
            .take_counters(keys(&["b:D"]), 1, Some(2), tomorrow)
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(store.counter("b:D".into(), Utc::now()).await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_in_flight_jobs_are_claimed_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 10).unwrap();
    let id = store.enqueue(vec![job("oncall", 0)]).await.unwrap();
    assert_eq!(ids(&store.claim(Utc::now(), 10).await.unwrap()), id);
    drop(store);
    let store = Store::open(dir.path(), 10).unwrap();
    assert_eq!(ids(&store.claim(Utc::now(), 10).await.unwrap()), id);
}

/// Claims on `store` until it returns something or `within` passes.
async fn claim_within(store: &Store, within: Duration) -> Vec<Job> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = store.claim(Utc::now(), 10).await.unwrap();
        if !got.is_empty() || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_in_flight_jobs_of_a_stopped_replica_are_taken_over() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let visibility = Duration::from_secs(2);
    let config = redis_config(&server.url, 100, visibility);
    let a = Store::from_config(&config).unwrap();
    let b = Store::from_config(&config).unwrap();
    let new = a
        .enqueue(vec![job("oncall", 0), job("oncall", 0)])
        .await
        .unwrap();
    assert_eq!(ids(&a.claim(Utc::now(), 1).await.unwrap()), new[..1]);
    // A is alive and renews its claim: B gets the other job only, for well past the timeout.
    assert_eq!(ids(&b.claim(Utc::now(), 10).await.unwrap()), new[1..]);
    assert!(claim_within(&b, visibility * 2).await.is_empty());
    // A stops (as after kill -9: nothing renews its claim any more); B takes the job over.
    drop(a);
    let taken = claim_within(&b, Duration::from_secs(10)).await;
    assert_eq!(ids(&taken), new[..1]);
    b.complete(new.clone(), Vec::new()).await.unwrap();
    assert!(b.depth().await.unwrap().is_empty());
}

#[tokio::test]
async fn redis_acknowledged_jobs_survive_a_redis_crash_and_an_outage_is_an_error() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let store =
        Store::from_config(&redis_config(&server.url, 100, Duration::from_secs(30))).unwrap();
    let id = store.enqueue(vec![job("oncall", 0)]).await.unwrap();
    server.kill();
    // Down: an error that is not "full", so the webhook answers 503; readiness follows.
    let e = store.enqueue(vec![job("oncall", 0)]).await.unwrap_err();
    assert!(!matches!(e, StoreError::Full), "{e}");
    assert!(!store.is_open());
    server.restart().await;
    // Reconnects by itself; what was acknowledged before the crash is there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let claimed = loop {
        match store.claim(Utc::now(), 10).await {
            Ok(j) => break j,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    };
    assert_eq!(ids(&claimed), id);
    assert!(store.is_open());
}

#[tokio::test]
async fn redis_errors_never_show_the_password() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let url = format!("redis://:sup3r-secret-pw@127.0.0.1:{}/0", server.port);
    let store = Store::from_config(&redis_config(&url, 100, Duration::from_secs(30))).unwrap();
    // The server has no password set: AUTH fails, and the error must not echo it.
    let e = store.enqueue(vec![job("oncall", 0)]).await.unwrap_err();
    let text = format!("{e} {e:?} {store:?}");
    assert!(!text.contains("sup3r-secret-pw"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}

fn touch(group: &str, firing: bool, now: DateTime<Utc>, to: &[&str]) -> Touch {
    Touch {
        receiver: "oncall".into(),
        group_key: group.into(),
        labels: [("alertname".to_string(), "DiskFull".to_string())].into(),
        alerts: vec![],
        recipients: to.iter().map(|s| s.to_string()).collect(),
        firing,
        now,
    }
}

both!(chatops_references_follow_their_group, 100);
async fn chatops_references_follow_their_group(store: Store, _: &mut Guard) {
    let t0 = Utc::now();
    let none = store
        .chatops_touch(touch("g", false, t0, &["U1"]))
        .await
        .unwrap();
    assert_eq!(none, None, "a resolved group without a reference gets none");
    let first = store
        .chatops_touch(touch("g", true, t0, &["U1"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.reference.len(), 4);
    assert!(first.reference.bytes().all(|b| REF_ALPHABET.contains(&b)));
    let again = store
        .chatops_touch(touch("g", true, t0, &["U2", "U1"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.reference, first.reference);
    assert_eq!(again.recipients, ["U1", "U2"]);
    let other = store
        .chatops_touch(touch("h", true, t0, &["U1"]))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(other.reference, first.reference);
    let ack = Ack {
        by: "U1".into(),
        at: t0,
    };
    assert!(
        store
            .chatops_ack(first.reference.clone(), ack.clone())
            .await
            .unwrap()
    );
    assert!(!store.chatops_ack("ZZZZ".into(), ack).await.unwrap());
    let resolved = store
        .chatops_touch(touch("g", false, t0, &[]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.ack.as_ref().map(|a| a.by.as_str()), Some("U1"));
    assert_eq!(resolved.resolved_at.map(trunc), Some(trunc(t0)));
    let firing: Vec<String> = store
        .chatops_firing()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.reference)
        .collect();
    assert_eq!(firing, std::slice::from_ref(&other.reference));
    let r = first.reference.clone();
    let found = store.chatops_ref(r.clone(), t0).await.unwrap().unwrap();
    assert_eq!(
        (found.receiver.as_str(), found.group_key.as_str()),
        ("oncall", "g")
    );
    let later = t0 + chatops::RESOLVED_GRACE + chrono::Duration::minutes(1);
    assert!(store.chatops_ref(r, later).await.unwrap().is_none());
    // Firing again: same group, and the old acknowledgement no longer holds.
    let back = store
        .chatops_touch(touch("g", true, t0, &[]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((back.ack, back.resolved_at), (None, None));
}

both!(subscribers_are_listed_by_tag_in_order, 100);
async fn subscribers_are_listed_by_tag_in_order(store: Store, _: &mut Guard) {
    let now = Utc::now();
    for (uid, extra) in [
        ("U1", "team-db"),
        ("U2", "team-web"),
        ("U3", "team-db"),
        ("U1", "team-web"),
        ("U1", "team-db"),
    ] {
        store
            .subscriber_add(uid.into(), extra.into(), now)
            .await
            .unwrap();
    }
    assert_eq!(
        store.subscribers(vec!["team-db".into()]).await.unwrap(),
        ["U1", "U3"]
    );
    assert_eq!(
        store
            .subscribers(vec!["team-web".into(), "team-db".into()])
            .await
            .unwrap(),
        ["U1", "U2", "U3"]
    );
    assert!(
        store
            .subscribers(vec!["x".into()])
            .await
            .unwrap()
            .is_empty()
    );
}

both!(subscribers_are_listed_whole_and_removed_by_uid, 100);
async fn subscribers_are_listed_whole_and_removed_by_uid(store: Store, _: &mut Guard) {
    assert!(store.subscriber_list().await.unwrap().is_empty());
    let t0: DateTime<Utc> = "2026-11-25T08:00:00Z".parse().unwrap();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    for (uid, extra, s) in [
        ("UID_b", "team-db", 2),
        ("UID_a", "", 1),
        ("UID_b", "team-web", 3),
        ("UID_c", "team-db", 4),
        // Subscribing again moves it to its new time, once.
        ("UID_a", "", 5),
    ] {
        store
            .subscriber_add(uid.into(), extra.into(), at(s))
            .await
            .unwrap();
    }
    let list: Vec<(String, String, i64)> = store
        .subscriber_list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.uid, s.extra, s.subscribed_at.timestamp()))
        .collect();
    let row = |u: &str, e: &str, s: i64| (u.to_string(), e.to_string(), at(s).timestamp());
    assert_eq!(
        list,
        [
            row("UID_b", "team-db", 2),
            row("UID_b", "team-web", 3),
            row("UID_c", "team-db", 4),
            row("UID_a", "", 5),
        ]
    );
    assert_eq!(store.subscriber_remove("UID_b".into()).await.unwrap(), 2);
    assert_eq!(store.subscriber_remove("UID_b".into()).await.unwrap(), 0);
    assert_eq!(store.subscriber_remove("UID_zz".into()).await.unwrap(), 0);
    let left: Vec<String> = store
        .subscriber_list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.uid)
        .collect();
    assert_eq!(left, ["UID_c", "UID_a"]);
    assert_eq!(
        store
            .subscribers(vec!["team-db".into(), "team-web".into()])
            .await
            .unwrap(),
        ["UID_c"]
    );
}

#[tokio::test]
async fn redis_chatops_touches_from_two_replicas_agree_on_one_reference() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let config = redis_config(&server.url, 100, Duration::from_secs(30));
    let (a, b) = (
        Store::from_config(&config).unwrap(),
        Store::from_config(&config).unwrap(),
    );
    let now = Utc::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let who = format!("U{i:02}");
        tasks.push(tokio::spawn(async move {
            s.chatops_touch(touch("g", true, now, &[&who]))
                .await
                .unwrap()
                .unwrap()
        }));
    }
    let mut refs = BTreeSet::new();
    for t in tasks {
        refs.insert(t.await.unwrap().reference);
    }
    assert_eq!(refs.len(), 1, "{refs:?}");
    let rec = a
        .chatops_ref(refs.into_iter().next().unwrap(), now)
        .await
        .unwrap()
        .unwrap();
    // Every replica's recipient was recorded: no update was lost.
    assert_eq!(rec.recipients.len(), 20);
}

fn mark(key: &str, value: i64, expires_at: DateTime<Utc>) -> Mark {
    Mark {
        key: key.into(),
        value,
        expires_at,
    }
}

fn admission(key: &str, now: DateTime<Utc>, ttl: chrono::Duration) -> Admission {
    Admission {
        job: job("oncall", 0),
        not_before: now,
        held: false,
        identity: Some(mark(&format!("dup:{key}"), 1, now + ttl)),
        once: vec![(1, mark(&format!("resolved:{key}"), 1, now + ttl))],
        remember: vec![mark(
            &format!("firing:{key}"),
            now.timestamp_millis(),
            now + ttl,
        )],
    }
}

both!(
    admission_is_once_per_identity_and_drops_announced_alerts,
    100
);
async fn admission_is_once_per_identity_and_drops_announced_alerts(store: Store, _: &mut Guard) {
    let t0 = Utc::now();
    let minute = chrono::Duration::minutes(1);
    let alerts = job("oncall", 0).notification.alerts.len();
    assert!(alerts >= 2);
    let out = store
        .admit(
            vec![admission("k", t0, minute), admission("k", t0, minute)],
            t0,
        )
        .await
        .unwrap();
    assert!(
        matches!(out[0], Admitted::Queued { dropped: 0, .. }),
        "{out:?}"
    );
    assert_eq!(out[1], Admitted::Duplicate);
    // Another identity carrying the same resolved alert: that alert is left out.
    let mut other = admission("k", t0, minute);
    other.identity = Some(mark("dup:other", 1, t0 + minute));
    let out = store.admit(vec![other], t0).await.unwrap();
    let Admitted::Queued { id, dropped: 1 } = out[0] else {
        panic!("{out:?}");
    };
    let jobs = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let again = jobs.iter().find(|j| j.id == id).unwrap();
    assert_eq!(again.notification.alerts.len(), alerts - 1);
    // Take-or-extend keeps the first value.
    let first = t0.timestamp_millis();
    store
        .remember(vec![mark("firing:k", first + 5, t0 + minute * 2)], t0)
        .await
        .unwrap();
    assert_eq!(
        store
            .recall(vec!["firing:k".into(), "nothing".into()], t0)
            .await
            .unwrap(),
        [Some(first), None]
    );
    assert_eq!(store.state_size().await.unwrap(), 4);
}

both!(a_full_queue_takes_no_dedupe_state, 1);
async fn a_full_queue_takes_no_dedupe_state(store: Store, _: &mut Guard) {
    let t0 = Utc::now();
    let minute = chrono::Duration::minutes(1);
    let both = vec![admission("x", t0, minute), admission("y", t0, minute)];
    assert!(matches!(store.admit(both, t0).await, Err(StoreError::Full)));
    assert_eq!(store.state_size().await.unwrap(), 0);
    let out = store
        .admit(vec![admission("x", t0, minute)], t0)
        .await
        .unwrap();
    assert!(matches!(out[0], Admitted::Queued { .. }), "{out:?}");
}

both!(dedupe_state_expires_and_held_jobs_wait_to_be_merged, 100);
async fn dedupe_state_expires_and_held_jobs_wait_to_be_merged(store: Store, _: &mut Guard) {
    let short = chrono::Duration::milliseconds(300);
    let t0 = Utc::now();
    assert!(matches!(
        store
            .admit(vec![admission("e", t0, short)], t0)
            .await
            .unwrap()[0],
        Admitted::Queued { .. }
    ));
    // The same notification after the window is admitted again (a reminder).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = Utc::now();
        let out = store
            .admit(vec![admission("e", now, short)], now)
            .await
            .unwrap();
        if matches!(out[0], Admitted::Queued { .. }) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for j in store.claim(Utc::now(), 10).await.unwrap() {
        store.complete(vec![j.id], Vec::new()).await.unwrap();
    }
    // Held resolved jobs: not claimable before they are due, but taken together for merging.
    let now = Utc::now();
    let mut held = Vec::new();
    for k in ["h1", "h2"] {
        let mut a = admission(k, now, chrono::Duration::minutes(1));
        a.held = true;
        a.not_before = now + chrono::Duration::hours(1);
        held.push(a);
    }
    let out = store.admit(held, now).await.unwrap();
    let queued: Vec<i64> = out
        .iter()
        .map(|o| match o {
            Admitted::Queued { id, .. } => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(store.claim(Utc::now(), 10).await.unwrap().is_empty());
    assert_eq!(
        store.next_due().await.unwrap().map(trunc),
        Some(trunc(now + chrono::Duration::hours(1)))
    );
    let merged = store.claim_held("oncall", &id(0)).await.unwrap();
    assert_eq!(ids(&merged), queued);
    assert!(merged.iter().all(|j| j.held));
    assert!(store.claim_held("oncall", &id(0)).await.unwrap().is_empty());
    store
        .complete(queued, vec![job("oncall", 0)])
        .await
        .unwrap();
    let next = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert!(!next[0].held);
}

// ---- Delivery history ----

use alertmanager_wechat::store::history::{
    Change, Delivery, DeliveryState, HistoryFilter, Retention, Update,
};

fn delivery(receiver: &str, alertname: &str, at: DateTime<Utc>) -> Delivery {
    let mut n = alertmanager_wechat::webhook::sample_notification();
    n.alerts.truncate(1);
    n.alerts[0]
        .labels
        .insert("alertname".into(), alertname.into());
    alertmanager_wechat::delivery::history::record(
        receiver,
        "wxpusher",
        id(1).as_str(),
        &n,
        DeliveryState::Queued,
        at,
    )
}

fn keep(max: usize) -> Retention {
    Retention {
        max_age: Duration::from_secs(3600),
        max,
    }
}

fn all() -> HistoryFilter {
    HistoryFilter {
        limit: 100,
        ..HistoryFilter::default()
    }
}

both!(history_records_follow_their_job_and_filter, 10);
async fn history_records_follow_their_job_and_filter(store: Store, _: &mut Guard) {
    let now = Utc::now();
    let mut a = delivery("oncall", "HighLatency", now);
    a.job = Some(7);
    let mut b = delivery("dba", "DiskFull", now);
    b.state = DeliveryState::Suppressed;
    let ids = store.history_add(vec![a, b], keep(100), now).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[1] > ids[0], "ids increase: {ids:?}");

    let next = now + chrono::Duration::seconds(30);
    let retry = Update {
        job: 7,
        change: Change::Retrying {
            attempts: 1,
            next,
            error: "wxpusher: HTTP 502".into(),
        },
        or_insert: None,
    };
    store
        .history_update(vec![retry], keep(100), now)
        .await
        .unwrap();
    // Accepted again after the worker's outcome (the accept path was slower): not twice.
    let mut late = delivery("oncall", "HighLatency", now);
    late.job = Some(7);
    let again = store.history_add(vec![late], keep(100), now).await.unwrap();
    assert_eq!(again, vec![ids[0]]);
    let list = store.history(all()).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, ids[1], "newest first");
    let a = &list[1];
    assert_eq!(a.state, DeliveryState::Retrying);
    assert_eq!(a.attempts, 1);
    assert_eq!(trunc(a.next_attempt.unwrap()), trunc(next));
    assert_eq!(a.last_error.as_deref(), Some("wxpusher: HTTP 502"));
    assert_eq!(a.alertnames, vec!["HighLatency".to_string()]);

    let sent = Update {
        job: 7,
        change: Change::Sent { attempts: 2 },
        or_insert: None,
    };
    store
        .history_update(vec![sent], keep(100), now)
        .await
        .unwrap();
    let by = |f: HistoryFilter| {
        let store = store.clone();
        async move { store.history(f).await.unwrap() }
    };
    let sent = by(HistoryFilter {
        state: Some(DeliveryState::Sent),
        ..all()
    })
    .await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].receiver, "oncall");
    assert!(sent[0].sent_at.is_some());
    let dba = by(HistoryFilter {
        receiver: Some("dba".into()),
        ..all()
    })
    .await;
    assert_eq!(dba.len(), 1);
    assert_eq!(dba[0].state, DeliveryState::Suppressed);
    let disk = by(HistoryFilter {
        alertname: Some("DiskFull".into()),
        ..all()
    })
    .await;
    assert_eq!(disk.len(), 1);
    assert!(
        by(HistoryFilter {
            alertname: Some("Disk".into()),
            ..all()
        })
        .await
        .is_empty(),
        "alertname matches whole names"
    );
    let one = by(HistoryFilter { limit: 1, ..all() }).await;
    assert_eq!(one.len(), 1);

    // A job without a record (stored before the history, or a fallback copy) gets one.
    let fresh = delivery("oncall", "Other", now);
    let dead = Update {
        job: 99,
        change: Change::Dead {
            attempts: 3,
            error: "gave up".into(),
        },
        or_insert: Some(fresh),
    };
    store
        .history_update(vec![dead], keep(100), now)
        .await
        .unwrap();
    let dead = by(HistoryFilter {
        state: Some(DeliveryState::Dead),
        ..all()
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job, Some(99));
    assert_eq!(dead[0].attempts, 3);
}

both!(history_is_pruned_by_count_and_age_on_write, 10);
async fn history_is_pruned_by_count_and_age_on_write(store: Store, _: &mut Guard) {
    let now = Utc::now();
    let old = delivery("oncall", "Old", now - chrono::Duration::hours(2));
    store.history_add(vec![old], keep(100), now).await.unwrap();
    let records: Vec<Delivery> = (0..5)
        .map(|i| delivery("oncall", &format!("A{i}"), now))
        .collect();
    store.history_add(records, keep(3), now).await.unwrap();
    let list = store.history(all()).await.unwrap();
    let names: Vec<&str> = list.iter().map(|d| d.alertnames[0].as_str()).collect();
    assert_eq!(
        names,
        vec!["A4", "A3", "A2"],
        "the newest three, the old one gone"
    );
}

both!(
    a_digest_is_adopted_by_its_job_and_merged_ones_point_at_it,
    10
);
async fn a_digest_is_adopted_by_its_job_and_merged_ones_point_at_it(store: Store, _: &mut Guard) {
    let now = Utc::now();
    let mut merged = Vec::new();
    for job in [1, 2] {
        let mut d = delivery("oncall", "Storm", now);
        d.job = Some(job);
        merged.push(d);
    }
    store.history_add(merged, keep(100), now).await.unwrap();
    let mut digest = delivery("oncall", "Storm", now);
    digest.merged = Some(2);
    let digest_id = store
        .history_add(vec![digest], keep(100), now)
        .await
        .unwrap()[0];
    let updates = [1, 2]
        .map(|job| Update {
            job,
            change: Change::Merged { digest: digest_id },
            or_insert: None,
        })
        .to_vec();
    store.history_update(updates, keep(100), now).await.unwrap();
    // The digest's job is first attempted: it takes the digest's record, not a new one.
    let sent = Update {
        job: 3,
        change: Change::Sent { attempts: 1 },
        or_insert: Some(delivery("oncall", "Storm", now)),
    };
    store
        .history_update(vec![sent], keep(100), now)
        .await
        .unwrap();
    let list = store.history(all()).await.unwrap();
    assert_eq!(list.len(), 3, "{list:#?}");
    let d = list.iter().find(|d| d.id == digest_id).unwrap();
    assert_eq!(
        (d.job, d.state, d.merged),
        (Some(3), DeliveryState::Sent, Some(2))
    );
    for m in list.iter().filter(|d| d.id != digest_id) {
        assert_eq!(
            (m.state, m.digest),
            (DeliveryState::Merged, Some(digest_id))
        );
    }
}

/// `storage.max_bytes` on either backend: SQLite counts the file's pages in use, Redis what
/// its scripts count for the stored jobs.
async fn bounded(backend: &str, max_bytes: u64) -> Option<(Store, Guard)> {
    if backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let storage = StorageConfig {
            path: dir.path().to_path_buf(),
            max_bytes,
            ..StorageConfig::default()
        };
        return Some((Store::from_config(&storage).unwrap(), Guard::Sqlite(dir)));
    }
    let server = RedisServer::start().await?;
    let storage = StorageConfig {
        max_bytes,
        ..redis_config(&server.url, 1_000_000, Duration::from_secs(30))
    };
    Some((Store::from_config(&storage).unwrap(), Guard::Redis(server)))
}

/// Enqueues one job at a time until the store answers Full; how many it took (bounded).
async fn fill(store: &Store) -> usize {
    for n in 0..20_000 {
        match store.enqueue(vec![job("oncall", 0)]).await {
            Ok(_) => {}
            Err(StoreError::Full) => return n,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("never refused past max_bytes");
}

async fn the_byte_bound_refuses_new_jobs_until_they_are_gone(backend: &str) {
    // 512 KiB: a few hundred sample jobs, the empty SQLite schema's pages included.
    let Some((store, guard)) = bounded(backend, 512 * 1024).await else {
        return;
    };
    let first = fill(&store).await;
    assert!(first > 10, "{backend}: refused after {first} jobs");
    // Admission is refused too, and takes no dedupe state.
    let t0 = Utc::now();
    let minute = chrono::Duration::minutes(1);
    assert!(matches!(
        store.admit(vec![admission("x", t0, minute)], t0).await,
        Err(StoreError::Full)
    ));
    assert_eq!(store.state_size().await.unwrap(), 0);
    // Dead letters still hold their bytes.
    let claimed = store.claim(Utc::now(), first + 10).await.unwrap();
    assert_eq!(claimed.len(), first);
    for j in &claimed {
        store
            .dead_letter(j.id, failure(1, "gave up"), Vec::new())
            .await
            .unwrap();
    }
    assert!(matches!(
        store.enqueue(vec![job("oncall", 0)]).await,
        Err(StoreError::Full)
    ));
    // Purged, they make room again; so do delivered jobs.
    assert_eq!(store.purge().await.unwrap(), first as u64);
    let id = store.enqueue(vec![job("oncall", 0)]).await.unwrap()[0];
    store.claim(Utc::now(), 10).await.unwrap();
    store.complete(vec![id], Vec::new()).await.unwrap();
    let second = fill(&store).await;
    if let Guard::Redis(_) = guard {
        // The scripts' count went back to nothing: the same room as at first.
        assert_eq!(second, first);
    } else {
        assert!(
            second > 10,
            "sqlite: refused after {second} jobs once emptied"
        );
    }
}

mod the_byte_bound_refuses_new_jobs_until_they_are_gone {
    #[tokio::test]
    async fn sqlite() {
        super::the_byte_bound_refuses_new_jobs_until_they_are_gone("sqlite").await;
    }
    #[tokio::test]
    async fn redis() {
        super::the_byte_bound_refuses_new_jobs_until_they_are_gone("redis").await;
    }
}
