//! The dedupe state merged out of the log: sorted runs, as a log-structured merge tree keeps
//! them.
//!
//! Merging the log into one key-ordered table rewrote every page of that table at each merge
//! (32 Ki hashed keys land on every page of a table of a few hundred thousand): through three
//! 5-second bursts of distinct alerts, bytes written per accepted byte rose from 3.2 to 5.8 as
//! the table grew. Here each merge of the log writes a new run instead, its keys in order at
//! the end of table `dedupe_runs` (each page written once, full), and runs are merged with each
//! other only when [`FANOUT`] of one size are the newest: a key is rewritten about once per
//! eightfold growth of the state, not once per merge.
//!
//! A key's state is the newest run's that holds it (runs are ordered by the log rows they hold,
//! `upto`). Each run has a Bloom filter in memory (about 10 bits a key, built as the run is
//! written and again from the file at start), so a key absent from a run costs no read of it:
//! most keys looked up are new ones. A run is written over several steps between batches, each
//! in a transaction of its own (`building` in `dedupe_run_list`); it answers lookups once the
//! last step seals it. The runs it replaces are marked `gone` in the same commit and their
//! rows deleted a step at a time; a restart deletes what was being built. Merging drops the
//! expired keys; a run whose every key has expired is dropped whole.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::dedupe::{Entry, Key, key_of};
use super::writer::{Writer, run};
use super::{db, dedupe::MERGE_AT};
use crate::store::StoreError;

/// Runs of one size merged into one once this many of them are the newest (a key is rewritten
/// once per eightfold growth of the state).
pub(super) const FANOUT: usize = 8;

/// Rows a step of a merge of runs reads (from all the runs it merges), or deletes of a run
/// that is gone.
pub(super) const ROWS_STEP: usize = 1024;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS dedupe_runs (
    run        INTEGER NOT NULL,            -- dedupe_run_list.run
    key        BLOB    NOT NULL,            -- the key's digest (see dedupe.rs)
    value      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,            -- unix milliseconds; absent from then on
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe_run_list (
    run        INTEGER PRIMARY KEY,
    upto       INTEGER NOT NULL,            -- holds the log's latest states up to this seq
    keys       INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,            -- its latest expiry: wholly expired from then on
    state      TEXT    NOT NULL             -- building | sealed | gone
);
"#;

/// Bits of a run's filter per key: about 1 % of absent keys read the run.
const BLOOM_BITS_PER_KEY: usize = 10;
const BLOOM_PROBES: u64 = 7;

/// A Bloom filter over keys. A key is a digest already: its first 8 bytes are its hash.
#[derive(Debug)]
pub(super) struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    fn for_keys(n: usize) -> Bloom {
        Bloom {
            bits: vec![0; (n.max(1) * BLOOM_BITS_PER_KEY).div_ceil(64)],
        }
    }

    fn probes(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> + use<> {
        let m = self.bits.len() as u64 * 64;
        let step = hash.rotate_left(32) | 1;
        (0..BLOOM_PROBES).map(move |i| {
            let bit = hash.wrapping_add(i.wrapping_mul(step)) % m;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, hash: u64) {
        for (word, mask) in self.probes(hash) {
            self.bits[word] |= mask;
        }
    }

    fn may_hold(&self, hash: u64) -> bool {
        self.probes(hash)
            .all(|(word, mask)| self.bits[word] & mask != 0)
    }
}

/// A key's hash for the filters.
fn hash(key: &Key) -> u64 {
    let mut h = [0; 8];
    h.copy_from_slice(&key[..8]);
    u64::from_le_bytes(h)
}

#[cfg(test)]
impl Bloom {
    /// A filter of `keys`, and whether it may hold a key.
    pub(super) fn of(keys: impl Iterator<Item = String>) -> impl Fn(&str) -> bool {
        use super::dedupe::digest;
        let keys: Vec<Key> = keys.map(|k| digest(&k)).collect();
        let mut b = Bloom::for_keys(keys.len());
        for k in &keys {
            b.insert(hash(k));
        }
        move |k| b.may_hold(hash(&digest(k)))
    }
}

/// A sealed run.
#[derive(Debug)]
struct Run {
    id: i64,
    upto: i64,
    keys: usize,
    expires_at: i64,
    bloom: Bloom,
}

/// A run being written: its id, what it holds so far.
#[derive(Debug)]
pub(super) struct Building {
    id: i64,
    upto: i64,
    keys: usize,
    expires_at: i64,
    bloom: Bloom,
}

impl Building {
    /// Appends a key (in key order) to the run.
    fn append(&mut self, conn: &Connection, key: &Key, e: &Entry) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO dedupe_runs (run, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![self.id, &key[..], e.value, e.expires_at]))
        .map_err(db)?;
        self.bloom.insert(hash(key));
        self.keys += 1;
        self.expires_at = self.expires_at.max(e.expires_at);
        Ok(())
    }

    /// Seals the run in the open transaction (one holding no key is dropped instead).
    pub(super) fn seal(&self, conn: &Connection) -> Result<(), StoreError> {
        let sql = if self.keys == 0 {
            "DELETE FROM dedupe_run_list WHERE run = ?1"
        } else {
            "UPDATE dedupe_run_list SET state = 'sealed', keys = ?2, expires_at = ?3 WHERE run = ?1"
        };
        conn.prepare_cached(sql)
            .and_then(|mut s| {
                if self.keys == 0 {
                    s.execute(params![self.id])
                } else {
                    s.execute(params![self.id, self.keys as i64, self.expires_at])
                }
            })
            .map_err(db)?;
        Ok(())
    }

    fn sealed(self) -> Option<Run> {
        (self.keys > 0).then_some(Run {
            id: self.id,
            upto: self.upto,
            keys: self.keys,
            expires_at: self.expires_at,
            bloom: self.bloom,
        })
    }
}

/// A merge of runs under way: its inputs (oldest first) and how far each is read.
#[derive(Debug)]
struct Merging {
    out: Building,
    inputs: Vec<(i64, Option<Key>)>,
}

/// The runs, newest last, and the work on them under way.
#[derive(Debug, Default)]
pub(super) struct Runs {
    sealed: Vec<Run>,
    merging: Option<Merging>,
    /// Runs replaced or expired whose rows are still being deleted.
    gone: Vec<i64>,
    next_id: i64,
}

impl Runs {
    /// Reads the list back (at open): the sealed runs' filters rebuilt from their keys; what
    /// was being built when the process stopped is gone. Returns the runs and the newest log
    /// row they hold.
    pub(super) fn load(conn: &Connection) -> Result<(Runs, i64), rusqlite::Error> {
        conn.execute(
            "UPDATE dedupe_run_list SET state = 'gone' WHERE state = 'building'",
            [],
        )?;
        let mut runs = Runs::default();
        let list: Vec<(i64, i64, i64, i64, String)> = conn
            .prepare(
                "SELECT run, upto, keys, expires_at, state FROM dedupe_run_list ORDER BY upto, run",
            )?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut keys = conn.prepare("SELECT key FROM dedupe_runs WHERE run = ?1")?;
        for (id, upto, n, expires_at, state) in list {
            runs.next_id = runs.next_id.max(id + 1);
            if state != "sealed" {
                runs.gone.push(id);
                continue;
            }
            let mut bloom = Bloom::for_keys(n.max(0) as usize);
            let mut rows = keys.query([id])?;
            while let Some(row) = rows.next()? {
                if let Ok(k) = key_of(row, 0) {
                    bloom.insert(hash(&k));
                }
            }
            runs.sealed.push(Run {
                id,
                upto,
                keys: n.max(0) as usize,
                expires_at,
                bloom,
            });
        }
        let upto = runs.sealed.iter().map(|r| r.upto).max().unwrap_or(0);
        Ok((runs, upto))
    }

    /// A new run holding the log up to `upto`, for about `keys` keys, listed as `building`
    /// in the open transaction.
    pub(super) fn begin(
        &mut self,
        conn: &Connection,
        upto: i64,
        keys: usize,
    ) -> Result<Building, StoreError> {
        let id = self.next_id.max(1);
        conn.prepare_cached(
            "INSERT INTO dedupe_run_list (run, upto, keys, expires_at, state)
             VALUES (?1, ?2, 0, 0, 'building')",
        )
        .and_then(|mut s| s.execute(params![id, upto]))
        .map_err(db)?;
        self.next_id = id + 1;
        Ok(Building {
            id,
            upto,
            keys: 0,
            expires_at: 0,
            bloom: Bloom::for_keys(keys),
        })
    }

    /// A run sealed by a commit: it answers lookups from now on.
    pub(super) fn add_sealed(&mut self, b: Building) {
        if let Some(run) = b.sealed() {
            self.add(run);
        }
    }

    /// A run whose writing was given up: deleted like one that is gone.
    pub(super) fn gone_run(&mut self, b: Building) {
        self.gone.push(b.id);
    }

    /// Adds a sealed run in its place among the others.
    fn add(&mut self, run: Run) {
        let at = self.sealed.partition_point(|r| r.upto <= run.upto);
        self.sealed.insert(at, run);
    }
}

/// Appends `keys` (in key order, live) to `b`.
pub(super) fn append_all(
    conn: &Connection,
    b: &mut Building,
    keys: &[(Key, Entry)],
) -> Result<(), StoreError> {
    for (key, e) in keys {
        b.append(conn, key, e)?;
    }
    Ok(())
}

/// The newest state a run holds for `key`.
pub(super) fn lookup(w: &Writer, key: &Key) -> Result<Option<Entry>, StoreError> {
    let runs = &w.marks.runs;
    if runs.sealed.is_empty() {
        return Ok(None);
    }
    let hash = hash(key);
    for r in runs.sealed.iter().rev() {
        if !r.bloom.may_hold(hash) {
            continue;
        }
        let found = w
            .conn
            .prepare_cached("SELECT value, expires_at FROM dedupe_runs WHERE run = ?1 AND key = ?2")
            .and_then(|mut s| {
                let mut rows = s.query(params![r.id, &key[..]])?;
                rows.next()?
                    .map(|row| {
                        Ok(Entry {
                            value: row.get(0)?,
                            expires_at: row.get(1)?,
                        })
                    })
                    .transpose()
            })
            .map_err(db)?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Every key the runs hold, newest state each (for [`super::SqliteStore::state_size`]).
pub(super) fn all(w: &Writer) -> Result<std::collections::HashMap<Key, Entry>, StoreError> {
    let mut out = std::collections::HashMap::new();
    let mut stmt = w
        .conn
        .prepare_cached("SELECT key, value, expires_at FROM dedupe_runs WHERE run = ?1")
        .map_err(db)?;
    for r in &w.marks.runs.sealed {
        let rows = stmt
            .query_map([r.id], |row| {
                Ok((
                    key_of(row, 0)?,
                    Entry {
                        value: row.get(1)?,
                        expires_at: row.get(2)?,
                    },
                ))
            })
            .map_err(db)?;
        for row in rows {
            let (k, e) = row.map_err(db)?;
            out.insert(k, e);
        }
    }
    Ok(out)
}

/// The size class of a run of `keys` keys: runs of one class are merged [`FANOUT`] at a time.
fn tier(keys: usize) -> u32 {
    let mut bound = (MERGE_AT / 2).max(1) * FANOUT;
    let mut t = 0;
    while keys >= bound {
        t += 1;
        bound = bound.saturating_mul(FANOUT);
    }
    t
}

/// Takes one step of the work on the runs, if any is due, in a transaction of its own: a step
/// of the merge under way; else a step deleting a run that is gone; else a merge begun when the
/// [`FANOUT`] newest runs are of one size; else a run whose keys have all expired dropped.
/// Whether there was work. A step that fails changes nothing but a merge under way, which is
/// given up (its output deleted as gone; the runs it merged still answer) and begun again.
pub(super) fn step(w: &mut Writer) -> Result<bool, StoreError> {
    let now = w.marks.now;
    if let Some(mut m) = w.marks.runs.merging.take() {
        let inputs: Vec<i64> = m.inputs.iter().map(|(id, _)| *id).collect();
        let done = transaction(w, |w| {
            if !merge_rows(w, &mut m)? {
                return Ok(false);
            }
            m.out.seal(&w.conn)?;
            let mut gone = w
                .conn
                .prepare_cached("UPDATE dedupe_run_list SET state = 'gone' WHERE run = ?1")
                .map_err(db)?;
            for id in &inputs {
                gone.execute([id]).map_err(db)?;
            }
            Ok(true)
        });
        match done {
            Ok(true) => {
                let runs = &mut w.marks.runs;
                runs.sealed.retain(|r| !inputs.contains(&r.id));
                runs.gone.extend(inputs);
                if let Some(run) = m.out.sealed() {
                    runs.add(run);
                }
            }
            Ok(false) => w.marks.runs.merging = Some(m),
            Err(e) => {
                w.marks.runs.gone.push(m.out.id);
                return Err(e);
            }
        }
        return Ok(true);
    }
    if let Some(&id) = w.marks.runs.gone.first() {
        if transaction(w, |w| delete_step(w, id))? {
            w.marks.runs.gone.retain(|g| *g != id);
        }
        return Ok(true);
    }
    let n = w.marks.runs.sealed.len();
    if n >= FANOUT {
        let newest = &w.marks.runs.sealed[n - FANOUT..];
        let t = tier(newest[0].keys);
        if newest.iter().all(|r| tier(r.keys) == t) {
            let inputs: Vec<(i64, Option<Key>)> = newest.iter().map(|r| (r.id, None)).collect();
            let upto = newest.iter().map(|r| r.upto).max().unwrap_or(0);
            let keys = newest.iter().map(|r| r.keys).sum();
            let out = transaction(w, |w| w.marks.runs.begin(&w.conn, upto, keys))?;
            w.marks.runs.merging = Some(Merging { out, inputs });
            return Ok(true);
        }
    }
    if let Some(i) = w.marks.runs.sealed.iter().position(|r| r.expires_at <= now) {
        let id = w.marks.runs.sealed[i].id;
        transaction(w, |w| {
            w.conn
                .prepare_cached("UPDATE dedupe_run_list SET state = 'gone' WHERE run = ?1")
                .and_then(|mut s| s.execute([id]))
                .map_err(db)
        })?;
        w.marks.runs.sealed.remove(i);
        w.marks.runs.gone.push(id);
        return Ok(true);
    }
    Ok(false)
}

/// Runs `f` in a transaction of its own: committed when it succeeds, rolled back when not.
pub(super) fn transaction<T>(
    w: &mut Writer,
    f: impl FnOnce(&mut Writer) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run(&w.conn, "BEGIN IMMEDIATE")?;
    let r = f(w).and_then(|v| run(&w.conn, "COMMIT").map(|()| v));
    if r.is_err() && !w.conn.is_autocommit() {
        let _ = w.conn.execute_batch("ROLLBACK");
    }
    let _ = w.checkpoint.try_send(());
    r
}

/// Deletes up to [`ROWS_STEP`] rows of a run that is gone (or was being built); whether none
/// are left (its listing is deleted with the last).
fn delete_step(w: &mut Writer, id: i64) -> Result<bool, StoreError> {
    let deleted = w
        .conn
        .prepare_cached(
            "DELETE FROM dedupe_runs WHERE run = ?1 AND key IN
               (SELECT key FROM dedupe_runs WHERE run = ?1 ORDER BY key LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![id, ROWS_STEP as i64]))
        .map_err(db)?;
    if deleted < ROWS_STEP {
        w.conn
            .prepare_cached("DELETE FROM dedupe_run_list WHERE run = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(db)?;
        return Ok(true);
    }
    Ok(false)
}

/// Reads the next rows of the inputs and appends what is certain of to the output; whether
/// every input is read.
fn merge_rows(w: &mut Writer, m: &mut Merging) -> Result<bool, StoreError> {
    let now = w.marks.now;
    let per = (ROWS_STEP / m.inputs.len().max(1)).max(1);
    // Newest state of each key read, with the input (by age) it came from.
    let mut read: BTreeMap<Key, (usize, Entry)> = BTreeMap::new();
    let mut bound: Option<Key> = None;
    {
        let mut stmt = w
            .conn
            .prepare_cached(
                "SELECT key, value, expires_at FROM dedupe_runs
                 WHERE run = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
            )
            .map_err(db)?;
        for (age, (id, after)) in m.inputs.iter().enumerate() {
            let rows = stmt
                .query_map(
                    params![id, after.as_ref().map_or(&[][..], |k| &k[..]), per as i64],
                    |r| {
                        Ok((
                            key_of(r, 0)?,
                            Entry {
                                value: r.get(1)?,
                                expires_at: r.get(2)?,
                            },
                        ))
                    },
                )
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            if rows.len() == per
                && let Some((last, _)) = rows.last()
                && bound.as_ref().is_none_or(|b| last < b)
            {
                bound = Some(*last);
            }
            for (key, e) in rows {
                match read.get(&key) {
                    Some((older, _)) if *older > age => {}
                    _ => {
                        read.insert(key, (age, e));
                    }
                }
            }
        }
    }
    // Keys past the bound may have a newer state in an input not read that far yet.
    for (key, (_, e)) in &read {
        if bound.as_ref().is_some_and(|b| key > b) {
            break;
        }
        if e.expires_at > now {
            m.out.append(&w.conn, key, e)?;
        }
    }
    match bound {
        Some(b) => {
            for (_, after) in &mut m.inputs {
                *after = Some(b);
            }
            Ok(false)
        }
        None => Ok(true),
    }
}
