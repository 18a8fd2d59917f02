//! The SQLite backend: one file `queue.sqlite3` in `storage.path`, WAL mode.
//!
//! Every statement runs on one writer thread that owns the connection. The thread takes all
//! requests waiting for it, runs each inside its own savepoint (so one request's failure does
//! not undo another's) and commits them in one transaction before answering any: a burst of
//! webhooks costs one `fsync`, not one each. `synchronous=FULL` makes a commit durable against
//! an OS crash or power loss as well as a crash of this process; with group commits it costs
//! little. The file can be inspected with the `sqlite3` CLI.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

mod chatops;
mod history;
mod oncall;

use super::Progress;
use super::history::{Delivery, Retention};
use super::{Admission, Admitted, Depth, Failure, IntegrationId, Job, Mark, NewJob, StoreError};

/// The database file inside `storage.path`.
pub const FILE: &str = "queue.sqlite3";

/// Requests taken into one transaction at most.
const MAX_BATCH: usize = 512;

/// Compiled statements kept by the writer's connection.
const STATEMENT_CACHE: usize = 64;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver    TEXT    NOT NULL,
    integration TEXT    NOT NULL,            -- the integration's identity (older stores: its position)
    kind        TEXT    NOT NULL,
    notification TEXT   NOT NULL,            -- the Notification as JSON
    attempt     INTEGER NOT NULL DEFAULT 0,
    progress    TEXT    NOT NULL DEFAULT '[]', -- recipients already delivered, JSON array
    accepted_at INTEGER NOT NULL,            -- unix milliseconds
    not_before  INTEGER NOT NULL,            -- unix milliseconds
    state       TEXT    NOT NULL,            -- pending | inflight | dead
    fallback    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    reason      TEXT,
    failed_at   INTEGER,
    held        INTEGER NOT NULL DEFAULT 0,  -- resolved alerts waiting to be merged
    starts      INTEGER NOT NULL DEFAULT 0   -- attempts begun (attempt: those that ended)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, not_before);
CREATE INDEX IF NOT EXISTS jobs_target ON jobs (receiver, integration, state);
CREATE TABLE IF NOT EXISTS dedupe (
    key        TEXT PRIMARY KEY,
    value      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL            -- unix milliseconds; absent from then on
);
CREATE INDEX IF NOT EXISTS dedupe_expiry ON dedupe (expires_at);
CREATE TABLE IF NOT EXISTS counters (
    key        TEXT PRIMARY KEY,
    value      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A request: runs against the writer (or learns the transaction could not begin) and says
/// whether it succeeded, so a failure can be rolled back to its savepoint.
type Op = Box<dyn FnOnce(Result<&mut Writer, &StoreError>) -> (bool, Reply) + Send>;

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Jobs not dead (pending or in flight), for the capacity check.
    live: u64,
    capacity: u64,
    /// Bytes the database may use (pages in use × page size) before new jobs are refused.
    max_bytes: u64,
    /// Jobs handed out and not yet given back (delivered, rescheduled, dead-lettered or
    /// released). Kept here, not in the file: claiming writes nothing, so it works while the
    /// disk refuses writes, and a restart finds every live job pending.
    claimed: HashSet<i64>,
    /// Records in the history table, once counted (`None`: not known, counted when needed),
    /// so that pruning to `web.history_max` costs what it deletes, not a scan of what is kept.
    /// Forgotten whenever a batch does not commit.
    history_rows: Option<u64>,
    /// Wakes the checkpointer after a commit that wrote (see [`run_checkpointer`]).
    checkpoint: std::sync::mpsc::SyncSender<()>,
}

impl Writer {
    /// Whether the database uses more than `max_bytes`: pages in use (not on the free list)
    /// times the page size, both read from the file header, so the check costs no I/O.
    fn over_size(&self) -> Result<bool, StoreError> {
        let pragma = |sql: &str| -> Result<u64, StoreError> {
            self.conn
                .prepare_cached(sql)
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(|v| v.max(0) as u64)
                .map_err(db)
        };
        let used = pragma("PRAGMA page_count")?.saturating_sub(pragma("PRAGMA freelist_count")?);
        Ok(used.saturating_mul(pragma("PRAGMA page_size")?) > self.max_bytes)
    }
}

/// A handle to the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    tx: mpsc::UnboundedSender<Op>,
    closed: Arc<AtomicBool>,
    /// Whether the last write that was tried committed (`/-/ready` reads it).
    writable: Arc<AtomicBool>,
    /// Tests only: every commit fails, as on a full disk.
    refuse_writes: Arc<AtomicBool>,
}

pub(super) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

impl SqliteStore {
    pub fn open(dir: &Path, capacity: usize, owner: bool) -> Result<SqliteStore, StoreError> {
        Self::open_with(dir, capacity, super::DEFAULT_MAX_BYTES, owner)
    }

    /// As [`SqliteStore::open`], refusing new jobs once the database uses `max_bytes`.
    pub fn open_with(
        dir: &Path,
        capacity: usize,
        max_bytes: u64,
        owner: bool,
    ) -> Result<SqliteStore, StoreError> {
        let err = |message: String| StoreError::Open {
            path: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        keep_statement_journals_in_memory();
        let conn = Connection::open(dir.join(FILE)).map_err(|e| err(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| err(e.to_string()))?;
        // Every statement the writer runs often stays compiled (rusqlite keeps 16 by default,
        // fewer than the queue, dedupe and history use).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(|e| err(e.to_string()))?;
        conn.execute_batch(SCHEMA).map_err(|e| err(e.to_string()))?;
        conn.execute_batch(chatops::SCHEMA)
            .map_err(|e| err(e.to_string()))?;
        conn.execute_batch(history::SCHEMA)
            .map_err(|e| err(e.to_string()))?;
        // Stores written before these columns existed: resolved jobs held for grouping, attempts
        // counted at their start, the history's notification in a column of its own.
        for (table, column, decl) in [
            ("jobs", "held", "INTEGER NOT NULL DEFAULT 0"),
            ("jobs", "starts", "INTEGER NOT NULL DEFAULT 0"),
            ("history", "notification", "TEXT"),
        ] {
            add_column(&conn, table, column, decl).map_err(|e| err(e.to_string()))?;
        }
        if owner {
            // A previous run's in-flight jobs may or may not have reached the upstream: again.
            conn.execute(
                "UPDATE jobs SET state = 'pending' WHERE state = 'inflight'",
                [],
            )
            .map_err(|e| err(e.to_string()))?;
        }
        let live: i64 = conn
            .query_row("SELECT count(*) FROM jobs WHERE state != 'dead'", [], |r| {
                r.get(0)
            })
            .map_err(|e| err(e.to_string()))?;
        // The WAL is copied back into the database by a thread of its own, with its own
        // connection, so that webhooks waiting for the writer's commits do not wait for that.
        // Under a steady stream of commits that copy never catches up with the end of the WAL,
        // and the WAL only starts over once all of it is copied: the writer checkpoints too,
        // past WAL_PAGES, copying only the little the other thread has not (before this, a
        // 5-second burst grew the WAL to 780 MB). The file is cut back to WAL_KEEP_BYTES then.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint={WAL_PAGES}; PRAGMA journal_size_limit={WAL_KEEP_BYTES};"
        ))
        .map_err(|e| err(e.to_string()))?;
        let checkpointer = Connection::open(dir.join(FILE)).map_err(|e| err(e.to_string()))?;
        checkpointer
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| err(e.to_string()))?;
        checkpointer
            .execute_batch("PRAGMA synchronous=FULL;")
            .map_err(|e| err(e.to_string()))?;
        let (checkpoint, checkpoints) = std::sync::mpsc::sync_channel(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        let refuse_writes = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            conn,
            live: live.max(0) as u64,
            capacity: capacity as u64,
            max_bytes,
            claimed: HashSet::new(),
            history_rows: None,
            checkpoint,
        };
        let flag = closed.clone();
        let refuse = refuse_writes.clone();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run_checkpointer(checkpointer, checkpoints))
            .map_err(|e| err(e.to_string()))?;
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                run_writer(writer, rx, &refuse);
                flag.store(true, Ordering::SeqCst);
            })
            .map_err(|e| err(e.to_string()))?;
        Ok(SqliteStore {
            tx,
            closed,
            writable: Arc::new(AtomicBool::new(true)),
            refuse_writes,
        })
    }

    /// Whether the last write tried was committed.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
    }

    /// Notes whether a write committed, for [`SqliteStore::is_writable`].
    fn wrote<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            Ok(_) => self.writable.store(true, Ordering::SeqCst),
            Err(StoreError::Db(_) | StoreError::Closed) => {
                self.writable.store(false, Ordering::SeqCst)
            }
            Err(_) => {}
        }
        r
    }

    /// Tests only: makes every commit fail while `on`, as a full disk does.
    #[doc(hidden)]
    pub fn refuse_writes(&self, on: bool) {
        self.refuse_writes.store(on, Ordering::SeqCst);
    }

    /// A small real write, so that [`SqliteStore::is_writable`] follows the disk even when
    /// nothing else is written.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let r = self
            .call(|w| {
                w.conn
                    .execute(
                        "INSERT OR REPLACE INTO counters (key, value, expires_at)
                         VALUES ('store:probe', 0, ?1)",
                        [ms(Utc::now() + chrono::Duration::minutes(1))],
                    )
                    .map_err(db)?;
                Ok(())
            })
            .await;
        self.wrote(r)
    }

    /// Gives back every claimed job not in `keep` (those still being delivered or recorded):
    /// the scheduler's claims that were lost, e.g. to a task that ended early.
    pub async fn release_stale(&self, keep: Vec<i64>) -> Result<usize, StoreError> {
        self.call(move |w| {
            let keep: HashSet<i64> = keep.into_iter().collect();
            let before = w.claimed.len();
            w.claimed.retain(|id| keep.contains(id));
            Ok(before - w.claimed.len())
        })
        .await
    }

    /// Counts one more attempt begun on a job, durably, before it is rendered and sent;
    /// returns how many were begun.
    pub async fn started(&self, id: i64) -> Result<u32, StoreError> {
        let r = self
            .call(move |w| {
                w.conn
                    .query_row(
                        "UPDATE jobs SET starts = starts + 1 WHERE id = ?1 RETURNING starts",
                        [id],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                    .map_err(db)
            })
            .await;
        self.wrote(r).map(|n| n.unwrap_or(0).max(0) as u32)
    }

    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && !self.tx.is_closed()
    }

    /// Runs `f` on the writer thread inside the next group commit; answers after the commit.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |w: Result<&mut Writer, &StoreError>| {
            let result = match w {
                Ok(w) => f(w),
                Err(e) => Err(StoreError::Db(e.to_string())),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit: Option<&StoreError>| {
                let result = match (result, commit) {
                    (Ok(_), Some(e)) => Err(StoreError::Db(e.to_string())),
                    (r, _) => r,
                };
                let _ = tx.send(result);
            });
            (ok, reply)
        });
        self.tx.send(op).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<i64>, StoreError> {
        let jobs = encode_jobs(jobs)?;
        let r = self
            .call(move |w| {
                if w.live + jobs.len() as u64 > w.capacity || w.over_size()? {
                    return Err(StoreError::Full);
                }
                let ids = insert_jobs(&w.conn, &jobs)?;
                w.live += ids.len() as u64;
                Ok(ids)
            })
            .await;
        self.wrote(r)
    }

    pub async fn claim(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.call(move |w| {
            let ids = select_ids(
                &w.conn,
                "WHERE state = 'pending' AND not_before <= ?1 ORDER BY not_before, id LIMIT ?2",
                params![ms(now), (limit + w.claimed.len()) as i64],
            )?;
            take_claims(w, ids, limit)
        })
        .await
        .and_then(decode_jobs)
    }

    pub async fn claim_target(
        &self,
        receiver: &str,
        integration: &IntegrationId,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let receiver = receiver.to_string();
        let integration = integration.0.clone();
        self.call(move |w| {
            let ids = select_ids(
                &w.conn,
                "WHERE state = 'pending' AND receiver = ?1 AND integration = ?2 ORDER BY id
                 LIMIT ?3",
                params![receiver, integration, (limit + w.claimed.len()) as i64],
            )?;
            take_claims(w, ids, limit)
        })
        .await
        .and_then(decode_jobs)
    }

    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.call(|w| {
            // Claimed jobs are pending in the file but not due: skipped, or the dispatcher
            // would wake every few milliseconds while deliveries are in flight.
            let mut stmt = w
                .conn
                .prepare_cached(
                    "SELECT id, not_before FROM jobs WHERE state = 'pending'
                     ORDER BY not_before LIMIT ?1",
                )
                .map_err(db)?;
            let mut rows = stmt.query([(w.claimed.len() + 1) as i64]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let id: i64 = r.get(0).map_err(db)?;
                if !w.claimed.contains(&id) {
                    return Ok(Some(from_ms(r.get(1).map_err(db)?)));
                }
            }
            Ok(None)
        })
        .await
    }

    pub async fn complete(&self, ids: Vec<i64>, then: Vec<NewJob>) -> Result<(), StoreError> {
        let then = encode_jobs(then)?;
        let r = self
            .call(move |w| {
                let mut removed = 0;
                for id in &ids {
                    w.claimed.remove(id);
                    removed += w
                        .conn
                        .execute("DELETE FROM jobs WHERE id = ?1", [id])
                        .map_err(db)?;
                }
                let added = insert_jobs(&w.conn, &then)?.len();
                w.live = (w.live + added as u64).saturating_sub(removed as u64);
                Ok(())
            })
            .await;
        self.wrote(r)
    }

    pub async fn reschedule(
        &self,
        id: i64,
        f: Failure,
        not_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = self
            .call(move |w| {
            w.claimed.remove(&id);
            w.conn
                .execute(
                    "UPDATE jobs SET state = 'pending', attempt = ?2, progress = ?3, last_error = ?4,
                     reason = ?5, not_before = ?6 WHERE id = ?1",
                    params![
                        id,
                        f.attempt,
                        progress_json(&f.progress),
                        f.error,
                        f.reason,
                        ms(not_before)
                    ],
                )
                .map_err(db)?;
            Ok(())
        })
            .await;
        self.wrote(r)
    }

    pub async fn dead_letter(
        &self,
        id: i64,
        f: Failure,
        fallback: Vec<NewJob>,
    ) -> Result<(), StoreError> {
        let fallback = encode_jobs(fallback)?;
        let r = self
            .call(move |w| {
                w.claimed.remove(&id);
                let n = w
                .conn
                .execute(
                    "UPDATE jobs SET state = 'dead', attempt = ?2, progress = ?3, last_error = ?4,
                     reason = ?5, failed_at = ?6 WHERE id = ?1 AND state != 'dead'",
                    params![
                        id,
                        f.attempt,
                        progress_json(&f.progress),
                        f.error,
                        f.reason,
                        ms(Utc::now())
                    ],
                )
                .map_err(db)?;
                let added = insert_jobs(&w.conn, &fallback)?.len();
                w.live = (w.live + added as u64).saturating_sub(n as u64);
                Ok(())
            })
            .await;
        self.wrote(r)
    }

    pub async fn depth(&self) -> Result<Vec<Depth>, StoreError> {
        self.call(|w| {
            let mut stmt = w
                .conn
                .prepare_cached(
                    "SELECT receiver, integration, count(*) FROM jobs WHERE state != 'dead'
                     GROUP BY receiver, integration",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Depth {
                        receiver: r.get(0)?,
                        integration: id_of(r.get(1)?),
                        count: r.get::<_, i64>(2)? as u64,
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    pub async fn dead_letters(&self) -> Result<Vec<Job>, StoreError> {
        self.call(|w| select_jobs(&w.conn, "WHERE state = 'dead' ORDER BY id", []))
            .await
            .and_then(decode_jobs)
    }

    pub async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        self.call(|w| {
            w.conn
                .query_row("SELECT count(*) FROM jobs WHERE state = 'dead'", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    pub async fn replay(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.call(move |w| {
            let n = w
                .conn
                .execute(
                    "UPDATE jobs SET state = 'pending', attempt = 0, starts = 0, not_before = ?1,
                     accepted_at = ?1, failed_at = NULL
                     WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)",
                    params![ms(now), id],
                )
                .map_err(db)? as u64;
            w.live += n;
            Ok(n)
        })
        .await
    }

    pub async fn purge(&self) -> Result<u64, StoreError> {
        self.call(|w| {
            w.conn
                .execute("DELETE FROM jobs WHERE state = 'dead'", [])
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    pub async fn add_counter(
        &self,
        key: String,
        by: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.call(move |w| {
            let now = ms(Utc::now());
            w.conn
                .execute(
                    "DELETE FROM counters WHERE key = ?1 AND expires_at <= ?2",
                    params![key, now],
                )
                .map_err(db)?;
            w.conn
                .query_row(
                    "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = value + ?2 RETURNING value",
                    params![key, by, ms(expires_at)],
                    |r| r.get(0),
                )
                .map_err(db)
        })
        .await
    }

    pub async fn take_counters(
        &self,
        keys: Vec<String>,
        by: i64,
        limit: Option<i64>,
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.call(move |w| {
            let now = ms(Utc::now());
            let mut drop_expired = w
                .conn
                .prepare_cached("DELETE FROM counters WHERE key = ?1 AND expires_at <= ?2")
                .map_err(db)?;
            let mut get = w
                .conn
                .prepare_cached("SELECT value FROM counters WHERE key = ?1")
                .map_err(db)?;
            let mut add = w
                .conn
                .prepare_cached(
                    "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = value + ?2",
                )
                .map_err(db)?;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                drop_expired.execute(params![key, now]).map_err(db)?;
                let value: i64 = get
                    .query_row(params![key], |r| r.get(0))
                    .optional()
                    .map_err(db)?
                    .unwrap_or(0);
                if limit.is_some_and(|l| value + by > l) {
                    out.push(false);
                    continue;
                }
                add.execute(params![key, by, ms(expires_at)]).map_err(db)?;
                out.push(true);
            }
            Ok(out)
        })
        .await
    }

    pub async fn counter(&self, key: String, now: DateTime<Utc>) -> Result<i64, StoreError> {
        self.call(move |w| {
            w.conn
                .query_row(
                    "SELECT value FROM counters WHERE key = ?1 AND expires_at > ?2",
                    params![key, ms(now)],
                    |r| r.get(0),
                )
                .optional()
                .map(|v| v.unwrap_or(0))
                .map_err(db)
        })
        .await
    }

    pub async fn admit(
        &self,
        admissions: Vec<Admission>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Admitted>, StoreError> {
        let admissions = encode_admissions(admissions)?;
        let r = self.call(move |w| admit_in(w, admissions, now)).await;
        self.wrote(r).map(|(admitted, _spent)| admitted)
    }

    /// [`SqliteStore::admit`], and the history records of what was admitted added in the same
    /// transaction: one commit before the answer. A history write that fails is undone alone
    /// (its own savepoint) and returned beside the admissions, which stand.
    pub async fn admit_recorded(
        &self,
        admissions: Vec<Admission>,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Admitted>, Option<StoreError>), StoreError> {
        let admissions = encode_admissions(admissions)?;
        let records = history::Encoded::all(records)?;
        let r = self
            .call(move |w| {
                let (admitted, spent) = admit_in(w, admissions, now)?;
                let records = records
                    .into_iter()
                    .zip(&admitted)
                    .filter_map(|(e, a)| e.of_admission(a))
                    .collect::<Vec<_>>();
                if records.is_empty() {
                    return Ok((admitted, None, spent));
                }
                run(&w.conn, "SAVEPOINT history")?;
                let failed = history::add(w, records, keep, now).err();
                if failed.is_some() {
                    let _ = run(&w.conn, "ROLLBACK TO history");
                    w.history_rows = None;
                }
                let _ = run(&w.conn, "RELEASE history");
                Ok((admitted, failed, spent))
            })
            .await;
        self.wrote(r)
            .map(|(admitted, failed, _spent)| (admitted, failed))
    }

    pub async fn claim_held(
        &self,
        receiver: &str,
        integration: &IntegrationId,
    ) -> Result<Vec<Job>, StoreError> {
        let receiver = receiver.to_string();
        let integration = integration.0.clone();
        self.call(move |w| {
            let ids = select_ids(
                &w.conn,
                "WHERE state = 'pending' AND held = 1 AND receiver = ?1 AND integration = ?2
                 ORDER BY id",
                params![receiver, integration],
            )?;
            take_claims(w, ids, usize::MAX)
        })
        .await
        .and_then(decode_jobs)
    }

    pub async fn remember(&self, marks: Vec<Mark>, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.call(move |w| {
            for m in &marks {
                take_or_extend(&w.conn, m, now)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn recall(
        &self,
        keys: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        self.call(move |w| {
            let mut stmt = w
                .conn
                .prepare_cached("SELECT value FROM dedupe WHERE key = ?1 AND expires_at > ?2")
                .map_err(db)?;
            keys.iter()
                .map(|k| {
                    stmt.query_row(params![k, ms(now)], |r| r.get(0))
                        .optional()
                        .map_err(db)
                })
                .collect()
        })
        .await
    }

    pub async fn state_size(&self) -> Result<u64, StoreError> {
        self.call(|w| {
            w.conn
                .query_row("SELECT count(*) FROM dedupe", [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(db)
        })
        .await
    }
}

/// Notifications ready for [`admit_in`]: each job's notification already JSON.
type EncodedAdmissions = Vec<(String, Admission)>;

fn encode_admissions(admissions: Vec<Admission>) -> Result<EncodedAdmissions, StoreError> {
    admissions
        .into_iter()
        .map(|a| Ok((encode(&a.job.notification)?, a)))
        .collect()
}

/// [`SqliteStore::admit`] on the writer thread. The jobs and their JSON come back beside the
/// answer, to be freed by the caller: freeing them took the one writer thread's time.
fn admit_in(
    w: &mut Writer,
    admissions: EncodedAdmissions,
    now: DateTime<Utc>,
) -> Result<(Vec<Admitted>, EncodedAdmissions), StoreError> {
    prune(&w.conn, now)?;
    let mut out = Vec::with_capacity(admissions.len());
    let mut spent = Vec::with_capacity(admissions.len());
    let mut queued = 0u64;
    for (mut json, mut a) in admissions {
        if let Some(identity) = &a.identity
            && !take(&w.conn, identity, now)?
        {
            out.push(Admitted::Duplicate);
            spent.push((json, a));
            continue;
        }
        let mut drop = Vec::new();
        for (i, mark) in &a.once {
            if !take(&w.conn, mark, now)? {
                drop.push(*i);
            }
        }
        for mark in &a.remember {
            take_or_extend(&w.conn, mark, now)?;
        }
        if !drop.is_empty() {
            let n = &a.job.notification;
            let keep = n
                .alerts
                .iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, a)| a.clone())
                .collect::<Vec<_>>();
            if keep.is_empty() {
                out.push(Admitted::Empty {
                    dropped: drop.len(),
                });
                spent.push((json, a));
                continue;
            }
            a.job.notification = n.subset(keep);
            json = encode(&a.job.notification)?;
        }
        let id = insert_job(&w.conn, &a.job, &json, a.not_before, a.held)?;
        queued += 1;
        out.push(Admitted::Queued {
            id,
            dropped: drop.len(),
        });
        spent.push((json, a));
    }
    if w.live + queued > w.capacity || (queued > 0 && w.over_size()?) {
        // The savepoint is rolled back: the state taken above is undone too.
        return Err(StoreError::Full);
    }
    w.live += queued;
    Ok((out, spent))
}

/// Adds `table.column` (declared as `decl`) to a store written before the column existed.
fn add_column(
    conn: &Connection,
    table: &str,
    column: &str,
    decl: &str,
) -> Result<(), rusqlite::Error> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// Forgets expired dedupe state.
fn prune(conn: &Connection, now: DateTime<Utc>) -> Result<usize, StoreError> {
    conn.prepare_cached("DELETE FROM dedupe WHERE expires_at <= ?1")
        .and_then(|mut s| s.execute([ms(now)]))
        .map_err(db)
}

/// `SET NX PX`: takes the key if it is absent (or expired); whether it did.
fn take(conn: &Connection, m: &Mark, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "INSERT INTO dedupe (key, value, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
             WHERE dedupe.expires_at <= ?4",
        )
        .and_then(|mut s| s.execute(params![m.key, m.value, ms(m.expires_at), ms(now)]))
        .map_err(db)?;
    Ok(n > 0)
}

/// Takes the key if absent; otherwise keeps its value and extends its expiry.
fn take_or_extend(conn: &Connection, m: &Mark, now: DateTime<Utc>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO dedupe (key, value, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET
           value = CASE WHEN dedupe.expires_at <= ?4 THEN excluded.value ELSE dedupe.value END,
           expires_at = max(dedupe.expires_at, excluded.expires_at)",
    )
    .and_then(|mut s| s.execute(params![m.key, m.value, ms(m.expires_at), ms(now)]))
    .map_err(db)?;
    Ok(())
}

fn insert_job(
    conn: &Connection,
    j: &NewJob,
    json: &str,
    not_before: DateTime<Utc>,
    held: bool,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO jobs (receiver, integration, kind, notification, accepted_at, not_before,
         state, fallback, held) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            j.receiver,
            j.integration.0,
            j.kind,
            json,
            ms(j.accepted_at),
            ms(not_before),
            j.fallback,
            held
        ])
    })
    .map_err(db)?;
    Ok(conn.last_insert_rowid())
}

/// Runs one statement without parameters, compiled once and kept (transaction control runs
/// several times per batch).
fn run(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(db)
}

fn run_writer(mut w: Writer, mut rx: mpsc::UnboundedReceiver<Op>, refuse: &AtomicBool) {
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        // Each reply, and whether its request changed the file: one that changed nothing
        // (a claim, a read) has nothing to lose when the commit fails.
        let mut replies: Vec<(Reply, bool)> = Vec::with_capacity(ops.len());
        if let Err(e) = run(&w.conn, "BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "store: cannot begin a transaction");
            for op in ops {
                let (_, reply) = op(Err(&e));
                reply(Some(&e));
            }
            continue;
        }
        let live_before = w.live;
        // Claims given back by this batch are taken again if it does not commit: the job's
        // outcome was not recorded, so it must not be handed out again yet.
        let claimed_before = w.claimed.clone();
        let changes_before = w.conn.total_changes();
        for op in ops {
            let _ = run(&w.conn, "SAVEPOINT op");
            let changes = w.conn.total_changes();
            let (ok, reply) = op(Ok(&mut w));
            let wrote = w.conn.total_changes() != changes;
            // A failed request undoes its own writes only; it already holds its error.
            if !ok {
                let _ = run(&w.conn, "ROLLBACK TO op");
                w.history_rows = None;
            }
            let _ = run(&w.conn, "RELEASE op");
            replies.push((reply, wrote));
        }
        let wrote = w.conn.total_changes() != changes_before;
        let commit = if refuse.load(Ordering::SeqCst) && wrote {
            Some(StoreError::Db(
                "database or disk is full (refused for a test)".into(),
            ))
        } else {
            run(&w.conn, "COMMIT").err()
        };
        if commit.is_none() && wrote {
            // Full: a wake-up is already waiting.
            let _ = w.checkpoint.try_send(());
        }
        if let Some(e) = &commit {
            tracing::error!(error = %e, "store: commit failed");
            let _ = w.conn.execute_batch("ROLLBACK");
            w.live = live_before;
            w.history_rows = None;
            let taken_now: Vec<i64> = w.claimed.difference(&claimed_before).copied().collect();
            w.claimed = claimed_before;
            // Claims made by this batch stand: claiming wrote nothing.
            w.claimed.extend(taken_now);
        }
        for (reply, wrote) in replies {
            reply(if wrote { commit.as_ref() } else { None });
        }
    }
}

/// Undo pages a request's savepoint keeps in memory before SQLite writes them to a temporary
/// file (its default: 64 KiB).
const STATEMENT_JOURNAL_SPILL: i32 = 1024 * 1024;

/// Each request runs in a savepoint of its own, whose undo pages (the statement journal) SQLite
/// writes to a temporary file past 64 KiB: a batch of webhooks wrote two pages there for each
/// page of WAL, most of the writer's system time. Past 1 MiB a request's pages still go to the
/// file, so a request that changes many rows (marking 16,384 merged deliveries in the history)
/// holds 1 MiB for them, not all (in memory without a bound, 35 MB). SQLite takes this setting
/// only before its first connection; once set, or too late, it is not tried again.
fn keep_statement_journals_in_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config with SQLITE_CONFIG_STMTJRNL_SPILL takes one int; before SQLite
        // is initialised it sets the threshold, afterwards it returns SQLITE_MISUSE and
        // changes nothing.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL,
                STATEMENT_JOURNAL_SPILL,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "store: SQLite was initialised already; statement journals spill at 64 KiB"
            );
        }
    });
}

/// WAL pages past which the writer checkpoints what the checkpointer has not copied yet.
const WAL_PAGES: u32 = 4096;
/// Bytes of WAL file kept once it starts over.
const WAL_KEEP_BYTES: u64 = 32 * 1024 * 1024;

/// Checkpoints run at most this often: each copies what the commits since the last one added
/// to the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies the WAL back into the database after commits, at most every [`CHECKPOINT_EVERY`],
/// until the writer is gone. A PASSIVE checkpoint never blocks the writer: it copies the frames
/// no reader still needs, and the writer starts the WAL over once all are copied. Ends with
/// the writer (its wake-up channel closes); the last connection closed checkpoints the rest.
fn run_checkpointer(conn: Connection, commits: std::sync::mpsc::Receiver<()>) {
    let mut last: Option<std::time::Instant> = None;
    while commits.recv().is_ok() {
        if let Some(wait) = last.and_then(|t| CHECKPOINT_EVERY.checked_sub(t.elapsed())) {
            // Pacing, not synchronisation: commits meanwhile are copied by this checkpoint.
            std::thread::sleep(wait);
        }
        while commits.try_recv().is_ok() {}
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "store: cannot checkpoint the WAL; tried again after the next commit");
        }
        last = Some(std::time::Instant::now());
    }
}

/// A job ready for the writer: its notification already JSON. Encoding and decoding happen on
/// the caller's task, so the one writer thread spends its time on SQL only.
struct EncodedJob {
    job: NewJob,
    json: String,
}

fn encode(n: &crate::webhook::Notification) -> Result<String, StoreError> {
    serde_json::to_string(n)
        .map_err(|e| StoreError::Db(format!("cannot encode a notification: {e}")))
}

fn encode_jobs(jobs: Vec<NewJob>) -> Result<Vec<EncodedJob>, StoreError> {
    jobs.into_iter()
        .map(|job| {
            let json = encode(&job.notification)?;
            Ok(EncodedJob { job, json })
        })
        .collect()
}

fn insert_jobs(conn: &Connection, jobs: &[EncodedJob]) -> Result<Vec<i64>, StoreError> {
    jobs.iter()
        .map(|e| insert_job(conn, &e.job, &e.json, e.job.accepted_at, false))
        .collect()
}

fn progress_json(p: &Progress) -> String {
    serde_json::to_string(p).unwrap_or_else(|_| "[]".into())
}

/// The first `limit` of the jobs `ids` not claimed already, now claimed, read in full. Only
/// those are read: the rows skipped (claimed, in flight) cost an index step, not their
/// notification.
fn take_claims(w: &mut Writer, ids: Vec<i64>, limit: usize) -> Result<Vec<RawJob>, StoreError> {
    let mut out = Vec::new();
    for id in ids {
        if out.len() >= limit {
            break;
        }
        if w.claimed.contains(&id) {
            continue;
        }
        if let Some(job) = select_jobs(&w.conn, "WHERE id = ?1", [id])?.pop() {
            w.claimed.insert(id);
            out.push(job);
        }
    }
    Ok(out)
}

/// The ids of the jobs `tail` selects, in its order.
fn select_ids(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT id FROM jobs {tail}"))
        .map_err(db)?;
    let rows = stmt.query_map(params, |r| r.get(0)).map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// A job row as stored: the notification and progress still JSON (see [`EncodedJob`]).
struct RawJob {
    id: i64,
    receiver: String,
    integration: IntegrationId,
    kind: String,
    notification: String,
    attempt: i64,
    progress: String,
    accepted_at: i64,
    not_before: i64,
    fallback: bool,
    last_error: Option<String>,
    reason: Option<String>,
    failed_at: Option<i64>,
    held: bool,
}

/// The `integration` column: an identity (text), or the position a store written by an
/// older version holds (an integer).
fn id_of(v: rusqlite::types::Value) -> IntegrationId {
    use rusqlite::types::Value;
    IntegrationId(match v {
        Value::Text(s) => s,
        Value::Integer(n) => n.to_string(),
        Value::Real(f) => (f as i64).to_string(),
        Value::Null | Value::Blob(_) => String::new(),
    })
}

fn select_jobs(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RawJob>, StoreError> {
    let sql = format!(
        "SELECT id, receiver, integration, kind, notification, attempt, progress, accepted_at,
         not_before, fallback, last_error, reason, failed_at, held FROM jobs {tail}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok(RawJob {
                id: r.get(0)?,
                receiver: r.get(1)?,
                integration: id_of(r.get(2)?),
                kind: r.get(3)?,
                notification: r.get(4)?,
                attempt: r.get(5)?,
                progress: r.get(6)?,
                accepted_at: r.get(7)?,
                not_before: r.get(8)?,
                fallback: r.get(9)?,
                last_error: r.get(10)?,
                reason: r.get(11)?,
                failed_at: r.get(12)?,
                held: r.get(13)?,
            })
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

fn decode_jobs(rows: Vec<RawJob>) -> Result<Vec<Job>, StoreError> {
    rows.into_iter()
        .map(|r| {
            let corrupt = |e: serde_json::Error| StoreError::Corrupt {
                id: r.id,
                message: e.to_string(),
            };
            Ok(Job {
                notification: serde_json::from_str(&r.notification).map_err(corrupt)?,
                progress: serde_json::from_str(&r.progress).map_err(corrupt)?,
                id: r.id,
                receiver: r.receiver,
                integration: r.integration,
                kind: r.kind,
                attempt: r.attempt.max(0) as u32,
                accepted_at: from_ms(r.accepted_at),
                not_before: from_ms(r.not_before),
                fallback: r.fallback,
                last_error: r.last_error,
                reason: r.reason,
                failed_at: r.failed_at.map(from_ms),
                held: r.held,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn job(receiver: &str) -> NewJob {
        NewJob {
            receiver: receiver.into(),
            integration: crate::store::IntegrationId("console-0".into()),
            kind: "console".into(),
            notification: crate::webhook::sample_notification(),
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
        big.notification.alerts = (0..60)
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
            crate::webhook::sample_notification()
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
}
