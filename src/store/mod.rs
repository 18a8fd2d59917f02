//! The durable store: the delivery queue, dead letters, small counters and dedupe state.
//!
//! A notification is accepted only once its jobs are committed here, so that it survives a
//! crash or restart of the process. The interface is deliberately narrow (enqueue, claim,
//! complete, reschedule, dead-letter, dead-letter administration, counters, and the dedupe
//! state operations in the section below) so that another backend can implement the same
//! set; [`Store`] is an enum of backends, dispatched by `match`: [`sqlite`] (one process) and
//! [`redis`] (several replicas sharing one queue). This module stores and hands out jobs; it does not
//! decide when to retry or what to send ([`crate::delivery`] does).

pub mod chatops;
pub mod history;
pub mod inbox;
pub mod incident;
pub mod oncall;
pub mod progress;
pub mod redis;
pub mod sqlite;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

use chrono::{DateTime, Utc};

use crate::webhook::Notification;

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened at start-up.
    #[error("cannot open the store at {path}: {message}")]
    Open { path: String, message: String },
    /// A read or write failed (disk full, I/O error, corruption).
    #[error("store error: {0}")]
    Db(String),
    /// A stored record could not be decoded.
    #[error("stored job {id} is unreadable: {message}")]
    Corrupt { id: i64, message: String },
    /// More notifications are waiting than `storage.queue_capacity` allows.
    #[error("delivery queue is full")]
    Full,
    /// The store's writer has stopped.
    #[error("store closed")]
    Closed,
}

pub use progress::Progress;

/// Which integration of a receiver a stored delivery is bound to: derived from what the
/// integration sends to (its kind, a fingerprint of its credential, its recipients), so it
/// survives reordering and reloads. Only hex digits, letters and `-`: safe inside store keys.
///
/// Stores written before identities existed hold the integration's position instead (all
/// digits); [`IntegrationId::legacy_index`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IntegrationId(pub String);

impl IntegrationId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The position a job stored by an older version names, if this is one.
    pub fn legacy_index(&self) -> Option<usize> {
        if !self.0.is_empty() && self.0.bytes().all(|b| b.is_ascii_digit()) {
            self.0.parse().ok()
        } else {
            None
        }
    }
}

impl std::fmt::Display for IntegrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job to add: one notification for one receiver integration.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub receiver: String,
    /// The identity of the integration within the receiver: what it sends to (kind,
    /// credential fingerprint, recipients), never its position ([`IntegrationId`]).
    pub integration: IntegrationId,
    /// The integration's type, shown by `deadletters list`.
    pub kind: String,
    /// Shared by every job made from the same notification (the integrations of a receiver
    /// whose filter leaves it as it is): a 10,000-alert group to seven integrations is held,
    /// encoded and stored once, not seven times.
    pub notification: Arc<Notification>,
    pub accepted_at: DateTime<Utc>,
    /// Re-routed here after another integration gave up: never re-routed again.
    pub fallback: bool,
}

/// Jobs of one receiver integration merged into one job per kind (ordinary, fallback) by
/// `merge`, accepted when the oldest of them was (so `max_age` still counts from there).
pub fn merge_by_kind(
    jobs: Vec<NewJob>,
    merge: impl Fn(Vec<Notification>) -> Option<Notification>,
) -> Vec<NewJob> {
    let mut groups: std::collections::BTreeMap<bool, Vec<NewJob>> = Default::default();
    for j in jobs {
        groups.entry(j.fallback).or_default().push(j);
    }
    groups
        .into_iter()
        .filter_map(|(fallback, jobs)| {
            let first = jobs.first()?;
            let (receiver, integration, kind) = (
                first.receiver.clone(),
                first.integration.clone(),
                first.kind.clone(),
            );
            let accepted_at = jobs.iter().map(|j| j.accepted_at).min()?;
            let notification = merge(
                jobs.into_iter()
                    .map(|j| Arc::unwrap_or_clone(j.notification))
                    .collect(),
            )?;
            Some(NewJob {
                receiver,
                integration,
                kind,
                notification: Arc::new(notification),
                accepted_at,
                fallback,
            })
        })
        .collect()
}

/// A claimed job as a job to add again: what a digest or a merge is made from.
impl From<Job> for NewJob {
    fn from(j: Job) -> NewJob {
        NewJob {
            receiver: j.receiver,
            integration: j.integration,
            kind: j.kind,
            notification: j.notification,
            accepted_at: j.accepted_at,
            fallback: j.fallback,
        }
    }
}

/// A stored job, as a worker or `deadletters` sees it.
#[derive(Debug, Clone)]
pub struct Job {
    /// Store-assigned, stable across restarts.
    pub id: i64,
    pub receiver: String,
    pub integration: IntegrationId,
    pub kind: String,
    /// Shared by the jobs of one claim that were stored from the same notification.
    pub notification: Arc<Notification>,
    /// Attempts made so far.
    pub attempt: u32,
    /// Recipients already delivered, so retries skip them.
    pub progress: Progress,
    pub accepted_at: DateTime<Utc>,
    /// Not to be tried before this.
    pub not_before: DateTime<Utc>,
    pub fallback: bool,
    /// The last failure, scrubbed of secrets.
    pub last_error: Option<String>,
    /// The last failure's bounded reason label.
    pub reason: Option<String>,
    /// When it was dead-lettered.
    pub failed_at: Option<DateTime<Utc>>,
    /// Resolved alerts held back to be merged with the other held jobs of its receiver
    /// integration when due ([`crate::dedupe`]).
    pub held: bool,
}

/// What a failed attempt leaves behind.
#[derive(Debug, Clone)]
pub struct Failure {
    pub attempt: u32,
    pub progress: Progress,
    /// Scrubbed error text.
    pub error: String,
    pub reason: &'static str,
}

/// Pending (not dead) jobs of one receiver integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depth {
    pub receiver: String,
    pub integration: IntegrationId,
    pub count: u64,
}

fn redis_options(storage: &StorageConfig) -> Option<redis::RedisOptions> {
    let target = match (&storage.redis_url, &storage.redis_sentinel) {
        (Some(url), _) => redis::Target::Url(url.clone()),
        (None, Some(s)) => redis::Target::Sentinel(s.clone()),
        (None, None) => return None,
    };
    Some(redis::RedisOptions {
        target,
        prefix: storage.redis_prefix.clone(),
        capacity: storage.queue_capacity,
        max_bytes: storage.max_bytes,
        visibility: storage.redis_visibility_timeout,
        wait: (storage.redis_wait_replicas > 0).then_some(redis::Wait {
            replicas: storage.redis_wait_replicas,
            timeout: storage.redis_wait_timeout,
        }),
    })
}

/// One key of dedupe state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Fixed-size and opaque (a kind prefix and a hash; see [`crate::dedupe`]).
    pub key: String,
    /// Unix milliseconds when it was first taken (what the pairing reads back).
    pub value: i64,
    /// Absent from this time on.
    pub expires_at: DateTime<Utc>,
}

/// A job to queue unless the same notification was admitted recently ([`Store::admit`]).
#[derive(Debug, Clone)]
pub struct Admission {
    pub job: NewJob,
    /// Not to be tried before this: later than `accepted_at` for held jobs.
    pub not_before: DateTime<Utc>,
    /// Held to be merged with the other held jobs of its receiver integration.
    pub held: bool,
    /// The notification's identity; `None` admits it unconditionally.
    pub identity: Option<Mark>,
    /// Per alert (index into the job's alerts): dropped if the key is held, else taken.
    pub once: Vec<(usize, Mark)>,
    /// Taken if absent, extended if present; never prevents anything.
    pub remember: Vec<Mark>,
}

impl Admission {
    /// `job` admitted unconditionally, due when it was accepted: what conditions are put on.
    pub fn of(job: NewJob) -> Admission {
        Admission {
            not_before: job.accepted_at,
            job,
            held: false,
            identity: None,
            once: Vec::new(),
            remember: Vec::new(),
        }
    }
}

/// What [`Store::admit`] did with one admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// Queued under this id; `dropped` alerts were left out because their `once` key was held.
    Queued { id: i64, dropped: usize },
    /// Its identity was held: nothing was done.
    Duplicate,
    /// Every alert's `once` key was held: nothing was queued.
    Empty { dropped: usize },
}

/// One of the storage backends.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    /// Shared by several replicas (`storage.redis_url` or `storage.redis_sentinel`).
    Redis(redis::RedisStore),
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. Jobs left in flight by a previous run
    /// become pending again: delivery is at-least-once.
    pub fn open(dir: &Path, capacity: usize) -> Result<Store, StoreError> {
        sqlite::SqliteStore::open(dir, capacity, true).map(Store::Sqlite)
    }

    /// The store `storage` names: the shared Redis when `redis_url` or `redis_sentinel` is set, else SQLite in
    /// `path`. For Redis, needs a Tokio runtime; the connection is made on first use.
    pub fn from_config(storage: &StorageConfig) -> Result<Store, StoreError> {
        match redis_options(storage) {
            Some(o) => redis::RedisStore::open(&o, true).map(Store::Redis),
            None => sqlite::SqliteStore::open_with(
                &storage.path,
                storage.queue_capacity,
                storage.max_bytes,
                true,
            )
            .map(Store::Sqlite),
        }
    }

    /// As [`Store::from_config`], for administration (`deadletters`) next to running servers.
    pub fn admin_from_config(storage: &StorageConfig) -> Result<Store, StoreError> {
        match redis_options(storage) {
            Some(o) => redis::RedisStore::open(&o, false).map(Store::Redis),
            None => Store::open_admin(&storage.path),
        }
    }

    /// Opens an existing store for administration (`deadletters`) next to a running server:
    /// in-flight jobs are left alone.
    pub fn open_admin(dir: &Path) -> Result<Store, StoreError> {
        if !dir.join(sqlite::FILE).exists() {
            return Err(StoreError::Open {
                path: dir.display().to_string(),
                message: format!("no {} here", sqlite::FILE),
            });
        }
        sqlite::SqliteStore::open(dir, usize::MAX, false).map(Store::Sqlite)
    }

    /// Adds all jobs in one transaction, or none; returns their ids once committed.
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.enqueue(jobs).await,
            Store::Redis(s) => s.enqueue(jobs).await,
        }
    }

    /// Marks up to `limit` jobs due at `now` as in flight and returns them, oldest first.
    pub async fn claim(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim(now, limit).await,
            Store::Redis(s) => s.claim(now, limit).await,
        }
    }

    /// Claims the due control jobs of the on-call engine first, ahead of the deliveries due
    /// before them: they are store work, no delivery, and an escalation timer must not wait
    /// for a storm's backlog. On SQLite; on Redis they keep their place in the due order of
    /// [`Store::claim`] (none are returned here).
    pub async fn claim_control(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim_control(now, limit).await,
            Store::Redis(_) => Ok(Vec::new()),
        }
    }

    /// Claims the oldest `limit` pending jobs of one receiver integration, due or not (storm
    /// coalescing takes a backlog in chunks, so its memory stays bounded). Jobs whose id is
    /// not above `after` may be left out: a caller taking a backlog chunk by chunk passes the
    /// last id it took (0 at first), so that no chunk looks again at those it took (in SQLite
    /// a claim writes nothing: they are still pending in the file).
    pub async fn claim_target(
        &self,
        receiver: &str,
        integration: &IntegrationId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim_target(receiver, integration, after, limit).await,
            Store::Redis(s) => s.claim_target(receiver, integration, limit).await,
        }
    }

    /// The earliest `not_before` of a pending job.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self {
            Store::Sqlite(s) => s.next_due().await,
            Store::Redis(s) => s.next_due().await,
        }
    }

    /// Delivered: forget the jobs. `then` is enqueued in the same transaction.
    pub async fn complete(&self, ids: Vec<i64>, then: Vec<NewJob>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.complete(ids, then).await,
            Store::Redis(s) => s.complete(ids, then).await,
        }
    }

    /// Failed, will retry at `not_before`.
    pub async fn reschedule(
        &self,
        id: i64,
        failure: Failure,
        not_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.reschedule(id, failure, not_before).await,
            Store::Redis(s) => s.reschedule(id, failure, not_before).await,
        }
    }

    /// Given up: kept as a dead letter; `fallback` jobs are enqueued in the same transaction.
    pub async fn dead_letter(
        &self,
        id: i64,
        failure: Failure,
        fallback: Vec<NewJob>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.dead_letter(id, failure, fallback).await,
            Store::Redis(s) => s.dead_letter(id, failure, fallback).await,
        }
    }

    /// Pending jobs per receiver integration.
    pub async fn depth(&self) -> Result<Vec<Depth>, StoreError> {
        match self {
            Store::Sqlite(s) => s.depth().await,
            Store::Redis(s) => s.depth().await,
        }
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<Job>, StoreError> {
        match self {
            Store::Sqlite(s) => s.dead_letters().await,
            Store::Redis(s) => s.dead_letters().await,
        }
    }

    pub async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.dead_letter_count().await,
            Store::Redis(s) => s.dead_letter_count().await,
        }
    }

    /// Re-queues dead letters (`None`: all) with their attempts reset and a fresh age;
    /// returns how many.
    pub async fn replay(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.replay(id, now).await,
            Store::Redis(s) => s.replay(id, now).await,
        }
    }

    /// Deletes every dead letter; returns how many.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.purge().await,
            Store::Redis(s) => s.purge().await,
        }
    }

    /// Adds `by` to a named counter that resets at `expires_at`; returns the new value.
    pub async fn add_counter(
        &self,
        key: String,
        by: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.add_counter(key, by, expires_at).await,
            Store::Redis(s) => s.add_counter(key, by, expires_at).await,
        }
    }

    /// Adds `by` to each named counter (created to reset at `expires_at`) unless that would
    /// take it over `limit`; returns, per key in order, whether it was added. Atomic per
    /// counter, one store round trip for all of them.
    pub async fn take_counters(
        &self,
        keys: Vec<String>,
        by: i64,
        limit: Option<i64>,
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        match self {
            Store::Sqlite(s) => s.take_counters(keys, by, limit, expires_at).await,
            Store::Redis(s) => s.take_counters(keys, by, limit, expires_at).await,
        }
    }

    /// A counter's value (0 when absent or expired).
    pub async fn counter(&self, key: String, now: DateTime<Utc>) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.counter(key, now).await,
            Store::Redis(s) => s.counter(key, now).await,
        }
    }

    // ---- Dedupe state ([`crate::dedupe`] decides what the keys mean) ----
    //
    // State is a set of string keys, each with an integer value and an expiry; an expired
    // key is absent. Three primitives, each one `SET NX PX`-style call per key in Redis:
    // take if absent (`SET k v NX PX ttl`), take-or-extend (`SET k v NX PX ttl` then
    // `PEXPIRE k ttl GT`), and read (`MGET`). `admit` composes them with enqueueing into one
    // atomic step (one transaction here; one Lua script in Redis) so that two identical
    // notifications arriving at once cannot both be queued.

    /// Admits notifications unless their identity is already held: for each admission, in
    /// order, atomically with the others: if `identity` is held, nothing happens
    /// ([`Admitted::Duplicate`]); otherwise it is taken, every `once` key is taken and the
    /// alerts whose key was already held are dropped, every `remember` key is taken or
    /// extended, and the job (if alerts remain) is queued. Expired state counts for nothing
    /// and is forgotten on the way (Redis: its keys' TTL; SQLite: the next merge of the dedupe
    /// log deletes it), so it never outgrows what is live. Fails as a whole with
    /// [`StoreError::Full`].
    pub async fn admit(
        &self,
        admissions: Vec<Admission>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Admitted>, StoreError> {
        match self {
            Store::Sqlite(s) => s.admit(admissions, now).await,
            Store::Redis(s) => s.admit(admissions, now).await,
        }
    }

    /// Claims every pending held job of one receiver integration, due or not.
    pub async fn claim_held(
        &self,
        receiver: &str,
        integration: &IntegrationId,
    ) -> Result<Vec<Job>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim_held(receiver, integration).await,
            Store::Redis(s) => s.claim_held(receiver, integration).await,
        }
    }

    /// Takes each key that is absent with its value; extends the expiry of those present
    /// (keeping their value).
    pub async fn remember(&self, marks: Vec<Mark>, now: DateTime<Utc>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.remember(marks, now).await,
            Store::Redis(s) => s.remember(marks, now).await,
        }
    }

    /// The values of keys, `None` where absent or expired.
    pub async fn recall(
        &self,
        keys: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        match self {
            Store::Sqlite(s) => s.recall(keys, now).await,
            Store::Redis(s) => s.recall(keys, now).await,
        }
    }

    /// How many keys of dedupe state are stored, expired or not (for tests and operators).
    pub async fn state_size(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.state_size().await,
            Store::Redis(s) => s.state_size().await,
        }
    }

    /// Counts one more attempt begun on a job, durably, before it is rendered and sent, and
    /// returns how many were begun: attempts begun but never ended are runs of the process
    /// that died delivering it.
    pub async fn started(&self, id: i64) -> Result<u32, StoreError> {
        match self {
            Store::Sqlite(s) => s.started(id).await,
            Store::Redis(s) => s.started(id).await,
        }
    }

    /// Gives back claimed jobs not in `keep` (being delivered, or their outcome being
    /// recorded), so that a lost claim never needs a restart. Redis does this by itself: a
    /// claim not renewed within `storage.redis_visibility_timeout` is taken over.
    pub async fn release_stale(&self, keep: Vec<i64>) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.release_stale(keep).await,
            Store::Redis(_) => Ok(0),
        }
    }

    /// A small write, so that [`Store::is_writable`] follows the store when nothing else is
    /// written.
    pub async fn probe(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.probe().await,
            Store::Redis(s) => s.ping().await.then_some(()).ok_or(StoreError::Closed),
        }
    }

    /// Whether the last write committed (SQLite) or Redis answers: `/-/ready` fails otherwise.
    pub fn is_writable(&self) -> bool {
        match self {
            Store::Sqlite(s) => s.is_open() && s.is_writable(),
            Store::Redis(s) => s.is_open(),
        }
    }

    /// With Redis Sentinel, `Some` of the master in use (`None` while there is none), for
    /// `/-/ready`; `None` for the other stores.
    pub fn sentinel_master(&self) -> Option<Option<String>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Redis(s) => s.sentinel_master(),
        }
    }

    /// Whether the store still takes writes.
    pub fn is_open(&self) -> bool {
        match self {
            Store::Sqlite(s) => s.is_open(),
            Store::Redis(s) => s.is_open(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded store.
    #[serde(default = "default_storage_path")]
    pub path: PathBuf,
    /// How many deliveries may wait before the webhook answers 503: a safety net far above
    /// what a storm leaves once coalescing has folded it, not the back-pressure itself.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Webhooks accepted at once up to which each is routed, deduplicated and queued before
    /// its answer (which then says what became of it). Past it, or while webhooks appended
    /// earlier wait, a webhook is appended as received, answered, and routed right after: a
    /// burst is taken at the rate the disk appends. `0`: always appended first. The embedded
    /// store only (with Redis every webhook is routed before its answer).
    #[serde(default = "default_accept_inline")]
    pub accept_inline: usize,
    /// How many bytes the store may use before new notifications are refused with 503.
    /// SQLite: the database's pages in use (a full disk refuses earlier, also with 503).
    /// Redis: the stored jobs, dead letters included, as counted by the scripts (each job's
    /// values plus a fixed share for its keys and indexes).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A shared Redis (`redis://` or `rediss://`) used instead of the embedded store, so that
    /// several replicas share one queue. May carry a password: a secret.
    pub redis_url: Option<Secret>,
    pub redis_url_file: Option<PathBuf>,
    /// Prefix of every Redis key, so several installations can share one Redis.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// A delivery claimed by a replica that stopped answering for this long (crashed, or cut
    /// off from Redis) is taken over by another replica.
    #[serde(default = "default_redis_visibility_timeout", with = "humantime_serde")]
    pub redis_visibility_timeout: Duration,
    /// The master found through Redis Sentinel and followed through failovers, instead of
    /// `redis_url`.
    pub redis_sentinel: Option<redis::sentinel::SentinelConfig>,
    /// A change that must not be lost (accepting, an outcome, a dead letter, an
    /// acknowledgement) counts as made only once this many replicas have it (Redis `WAIT`):
    /// replication is asynchronous, and a failover loses what the replicas did not get.
    #[serde(default)]
    pub redis_wait_replicas: u32,
    /// How long to wait for them before answering 503 instead.
    #[serde(default = "default_redis_wait_timeout", with = "humantime_serde")]
    pub redis_wait_timeout: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_storage_path(),
            queue_capacity: default_queue_capacity(),
            accept_inline: default_accept_inline(),
            max_bytes: default_max_bytes(),
            redis_url: None,
            redis_url_file: None,
            redis_prefix: default_redis_prefix(),
            redis_visibility_timeout: default_redis_visibility_timeout(),
            redis_sentinel: None,
            redis_wait_replicas: 0,
            redis_wait_timeout: default_redis_wait_timeout(),
        }
    }
}

fn default_redis_wait_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_redis_prefix() -> String {
    "amw:".into()
}

fn default_redis_visibility_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_storage_path() -> PathBuf {
    PathBuf::from("./data")
}

fn default_accept_inline() -> usize {
    8
}

fn default_queue_capacity() -> usize {
    1_000_000
}

/// The store's default size bound (`storage.max_bytes`): 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
