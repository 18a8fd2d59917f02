//! Dedupe state: keys taken once (`SET NX PX`), taken or extended, recalled, and forgotten
//! once expired.
//!
//! The store never gives a key back, so it keeps each as its [`digest`]: 16 bytes, not the
//! 36–41 characters of its text (a row of the log or of a run went from about 60 bytes to 38,
//! and a key held in memory from about 100 bytes to 40).
//!
//! A key is a hash: kept in a B-tree ordered by key, every key taken would change a page at a
//! random place of it, and each commit would write one page per key (six per webhook, most of
//! the bytes the store wrote). So a key taken is appended to `dedupe_log` (in insertion order:
//! a group commit writes its last page or two) and held in memory ([`Marks`]) until the log
//! holds [`MERGE_AT`] keys; then the log is written out as a new sorted run
//! ([`super::dedupe_runs`]) and emptied. When the merge begins its keys are put in buckets by
//! their first bits (one pass, no comparison: keys are digests, evenly spread); the run is written
//! [`SLICE`] of them at a time in key order, each bucket sorted when the first slice reaches it
//! (scanning every key held for each slice made a slice take 11 ms at the median); then the log
//! is emptied [`LOG_STEP`] rows at a time, each step in a transaction of its own between two
//! batches: no batch of webhooks waits for more than one step (the whole merge at once held every request for ~100 ms, the p99 of a burst).
//! What the memory holds is exactly the log's latest entry per key, and where in the log it is:
//! it is read back from the log at start (so a kill -9 loses nothing committed, merging or
//! not), and follows every savepoint and commit that does not stand (see
//! [`super::writer::Undo`]). Lookups read the memory first, then the runs, newest first.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSqlError, ValueRef};
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

use super::dedupe_runs::{self, Building, Runs};
use super::writer::{Writer, run};
use super::{SqliteStore, db, ms};
use crate::store::{Mark, StoreError};

/// Keys in the log past which it is written out as a run: the memory holds at most about this
/// many keys (~40 bytes each, twice that while they are merged).
pub(super) const MERGE_AT: usize = 32 * 1024;

/// Keys written to the run between two batches at most (a ms or two of the writer's time): the
/// merge takes the keys held when it begins, and keys taken since are merged by the next.
pub(super) const SLICE: usize = 1024;

/// Rows of the log deleted between two batches once every slice is merged.
pub(super) const LOG_STEP: i64 = 4096;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS dedupe_log (
    seq        INTEGER PRIMARY KEY,         -- order of writing: the latest entry of a key holds
    key        BLOB    NOT NULL,            -- the key's digest (text in older stores, read as its digest)
    value      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

/// A key as the store keeps it: its digest.
pub(super) type Key = [u8; 16];

/// The first 16 bytes of the key's SHA-256: two keys share a digest with a chance of about one
/// in 2^128 (the keys are themselves hashes of labels, which no sender chooses to collide).
pub(super) fn digest(key: &str) -> Key {
    digest_of(key.as_bytes())
}

/// [`digest`] of a key's bytes (a text key as SQLite holds it).
pub(super) fn digest_of(key: &[u8]) -> Key {
    let mut k = Key::default();
    k.copy_from_slice(&Sha256::digest(key)[..16]);
    k
}

/// The key in column `i` of a row: its digest, or the text an older store wrote, digested.
pub(super) fn key_of(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Key> {
    let v = row.get_ref(i)?;
    let bad = |e| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e));
    match v {
        ValueRef::Blob(b) => Key::try_from(b).map_err(|_| {
            bad(FromSqlError::InvalidBlobSize {
                expected_size: 16,
                blob_size: b.len(),
            })
        }),
        ValueRef::Text(t) => Ok(digest_of(t)),
        _ => Err(bad(FromSqlError::InvalidType)),
    }
}

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
    /// What the merge takes, live keys as they were when it began (a key taken again since
    /// has a later entry, which the memory answers with and the next merge takes), in buckets.
    sorted: Buckets,
    /// Keys of `sorted` written to the run so far.
    written: usize,
    /// The run is sealed: the log is being emptied.
    emptying: bool,
    /// The log's rows up to this one are deleted (once every slice is merged).
    deleted: i64,
}

/// The keys of `dedupe_log`, latest state each, and how to go back to an earlier point.
#[derive(Debug, Default)]
pub(super) struct Marks {
    keys: HashMap<Key, Logged>,
    /// What each change since the last commit replaced, oldest first.
    journal: Vec<(Key, Option<Logged>)>,
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
                key_of(r, 0)?,
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
                sorted: Buckets::default(),
                written: 0,
                emptying: true,
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

    fn set(&mut self, key: Key, logged: Logged) {
        let before = self.keys.insert(key, logged);
        self.journal.push((key, before));
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
                    Ok(current(w, &digest(k))?
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
                all.insert(*k, l.entry);
            }
            Ok(all.values().filter(|e| e.expires_at > now).count() as u64)
        })
        .await
    }
}

/// A key's state: the log's latest entry, else the newest run's (expired or not).
pub(super) fn current(w: &Writer, key: &Key) -> Result<Option<Entry>, StoreError> {
    if let Some(l) = w.marks.keys.get(key) {
        return Ok(Some(l.entry));
    }
    dedupe_runs::lookup(w, key)
}

/// Appends a key's new state to the log and holds it.
fn write(w: &mut Writer, key: Key, e: Entry) -> Result<(), StoreError> {
    w.conn
        .prepare_cached("INSERT INTO dedupe_log (key, value, expires_at) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![&key[..], e.value, e.expires_at]))
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
    let key = digest(&m.key);
    let old = current(w, &key)?;
    if old.is_some_and(|e| e.expires_at > ms(now)) {
        return Ok(false);
    }
    let e = Entry {
        value: m.value,
        expires_at: ms(m.expires_at),
    };
    write(w, key, e)?;
    Ok(true)
}

/// Takes the key if absent; otherwise keeps its value and extends its expiry.
pub(super) fn take_or_extend(
    w: &mut Writer,
    m: &Mark,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = digest(&m.key);
    let old = current(w, &key)?;
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
    write(w, key, e)
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
        Some(m) if m.emptying => empty_log(w),
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

/// A merge of the whole log as it is: its live keys in buckets, written [`SLICE`] at a time.
fn plan(marks: &Marks) -> Merging {
    let live = marks
        .keys
        .iter()
        .filter(|(_, l)| l.entry.expires_at > marks.now)
        .map(|(k, l)| (*k, l.entry));
    Merging {
        upto: marks.keys.values().map(|l| l.seq).max().unwrap_or(0),
        run: None,
        sorted: Buckets::of(live.collect()),
        written: 0,
        emptying: false,
        deleted: 0,
    }
}

/// Keys in buckets by their first bits, the buckets in key order, each sorted when first
/// needed: a bucket sort whose buckets are sorted one slice at a time.
#[derive(Debug, Default)]
pub(super) struct Buckets {
    keys: Vec<(Key, Entry)>,
    /// Where each bucket begins in `keys`, and the end.
    bounds: Vec<usize>,
    /// Buckets sorted so far.
    ready: usize,
}

impl Buckets {
    /// `keys` in about one bucket per [`SLICE`] keys (a power of two, by the keys' first
    /// bits, big-endian: the order of their bytes).
    pub(super) fn of(keys: Vec<(Key, Entry)>) -> Buckets {
        let n = keys.len();
        let buckets = n.div_ceil(SLICE).max(1).next_power_of_two();
        let bits = buckets.trailing_zeros();
        let bucket = |k: &Key| {
            let mut top = [0; 8];
            top.copy_from_slice(&k[..8]);
            u64::from_be_bytes(top).checked_shr(64 - bits).unwrap_or(0) as usize
        };
        let mut bounds = vec![0; buckets + 1];
        for (k, _) in &keys {
            bounds[bucket(k) + 1] += 1;
        }
        for i in 1..bounds.len() {
            bounds[i] += bounds[i - 1];
        }
        let mut at = bounds.clone();
        let mut placed = vec![
            (
                Key::default(),
                Entry {
                    value: 0,
                    expires_at: 0
                }
            );
            n
        ];
        for e in keys {
            let b = bucket(&e.0);
            placed[at[b]] = e;
            at[b] += 1;
        }
        Buckets {
            keys: placed,
            bounds,
            ready: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys at positions `from..to` of the sorted whole (the buckets they fall in sorted
    /// first, if they were not).
    pub(super) fn sorted(&mut self, from: usize, to: usize) -> &[(Key, Entry)] {
        while self.ready + 1 < self.bounds.len() && self.bounds[self.ready] < to {
            let (a, b) = (self.bounds[self.ready], self.bounds[self.ready + 1]);
            self.keys[a..b].sort_unstable_by_key(|(k, _)| *k);
            self.ready += 1;
        }
        &self.keys[from.min(self.keys.len())..to.min(self.keys.len())]
    }
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
    let upto = m.upto;
    let (from, to) = (m.written, m.sorted.len().min(m.written + SLICE));
    let last = to == m.sorted.len();
    run(&w.conn, "BEGIN IMMEDIATE")?;
    let mut building = m.run.take();
    let b = match building.as_mut() {
        Some(b) => b,
        None => match w.marks.runs.begin(&w.conn, upto, m.sorted.len()) {
            Ok(b) => building.insert(b),
            Err(e) => return Err(e),
        },
    };
    let written = dedupe_runs::append_all(&w.conn, b, m.sorted.sorted(from, to))
        .and_then(|()| if last { b.seal(&w.conn) } else { Ok(()) })
        .and_then(|()| run(&w.conn, "COMMIT"));
    let _ = w.checkpoint.try_send(());
    if let Err(e) = written {
        m.run = building;
        return Err(e);
    }
    m.written = to;
    if !last {
        m.run = building;
        return Ok(());
    }
    // The run holds what the merge took: the log's rows of it are only deleted from here.
    m.emptying = true;
    m.sorted = Buckets::default();
    if let Some(b) = building {
        w.marks.runs.add_sealed(b);
    }
    w.marks.keys.retain(|_, l| l.seq > upto);
    w.marks.keys.shrink_to(MERGE_AT);
    Ok(())
}
