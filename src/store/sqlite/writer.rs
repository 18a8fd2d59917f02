//! The writer thread: the one connection that changes the file, the requests it takes in
//! batches (each in a savepoint of its own, all in one transaction, answered after its
//! commit), and the in-memory state that must follow what SQLite holds (live jobs, claims,
//! the history's row count) whatever SQLite commits or undoes.

use std::collections::HashSet;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::db;
use super::dedupe::{Marks, maintain};
use crate::store::StoreError;

/// Requests taken into one transaction at most.
pub(super) const MAX_BATCH: usize = 512;

/// Compiled statements kept by the writer's connection.
pub(super) const STATEMENT_CACHE: usize = 64;

pub(super) type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// A request: runs against the writer (or learns the transaction could not begin) and says
/// whether it succeeded, so a failure can be rolled back to its savepoint.
pub(super) type Op = Box<dyn FnOnce(Result<&mut Writer, &StoreError>) -> (bool, Reply) + Send>;

/// Where a request goes in the batch it is taken into.
///
/// The first request of a transaction runs without a savepoint of its own: undoing it is
/// undoing the transaction. Every other request's savepoint copies each page it changes that
/// the file already held into the statement journal, a temporary file past
/// [`STATEMENT_JOURNAL_SPILL`]: routing 64 appended webhooks wrote 300 KB there, a quarter of
/// all the bytes written over a burst. A request that changes many such pages goes first.
/// Every request in a batch was sent by a task still waiting for its answer, so none depends
/// on another's order: any order is one they could have arrived in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Place {
    InTurn,
    First,
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Jobs not dead (pending or in flight), for the capacity check.
    pub(super) live: u64,
    pub(super) capacity: u64,
    /// Bytes the database may use (pages in use × page size) before new jobs are refused.
    pub(super) max_bytes: u64,
    /// Bytes in use when the running batch first asked ([`Writer::over_size`]), plus the
    /// bodies appended since; `None` until asked in this batch.
    pub(super) used: Option<u64>,
    /// Jobs handed out and not yet given back (delivered, rescheduled, dead-lettered or
    /// released). Kept here, not in the file: claiming writes nothing, so it works while the
    /// disk refuses writes, and a restart finds every live job pending.
    pub(super) claimed: HashSet<i64>,
    /// Claims given back since the open transaction began, taken again if it does not commit.
    pub(super) released: Vec<i64>,
    /// Records in the history table, once counted (`None`: not known, counted when needed),
    /// so that pruning to `web.history_max` costs what it deletes, not a scan of what is kept.
    /// Forgotten whenever a batch does not commit.
    pub(super) history_rows: Option<u64>,
    /// When (the writes' `now`, unix ms) the history's oldest records were last looked at for
    /// age; forgotten with `history_rows`.
    pub(super) history_aged_at: Option<i64>,
    /// Records were written since the history was last pruned, with the bounds and time of the
    /// last write: pruned before the next batch ([`super::history::prune_if_due`]).
    pub(super) history_prune: Option<(
        crate::store::history::Retention,
        chrono::DateTime<chrono::Utc>,
    )>,
    /// Dedupe keys written to the log and not merged yet ([`super::dedupe`]).
    pub(super) marks: Marks,
    /// Wakes the checkpointer after a commit that wrote (see [`run_checkpointer`]).
    pub(super) checkpoint: std::sync::mpsc::SyncSender<()>,
}

impl Writer {
    /// Whether the database uses more than `max_bytes`: pages in use (not on the free list)
    /// times the page size, read from the file header once per batch (SQLite prepares each
    /// `PRAGMA` afresh on every run: asked for every webhook appended, the three took a tenth
    /// of the writer's time), plus what the batch appended since ([`Writer::grew`]).
    pub(super) fn over_size(&mut self) -> Result<bool, StoreError> {
        let used = match self.used {
            Some(used) => used,
            None => {
                let pragma = |sql: &str| -> Result<u64, StoreError> {
                    self.conn
                        .prepare_cached(sql)
                        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                        .map(|v| v.max(0) as u64)
                        .map_err(db)
                };
                let pages =
                    pragma("PRAGMA page_count")?.saturating_sub(pragma("PRAGMA freelist_count")?);
                *self
                    .used
                    .insert(pages.saturating_mul(pragma("PRAGMA page_size")?))
            }
        };
        Ok(used > self.max_bytes)
    }

    /// Counts `bytes` written by this batch towards [`Writer::over_size`].
    pub(super) fn grew(&mut self, bytes: usize) {
        if let Some(used) = &mut self.used {
            *used = used.saturating_add(bytes as u64);
        }
    }
}

/// `f` as a request for the writer, and where its answer comes once its batch is committed.
pub(super) fn op_of<T: Send + 'static>(
    f: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
) -> (Op, oneshot::Receiver<Result<T, StoreError>>) {
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
    (op, rx)
}

/// Runs one statement without parameters, compiled once and kept (transaction control runs
/// several times per batch).
pub(super) fn run(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(db)
}

/// Takes requests in batches until every sender is gone. The upkeep steps (dedupe state,
/// history) run once a request has come and before the batch is gathered: a request that
/// arrives meanwhile joins this batch instead of waiting for the next loop, so no request waits
/// for more than one upkeep step, and a burst's batches are larger (fewer commits, each
/// writing the same tail pages of the tables once for more requests).
pub(super) fn run_writer(mut w: Writer, mut rx: mpsc::UnboundedReceiver<(Op, Place)>) {
    let mut last = 0;
    while let Some(first) = rx.blocking_recv() {
        maintain(&mut w);
        super::history::prune_if_due(&mut w);
        let mut ops = vec![first];
        gather(&mut rx, &mut ops, last, GATHER);
        last = ops.len();
        // Stable: the requests that go first keep their order, and so do the others.
        ops.sort_by_key(|(_, place)| *place != Place::First);
        run_batch(&mut w, ops.into_iter().map(|(op, _)| op).collect());
    }
}

/// How long a busy writer waits at most for a batch to fill up (see [`gather`]).
pub(super) const GATHER: std::time::Duration = std::time::Duration::from_micros(1000);

/// How often a gathering writer looks for more requests.
const GATHER_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// Adds the requests waiting to `ops`; when more than one was (a burst: other senders are
/// about to send theirs), waits up to `window` ([`GATHER`]) for the batch to hold as many as the
/// previous one (`last`), as a database's `commit_delay` does. Under a burst of webhooks
/// from 64 connections, each answer's sender comes back a fraction of a millisecond later;
/// a writer that never waited committed batches of about five, each commit writing the
/// same tail pages of every table again (with it, bytes written per payload byte in a burst
/// went from 2.7–2.8 to 2.4–2.5). A quiet writer (one request) never waits.
pub(super) fn gather(
    rx: &mut mpsc::UnboundedReceiver<(Op, Place)>,
    ops: &mut Vec<(Op, Place)>,
    last: usize,
    window: std::time::Duration,
) {
    let take = |rx: &mut mpsc::UnboundedReceiver<(Op, Place)>, ops: &mut Vec<(Op, Place)>| {
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
    };
    take(rx, ops);
    if ops.len() < 2 {
        return;
    }
    let until = std::time::Instant::now() + window;
    while ops.len() < last.min(MAX_BATCH) && std::time::Instant::now() < until {
        std::thread::sleep(GATHER_POLL);
        take(rx, ops);
    }
}

/// The writer's in-memory state at one point of a batch, to go back to when what SQLite
/// holds goes back to that point.
#[derive(Clone, Copy)]
pub(super) struct Undo {
    pub(super) live: u64,
    pub(super) released: usize,
    pub(super) marks: usize,
}

impl Writer {
    pub(super) fn undo_point(&self) -> Undo {
        Undo {
            live: self.live,
            released: self.released.len(),
            marks: self.marks.point(),
        }
    }

    /// Follows SQLite back to `to`: the jobs counted since are not, the claims given back
    /// since are held again (their outcome was not recorded: the job must not be handed out
    /// again yet), the dedupe keys logged since are forgotten, and the history's row count is
    /// counted afresh. Claims taken since stand: claiming writes nothing.
    pub(super) fn undo(&mut self, to: Undo) {
        self.live = to.live;
        self.marks.undo(to.marks);
        for id in self.released.drain(to.released..) {
            self.claimed.insert(id);
        }
        self.history_rows = None;
        self.history_aged_at = None;
    }

    /// Gives back the claim on `id`; undone with the batch if it does not commit.
    pub(super) fn release(&mut self, id: i64) {
        if self.claimed.remove(&id) {
            self.released.push(id);
        }
    }
}

/// Runs `ops`, each in a savepoint of its own, in one transaction, commits it and answers.
///
/// SQLite itself rolls the whole transaction back after some errors inside a statement (a
/// full disk, an I/O error, no memory: "the transaction may be rolled back automatically"),
/// and then every statement after it would run in a transaction of its own, unseen by this
/// loop. So after every request the connection is asked whether a transaction is still open:
/// when it is not, the requests before in the batch lost their writes and are answered with
/// the error, the in-memory state goes back to the transaction's start, and the requests
/// after begin a new one.
pub(super) fn run_batch(w: &mut Writer, ops: Vec<Op>) {
    w.used = None;
    // Replies waiting for the commit of the open transaction, each with whether its request
    // changed the file: one that changed nothing (a claim, a read) loses nothing when the
    // commit fails.
    let mut waiting: Vec<(Reply, bool)> = Vec::with_capacity(ops.len());
    // The state when the open transaction began; `None` when none is open.
    let mut began: Option<Undo> = None;
    for op in ops {
        // Whether this request begins the transaction: it needs no savepoint then.
        let (start, first) = match began {
            Some(start) => (start, false),
            None => match run(&w.conn, "BEGIN IMMEDIATE") {
                Ok(()) => (*began.insert(w.undo_point()), true),
                Err(e) => {
                    tracing::error!(error = %e, "store: cannot begin a transaction");
                    let (_, reply) = op(Err(&e));
                    reply(Some(&e));
                    continue;
                }
            },
        };
        let before = w.undo_point();
        let changes = w.conn.total_changes();
        let (ok, reply) = if first {
            op(Ok(&mut *w))
        } else {
            match run(&w.conn, "SAVEPOINT op") {
                Ok(()) => op(Ok(&mut *w)),
                Err(e) => op(Err(&e)),
            }
        };
        let wrote = w.conn.total_changes() != changes;
        if !ok && !w.conn.is_autocommit() {
            // A failed request undoes its own writes only; it already holds its error.
            if first {
                // Its writes are all the transaction holds.
                let _ = w.conn.execute_batch("ROLLBACK");
                w.undo(start);
                if w.conn.is_autocommit() {
                    began = None;
                    reply(None);
                    continue;
                }
            } else {
                let _ = run(&w.conn, "ROLLBACK TO op");
                w.undo(before);
            }
        }
        if !first && !w.conn.is_autocommit() {
            let _ = run(&w.conn, "RELEASE op");
        }
        if w.conn.is_autocommit() {
            let e = StoreError::Db(
                "the transaction was rolled back by the database after an error".into(),
            );
            tracing::error!(
                requests = waiting.len() + 1,
                "store: {e}; the batch's writes so far are undone"
            );
            w.undo(start);
            began = None;
            answer(waiting.drain(..), Some(&e));
            reply(Some(&e));
            continue;
        }
        waiting.push((reply, wrote));
    }
    let Some(start) = began else {
        return;
    };
    let commit = run(&w.conn, "COMMIT").err();
    match &commit {
        None => {
            w.released.clear();
            w.marks.commit();
            if waiting.iter().any(|(_, wrote)| *wrote) {
                // Full: a wake-up is already waiting.
                let _ = w.checkpoint.try_send(());
            }
        }
        Some(e) => {
            tracing::error!(error = %e, "store: commit failed");
            // A failed COMMIT may leave the transaction open (busy) or rolled back (I/O).
            if !w.conn.is_autocommit() {
                let _ = w.conn.execute_batch("ROLLBACK");
            }
            w.undo(start);
        }
    }
    answer(waiting.into_iter(), commit.as_ref());
}

/// Answers requests whose transaction ended with `outcome`; those that changed nothing have
/// nothing to lose.
pub(super) fn answer(replies: impl Iterator<Item = (Reply, bool)>, outcome: Option<&StoreError>) {
    for (reply, wrote) in replies {
        reply(if wrote { outcome } else { None });
    }
}

/// Undo pages a request's savepoint keeps in memory before SQLite writes them to a temporary
/// file (its default: 64 KiB). At most 128 KiB − 1: when the pages move to the file, SQLite
/// writes what it held in one call, and its unix file layer writes at most 128 KiB − 1 bytes
/// per call (it masks the length to 17 bits), so a larger buffer is cut short, the write
/// reports a full disk, and SQLite rolls back the whole transaction — every request of the
/// batch. With a 1 MiB threshold that is what marking ~400 merged deliveries did during a
/// storm ("cannot commit - no transaction is active", and 503s).
pub(super) const STATEMENT_JOURNAL_SPILL: i32 = 120 * 1024;

/// Each request runs in a savepoint of its own, whose undo pages (the statement journal) SQLite
/// writes to a temporary file past 64 KiB: a batch of webhooks wrote two pages there for each
/// page of WAL, most of the writer's system time. A request that changes more than
/// [`STATEMENT_JOURNAL_SPILL`] still spills to the file, so memory stays bounded (in memory
/// without a bound, marking 16,384 merged deliveries held 35 MB). SQLite takes this setting
/// only before its first connection; once set, or too late, it is not tried again.
pub(super) fn keep_statement_journals_in_memory() {
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

/// Runs `f` in a savepoint of its own inside a request: when it fails, its writes alone are
/// undone and its error is returned inside `Ok`, the request's other writes standing. When
/// SQLite rolled the whole transaction back meanwhile, that is the request's error.
pub(super) fn aside<T>(
    w: &mut Writer,
    f: impl FnOnce(&mut Writer) -> Result<T, StoreError>,
) -> Result<Result<T, StoreError>, StoreError> {
    run(&w.conn, "SAVEPOINT aside")?;
    let marks = w.marks.point();
    let r = f(w);
    if w.conn.is_autocommit() {
        return Err(match r {
            Err(e) => e,
            Ok(_) => StoreError::Db("the transaction was rolled back by the database".into()),
        });
    }
    if r.is_err() {
        run(&w.conn, "ROLLBACK TO aside")?;
        w.marks.undo(marks);
        w.history_rows = None;
        w.history_aged_at = None;
    }
    run(&w.conn, "RELEASE aside")?;
    Ok(r)
}
