//! The SQLite backend: one file `queue.sqlite3` in `storage.path`, WAL mode.
//!
//! Every statement runs on one writer thread that owns the connection. The thread takes all
//! requests waiting for it, runs each inside its own savepoint (so one request's failure does
//! not undo another's) and commits them in one transaction before answering any: a burst of
//! webhooks costs one `fsync`, not one each. `synchronous=FULL` makes a commit durable against
//! an OS crash or power loss as well as a crash of this process; with group commits it costs
//! little. The file can be inspected with the `sqlite3` CLI.
//!
//! Layout: this module opens the file and hands requests to the writer; `writer` runs them
//! (batches, savepoints, the in-memory state that follows the file); `checkpoint` copies the
//! WAL back; `schema` creates the tables and the columns older stores lack; `jobs` is the
//! queue; `admit` a webhook's admission; `dedupe` (its log, and `dedupe_runs` what is merged
//! out of it) and `counters` their keys; `history` and `chatops` their tables; `testing` the
//! faults tests inject.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;
use tokio::sync::mpsc;

mod admit;
mod bodies;
mod chatops;
mod checkpoint;
mod counters;
mod dedupe;
mod dedupe_runs;
mod history;
mod inbox;
mod incident;
mod jobs;
mod oncall;
mod schema;
mod stats;
pub mod testing;
mod writer;

use super::StoreError;
use checkpoint::{WAL_KEEP_BYTES, WAL_PAGES, run_checkpointer};
use writer::{
    Op, Place, STATEMENT_CACHE, Writer, keep_statement_journals_in_memory, op_of, run_writer,
};

/// The database file inside `storage.path`.
pub const FILE: &str = "queue.sqlite3";

/// A handle to the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    tx: mpsc::UnboundedSender<(Op, Place)>,
    closed: Arc<AtomicBool>,
    /// Whether the last write that was tried committed (`/-/ready` reads it).
    writable: Arc<AtomicBool>,
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
        // A statement with `LIMIT ?` (claims, pruning) is otherwise compiled again each time it
        // runs: SQLite plans with the bound limit and marks the statement stale on every new
        // binding. With the planner's stability guarantee a plan never depends on bound values
        // (the store keeps no statistics that would pick another one): 7 % of the writer's
        // time under a burst.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(|e| err(e.to_string()))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(|e| err(e.to_string()))?;
        schema::create(&conn).map_err(|e| err(e.to_string()))?;
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
                r.get::<_, i64>(0)
            })
            .map_err(|e| err(e.to_string()))?
            + inbox::count(&conn).map_err(|e| err(e.to_string()))?;
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
        let marks = dedupe::Marks::load(&conn).map_err(|e| err(e.to_string()))?;
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
        let writer = Writer {
            conn,
            live: live.max(0) as u64,
            capacity: capacity as u64,
            max_bytes,
            used: None,
            claimed: HashSet::new(),
            released: Vec::new(),
            history_rows: None,
            history_aged_at: None,
            history_prune: None,
            marks,
            checkpoint,
        };
        let flag = closed.clone();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run_checkpointer(checkpointer, checkpoints))
            .map_err(|e| err(e.to_string()))?;
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                run_writer(writer, rx);
                flag.store(true, Ordering::SeqCst);
            })
            .map_err(|e| err(e.to_string()))?;
        Ok(SqliteStore {
            tx,
            closed,
            writable: Arc::new(AtomicBool::new(true)),
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

    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && !self.tx.is_closed()
    }

    /// Runs `f` on the writer thread inside the next group commit; answers after the commit.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call_at(Place::InTurn, f).await
    }

    /// [`Self::call`] for a request that changes many pages: it goes first in its batch
    /// ([`Place`]).
    async fn call_first<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call_at(Place::First, f).await
    }

    async fn call_at<T: Send + 'static>(
        &self,
        place: Place,
        f: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (op, rx) = op_of(f);
        self.tx.send((op, place)).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
mod tests;
