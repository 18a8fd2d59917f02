//! Dedupe state: keys taken once (`SET NX PX`), taken or extended, recalled, and forgotten
//! once expired.
//!
//! A key is a hash: kept in a B-tree ordered by key, every key taken would change a page at a
//! random place of it, and each commit would write one page per key (six per webhook, most of
//! the bytes the store wrote). So a key taken is appended to `dedupe_log` (in insertion order:
//! a group commit writes its last page or two) and held in memory ([`Marks`]) until the log
//! holds [`MERGE_AT`] keys; then the log is merged into table `dedupe` in key order, in a
//! transaction of its own, and emptied. What the memory holds is exactly the log's latest
//! entry per key: it is read back from the log at start (so a kill -9 loses nothing
//! committed), and follows every savepoint and commit that does not stand (see
//! [`super::writer::Undo`]). Lookups read the memory first, then `dedupe`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::writer::{Writer, run};
use super::{SqliteStore, db, ms};
use crate::store::{Mark, StoreError};

/// Keys in the log past which it is merged into `dedupe`: the merge writes each page of
/// `dedupe` it touches once for all of them, and the memory holds at most about this many
/// keys (~100 bytes each).
pub(super) const MERGE_AT: usize = 32 * 1024;

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

/// The keys of `dedupe_log`, latest state each, and how to go back to an earlier point.
#[derive(Debug, Default)]
pub(super) struct Marks {
    keys: HashMap<String, Entry>,
    /// What each change since the last commit replaced, oldest first.
    journal: Vec<(String, Option<Entry>)>,
    /// The `now` of the latest admission: entries expired by then are not counted.
    now: i64,
}

impl Marks {
    /// Reads the log back (at open): the latest entry of each key.
    pub(super) fn load(conn: &Connection) -> Result<Marks, rusqlite::Error> {
        let mut marks = Marks::default();
        let mut stmt =
            conn.prepare("SELECT key, value, expires_at FROM dedupe_log ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (key, value, expires_at) = row?;
            marks.keys.insert(key, Entry { value, expires_at });
        }
        drop(stmt);
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

    fn set(&mut self, key: &str, e: Entry) {
        let before = self.keys.insert(key.to_owned(), e);
        self.journal.push((key.to_owned(), before));
    }

    /// Keys held, not expired at the latest admission's time.
    fn live(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.keys.iter().filter(|(_, e)| e.expires_at > self.now)
    }
}

impl SqliteStore {
    pub async fn remember(&self, marks: Vec<Mark>, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.call(move |w| {
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
            let merged = w
                .conn
                .query_row("SELECT count(*) FROM dedupe", [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(db)?;
            // Keys of the log that `dedupe` does not hold (an older state) too.
            let mut held = w
                .conn
                .prepare_cached("SELECT 1 FROM dedupe WHERE key = ?1")
                .map_err(db)?;
            let mut unmerged = 0u64;
            for (key, _) in w.marks.live() {
                if !held.exists([key]).map_err(db)? {
                    unmerged += 1;
                }
            }
            Ok(merged + unmerged)
        })
        .await
    }
}

/// A key's state: the log's latest entry, else `dedupe`'s (expired or not).
fn current(w: &Writer, key: &str) -> Result<Option<Entry>, StoreError> {
    if let Some(e) = w.marks.keys.get(key) {
        return Ok(Some(*e));
    }
    w.conn
        .prepare_cached("SELECT value, expires_at FROM dedupe WHERE key = ?1")
        .and_then(|mut s| {
            s.query_row([key], |r| {
                Ok(Entry {
                    value: r.get(0)?,
                    expires_at: r.get(1)?,
                })
            })
            .optional()
        })
        .map_err(db)
}

/// Appends a key's new state to the log and holds it.
fn write(w: &mut Writer, key: &str, e: Entry) -> Result<(), StoreError> {
    w.conn
        .prepare_cached("INSERT INTO dedupe_log (key, value, expires_at) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![key, e.value, e.expires_at]))
        .map_err(db)?;
    w.marks.set(key, e);
    Ok(())
}

/// Forgets expired dedupe state (in `dedupe`; the log's expired entries are left out when it
/// is merged).
pub(super) fn prune(w: &mut Writer, now: DateTime<Utc>) -> Result<usize, StoreError> {
    w.marks.now = ms(now);
    w.conn
        .prepare_cached("DELETE FROM dedupe WHERE expires_at <= ?1")
        .and_then(|mut s| s.execute([ms(now)]))
        .map_err(db)
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

/// Merges the log into `dedupe` once it holds [`MERGE_AT`] keys, in key order (each page of
/// `dedupe` touched is written once for all the keys it takes), in a transaction of its own
/// before a batch; empties the log and the memory when it commits. A merge that fails leaves
/// both as they were, to be tried before the next batch.
pub(super) fn merge_if_full(w: &mut Writer) {
    if w.marks.keys.len() < MERGE_AT {
        return;
    }
    if let Err(e) = merge(w) {
        tracing::warn!(error = %e, "store: cannot merge the dedupe log; tried again later");
        if !w.conn.is_autocommit() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
    }
}

fn merge(w: &mut Writer) -> Result<(), StoreError> {
    let now = w.marks.now;
    let mut keys: Vec<(&String, &Entry)> = w
        .marks
        .keys
        .iter()
        .filter(|(_, e)| e.expires_at > now)
        .collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    run(&w.conn, "BEGIN IMMEDIATE")?;
    {
        let mut upsert = w
            .conn
            .prepare_cached(
                "INSERT INTO dedupe (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                   expires_at = excluded.expires_at",
            )
            .map_err(db)?;
        for (key, e) in keys {
            upsert
                .execute(params![key, e.value, e.expires_at])
                .map_err(db)?;
        }
    }
    run(&w.conn, "DELETE FROM dedupe_log")?;
    run(&w.conn, "COMMIT")?;
    w.marks.keys.clear();
    w.marks.keys.shrink_to(MERGE_AT);
    w.marks.journal.clear();
    let _ = w.checkpoint.try_send(());
    Ok(())
}
