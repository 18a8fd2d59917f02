//! The delivery history in SQLite: table `history`, one JSON record per delivery with the
//! columns filters and updates look up by. Written on the store's writer thread like
//! everything else, so an update (read, change, write back) is atomic.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, Writer, db, ms};
use crate::store::StoreError;
use crate::store::history::{Delivery, DeliveryState, HistoryFilter, Retention, Update};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         INTEGER,                     -- the queued job, while known
    receiver    TEXT    NOT NULL,
    integration TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    alertnames  TEXT    NOT NULL,            -- JSON array, for the alertname filter
    adoptable   INTEGER NOT NULL DEFAULT 0,  -- a digest waiting for its job
    accepted_at INTEGER NOT NULL,            -- unix milliseconds
    record      TEXT    NOT NULL             -- the Delivery as JSON
);
CREATE INDEX IF NOT EXISTS history_job ON history (job);
CREATE INDEX IF NOT EXISTS history_accepted ON history (accepted_at);
CREATE INDEX IF NOT EXISTS history_adopt ON history (receiver, integration, adoptable);
"#;

fn encode(d: &Delivery) -> Result<String, StoreError> {
    serde_json::to_string(d).map_err(|e| StoreError::Db(e.to_string()))
}

fn decode(id: i64, raw: &str) -> Result<Delivery, StoreError> {
    let mut d: Delivery = serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
        id,
        message: e.to_string(),
    })?;
    // The row's id is the truth: a record is written once with its row, before the row has one.
    d.id = id;
    Ok(d)
}

/// Whether a record is a digest waiting for its job.
fn adoptable_flag(d: &Delivery) -> i64 {
    (d.job.is_none() && d.merged.is_some() && d.state == DeliveryState::Queued) as i64
}

/// Inserts a record, JSON and all, in one statement; its id is the row's.
fn insert(w: &mut Writer, d: &mut Delivery) -> Result<i64, StoreError> {
    let record = encode(d)?;
    w.conn
        .prepare_cached(
            "INSERT INTO history (job, receiver, integration, state, alertnames, adoptable, accepted_at, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            s.execute(params![
                d.job,
                d.receiver,
                d.integration,
                d.state.as_str(),
                serde_json::to_string(&d.alertnames).unwrap_or_default(),
                adoptable_flag(d),
                ms(d.accepted_at),
                record,
            ])
        })
        .map_err(db)?;
    d.id = w.conn.last_insert_rowid();
    if let Some(n) = &mut w.history_rows {
        *n += 1;
    }
    Ok(d.id)
}

fn write(conn: &Connection, d: &Delivery) -> Result<(), StoreError> {
    let record = encode(d)?;
    conn.prepare_cached(
        "UPDATE history SET job = ?2, state = ?3, adoptable = ?4, record = ?5 WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.id,
            d.job,
            d.state.as_str(),
            adoptable_flag(d),
            record
        ])
    })
    .map_err(db)?;
    Ok(())
}

/// Records in the table: counted once, then kept by the writer (see `Writer::history_rows`).
fn rows(w: &mut Writer) -> Result<u64, StoreError> {
    if let Some(n) = w.history_rows {
        return Ok(n);
    }
    let n = w
        .conn
        .query_row("SELECT count(*) FROM history", [], |r| r.get::<_, i64>(0))
        .map_err(db)?
        .max(0) as u64;
    w.history_rows = Some(n);
    Ok(n)
}

/// Drops records older than `keep.max_age`, then the oldest past `keep.max`: each costs what
/// it deletes, not what is kept.
fn prune(w: &mut Writer, keep: Retention, now: DateTime<Utc>) -> Result<(), StoreError> {
    let aged = w
        .conn
        .prepare_cached("DELETE FROM history WHERE accepted_at < ?1")
        .and_then(|mut s| s.execute(params![ms(keep.cutoff(now))]))
        .map_err(db)? as u64;
    let left = rows(w)?.saturating_sub(aged);
    w.history_rows = Some(left);
    let excess = left.saturating_sub(keep.max as u64);
    if excess > 0 {
        let n = w
            .conn
            .prepare_cached(
                "DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?1)",
            )
            .and_then(|mut s| s.execute(params![excess as i64]))
            .map_err(db)? as u64;
        w.history_rows = Some(left.saturating_sub(n));
    }
    Ok(())
}

fn newest_of_job(conn: &Connection, job: i64) -> Result<Option<Delivery>, StoreError> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, record FROM history WHERE job = ?1 ORDER BY id DESC LIMIT 1")
        .and_then(|mut s| {
            s.query_row(params![job], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db)?;
    row.map(|(id, raw)| decode(id, &raw)).transpose()
}

fn adoptable(conn: &Connection, d: &Delivery) -> Result<Option<Delivery>, StoreError> {
    let row: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT id, record FROM history WHERE receiver = ?1 AND integration = ?2 AND adoptable = 1
             ORDER BY id LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![d.receiver, d.integration], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(db)?;
    row.map(|(id, raw)| decode(id, &raw)).transpose()
}

/// [`SqliteStore::history_add`] inside a transaction already begun (the admission's, or its
/// own).
pub(super) fn add(
    w: &mut Writer,
    records: Vec<Delivery>,
    keep: Retention,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(records.len());
    for mut d in records {
        // The worker got there first (it delivered before the accept path recorded the job):
        // its record is the newer truth.
        if let Some(job) = d.job
            && let Some(found) = newest_of_job(&w.conn, job)?
        {
            ids.push(found.id);
            continue;
        }
        ids.push(insert(w, &mut d)?);
    }
    prune(w, keep, now)?;
    Ok(ids)
}

impl SqliteStore {
    pub async fn history_add(
        &self,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        self.call(move |w| add(w, records, keep, now)).await
    }

    pub async fn history_update(
        &self,
        updates: Vec<Update>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.call(move |w| {
            let mut inserted = false;
            for u in updates {
                if let Some(mut d) = newest_of_job(&w.conn, u.job)? {
                    d.apply(&u.change, now);
                    write(&w.conn, &d)?;
                    continue;
                }
                let Some(mut fresh) = u.or_insert else {
                    continue;
                };
                if let Some(mut d) = adoptable(&w.conn, &fresh)? {
                    d.job = Some(u.job);
                    d.apply(&u.change, now);
                    write(&w.conn, &d)?;
                    continue;
                }
                fresh.job = Some(u.job);
                fresh.apply(&u.change, now);
                insert(w, &mut fresh)?;
                inserted = true;
            }
            if inserted {
                prune(w, keep, now)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn history(&self, filter: HistoryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.call(move |w| {
            let mut stmt = w
                .conn
                .prepare(
                    "SELECT id, record FROM history
                     WHERE (?1 IS NULL OR receiver = ?1) AND (?2 IS NULL OR state = ?2)
                       AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(history.alertnames) WHERE value = ?3))
                     ORDER BY id DESC LIMIT ?4",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    params![
                        filter.receiver,
                        filter.state.map(DeliveryState::as_str),
                        filter.alertname,
                        filter.limit as i64
                    ],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, raw) = row.map_err(db)?;
                out.push(decode(id, &raw)?);
            }
            Ok(out)
        })
        .await
    }
}
