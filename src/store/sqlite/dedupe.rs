//! Dedupe state: keys taken once (`SET NX PX`), taken or extended, recalled, and forgotten
//! once expired.
//!
//! A key is a hash: kept in a B-tree ordered by key, every key taken would change a page at a
//! random place of it, and each commit would write one page per key (six per webhook, most of
//! the bytes the store wrote). So a key taken is appended to `dedupe_log` (in insertion order:
//! a group commit writes its last page or two) and held in memory ([`Marks`]) until the log
//! holds [`MERGE_AT`] keys; then the log is written out as a new sorted run
//! ([`super::dedupe_runs`]) and emptied. The run is written a slice of the key space at a time
//! ([`SLICE`] keys, in key order), then the log is emptied [`LOG_STEP`] rows at a time, each
//! step in a transaction of its own between two batches: no batch of webhooks waits for more
//! than one step (the whole merge at once held every request for ~100 ms, the p99 of a burst).
//! What the memory holds is exactly the log's latest entry per key, and where in the log it is:
//! it is read back from the log at start (so a kill -9 loses nothing committed, merging or
//! not), and follows every savepoint and commit that does not stand (see
//! [`super::writer::Undo`]). Lookups read the memory first, then the runs, newest first.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::dedupe_runs::{self, Building, Runs};
use super::writer::{Writer, run};
use super::{SqliteStore, db, ms};
use crate::store::{Mark, StoreError};

/// Keys in the log past which it is written out as a run: the memory holds at most about this
/// many keys (~100 bytes each).
pub(super) const MERGE_AT: usize = 32 * 1024;

/// Keys written to the run between two batches at most (a few ms of the writer's time): a slice
/// ends at a key chosen when the merge begins, and keys taken since are merged by the next.
pub(super) const SLICE: usize = 1024;

/// Rows of the log deleted between two batches once every slice is merged.
pub(super) const LOG_STEP: i64 = 4096;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS dedupe_log (
    seq        INTEGER PRIMARY KEY,         -- order of writing: the latest entry of a key holds
    key        TEXT    NOT NULL,
    value      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

/// One key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) value: i64,
    pub(super) expires_at: i64,
}

/// A key's latest state and its row of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Logged {
    entry: Entry,
    seq: i64,
}

/// A merge under way: the log up to row `upto` goes to a new run a slice at a time, then is
/// deleted a step at a time.
#[derive(Debug)]
struct Merging {
    upto: i64,
    /// The run being written (from the first slice on; `None` once sealed).
    run: Option<Building>,
    /// Where each slice but the first begins, in key order (the first begins before any key,
    /// the last ends after every key).
    starts: Vec<String>,
    /// The next slice to merge; past the last, the log is being emptied.
    next: usize,
    /// The log's rows up to this one are deleted (once every slice is merged).
    deleted: i64,
}

/// The keys of `dedupe_log`, latest state each, and how to go back to an earlier point.
#[derive(Debug, Default)]
pub(super) struct Marks {
    keys: HashMap<String, Logged>,
    /// What each change since the last commit replaced, oldest first.
    journal: Vec<(String, Option<Logged>)>,
    /// The `now` of the latest admission: entries expired by then are not counted.
    pub(super) now: i64,
    merging: Option<Merging>,
    /// The state merged out of the log.
    pub(super) runs: Runs,
}

impl Marks {
    /// Reads the runs and the log back (at open): the latest entry of each key the runs do not
    /// hold yet (rows a sealed run holds are deleted again, should the process have stopped
    /// before it emptied the log of them).
    pub(super) fn load(conn: &Connection) -> Result<Marks, rusqlite::Error> {
        let (runs, merged) = Runs::load(conn)?;
        let mut marks = Marks {
            runs,
            ..Marks::default()
        };
        let mut stmt =
            conn.prepare("SELECT key, value, expires_at, seq FROM dedupe_log ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Logged {
                    entry: Entry {
                        value: r.get(1)?,
                        expires_at: r.get(2)?,
                    },
                    seq: r.get(3)?,
                },
            ))
        })?;
        let mut emptied = true;
        for row in rows {
            let (key, logged) = row?;
            if logged.seq <= merged {
                emptied = false;
                continue;
            }
            marks.keys.insert(key, logged);
        }
        drop(stmt);
        if !emptied {
            marks.merging = Some(Merging {
                upto: merged,
                run: None,
                starts: Vec::new(),
                next: 1,
                deleted: 0,
            });
        }
        Ok(marks)
    }

    /// Where the journal is now (see [`Marks::undo`]).
    pub(super) fn point(&self) -> usize {
        self.journal.len()
    }

    /// Goes back to `to`: what SQLite undid is undone here too.
    pub(super) fn undo(&mut self, to: usize) {
        while self.journal.len() > to {
            let Some((key, before)) = self.journal.pop() else {
                break;
            };
            match before {
                Some(e) => {
                    self.keys.insert(key, e);
                }
                None => {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// The transaction committed: its changes stand.
    pub(super) fn commit(&mut self) {
        self.journal.clear();
    }

    fn set(&mut self, key: &str, logged: Logged) {
        let before = self.keys.insert(key.to_owned(), logged);
        self.journal.push((key.to_owned(), before));
    }

    /// Keys held, not expired at the latest admission's time.
    fn live(&self) -> impl Iterator<Item = &String> {
        self.keys
            .iter()
            .filter(|(_, l)| l.entry.expires_at > self.now)
            .map(|(k, _)| k)
    }
}

impl SqliteStore {
    pub async fn remember(&self, marks: Vec<Mark>, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.call(move |w| {
            at(w, now);
            for m in &marks {
                take_or_extend(w, m, now)?;
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
            keys.iter()
                .map(|k| {
                    Ok(current(w, k)?
                        .filter(|e| e.expires_at > ms(now))
                        .map(|e| e.value))
                })
                .collect()
        })
        .await
    }

    pub async fn state_size(&self) -> Result<u64, StoreError> {
        self.call(|w| {
            let now = w.marks.now;
            let mut all = dedupe_runs::all(w)?;
            for (k, l) in &w.marks.keys {
                all.insert(k.clone(), l.entry);
            }
            Ok(all.values().filter(|e| e.expires_at > now).count() as u64)
        })
        .await
    }
}

/// A key's state: the log's latest entry, else the newest run's (expired or not).
pub(super) fn current(w: &Writer, key: &str) -> Result<Option<Entry>, StoreError> {
    if let Some(l) = w.marks.keys.get(key) {
        return Ok(Some(l.entry));
    }
    dedupe_runs::lookup(w, key)
}

/// Appends a key's new state to the log and holds it.
fn write(w: &mut Writer, key: &str, e: Entry) -> Result<(), StoreError> {
    w.conn
        .prepare_cached("INSERT INTO dedupe_log (key, value, expires_at) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![key, e.value, e.expires_at]))
        .map_err(db)?;
    let seq = w.conn.last_insert_rowid();
    w.marks.set(key, Logged { entry: e, seq });
    Ok(())
}

/// The time of an admission: state expired by then is not counted, and is left out (from the
/// log) or deleted (from `dedupe`) by the next merge.
pub(super) fn at(w: &mut Writer, now: DateTime<Utc>) {
    w.marks.now = ms(now);
}

/// `SET NX PX`: takes the key if it is absent (or expired); whether it did.
pub(super) fn take(w: &mut Writer, m: &Mark, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let old = current(w, &m.key)?;
    if old.is_some_and(|e| e.expires_at > ms(now)) {
        return Ok(false);
    }
    let e = Entry {
        value: m.value,
        expires_at: ms(m.expires_at),
    };
    write(w, &m.key, e)?;
    Ok(true)
}

/// Takes the key if absent; otherwise keeps its value and extends its expiry.
pub(super) fn take_or_extend(
    w: &mut Writer,
    m: &Mark,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let old = current(w, &m.key)?;
    let e = match old {
        Some(old) => Entry {
            value: if old.expires_at <= ms(now) {
                m.value
            } else {
                old.value
            },
            expires_at: old.expires_at.max(ms(m.expires_at)),
        },
        None => Entry {
            value: m.value,
            expires_at: ms(m.expires_at),
        },
    };
    if old == Some(e) {
        return Ok(());
    }
    write(w, &m.key, e)
}

/// Takes the next step of the dedupe state's upkeep, in a transaction of its own before a
/// batch: when a merge of the log is under way or the log holds [`MERGE_AT`] keys, a slice of
/// the log written to the new run (after the last, the run is sealed and the memory forgets
/// what it took), or, once every slice is, [`LOG_STEP`] rows of what it took deleted from the
/// log, oldest first (a restart meanwhile deletes the rest); otherwise a step of the runs' own
/// upkeep ([`dedupe_runs::step`]). A step that fails leaves the log and the memory as they
/// were; a run it was writing is given up (deleted) and the merge begun again.
pub(super) fn maintain(w: &mut Writer) {
    if w.marks.merging.is_none() && w.marks.keys.len() >= MERGE_AT {
        w.marks.merging = Some(plan(&w.marks));
    }
    let step = match &w.marks.merging {
        Some(m) if m.next > m.starts.len() => empty_log(w),
        Some(_) => merge_slice(w),
        None => dedupe_runs::step(w).map(|_| ()),
    };
    if let Err(e) = step {
        tracing::warn!(error = %e, "store: cannot merge the dedupe log; tried again later");
        if !w.conn.is_autocommit() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        if let Some(m) = &mut w.marks.merging
            && let Some(run) = m.run.take()
        {
            w.marks.runs.gone_run(run);
            w.marks.merging = None;
        }
    }
}

/// A merge of the whole log as it is: slices of [`SLICE`] keys, in key order. Only the keys
/// where slices begin are put in their place (a quickselect for each, splitting the keys
/// around it), not all of them sorted.
fn plan(marks: &Marks) -> Merging {
    let mut keys: Vec<&String> = marks.live().collect();
    let at: Vec<usize> = (SLICE..keys.len()).step_by(SLICE).collect();
    place(&mut keys, 0, &at);
    Merging {
        upto: marks.keys.values().map(|l| l.seq).max().unwrap_or(0),
        run: None,
        starts: at.iter().map(|&i| keys[i].clone()).collect(),
        next: 0,
        deleted: 0,
    }
}

/// Puts in its sorted place each key of `keys` at the positions `at` (ascending, each
/// counted from `offset`, the position of `keys[0]` in the whole).
pub(super) fn place(keys: &mut [&String], offset: usize, at: &[usize]) {
    let Some(&mid) = at.get(at.len() / 2) else {
        return;
    };
    let (below, _, above) = keys.select_nth_unstable(mid - offset);
    place(below, offset, &at[..at.len() / 2]);
    place(above, mid + 1, &at[at.len() / 2 + 1..]);
}

/// Deletes the next [`LOG_STEP`] rows of what the merge took from the log; the last step ends
/// the merge.
fn empty_log(w: &mut Writer) -> Result<(), StoreError> {
    let Some(m) = &w.marks.merging else {
        return Ok(());
    };
    let to = m.upto.min(m.deleted.saturating_add(LOG_STEP));
    w.conn
        .prepare_cached("DELETE FROM dedupe_log WHERE seq <= ?1")
        .and_then(|mut s| s.execute([to]))
        .map_err(db)?;
    let _ = w.checkpoint.try_send(());
    if to >= m.upto {
        w.marks.merging = None;
    } else if let Some(m) = &mut w.marks.merging {
        m.deleted = to;
    }
    Ok(())
}

fn merge_slice(w: &mut Writer) -> Result<(), StoreError> {
    let Some(m) = &mut w.marks.merging else {
        return Ok(());
    };
    let (upto, last) = (m.upto, m.next >= m.starts.len());
    let from = m.next.checked_sub(1).and_then(|i| m.starts.get(i)).cloned();
    let to = m.starts.get(m.next).cloned();
    let now = w.marks.now;
    run(&w.conn, "BEGIN IMMEDIATE")?;
    let mut building = w.marks.merging.as_mut().and_then(|m| m.run.take());
    let b = match building.as_mut() {
        Some(b) => b,
        None => {
            let keys = w.marks.live().count();
            match w.marks.runs.begin(&w.conn, upto, keys) {
                Ok(b) => building.insert(b),
                Err(e) => return Err(e),
            }
        }
    };
    // The keys of the slice whose latest entry the merge took (a key taken again since has a
    // later one, merged by the next merge), live, in key order.
    let mut keys: Vec<(&String, &Entry)> = w
        .marks
        .keys
        .iter()
        .filter(|(k, l)| {
            l.seq <= upto
                && l.entry.expires_at > now
                && from.as_ref().is_none_or(|f| *k >= f)
                && to.as_ref().is_none_or(|t| *k < t)
        })
        .map(|(k, l)| (k, &l.entry))
        .collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let written = dedupe_runs::append_all(w, b, keys.into_iter())
        .and_then(|()| if last { b.seal(&w.conn) } else { Ok(()) })
        .and_then(|()| run(&w.conn, "COMMIT"));
    let _ = w.checkpoint.try_send(());
    if let Err(e) = written {
        if let (Some(m), Some(b)) = (&mut w.marks.merging, building) {
            m.run = Some(b);
        }
        return Err(e);
    }
    if last {
        // The run holds what the merge took: the log's rows of it are only deleted from here.
        if let Some(b) = building.take() {
            w.marks.runs.add_sealed(b);
        }
        w.marks.keys.retain(|_, l| l.seq > upto);
        w.marks.keys.shrink_to(MERGE_AT);
    }
    if let Some(m) = &mut w.marks.merging {
        m.run = building;
        m.next += 1;
    }
    Ok(())
}
