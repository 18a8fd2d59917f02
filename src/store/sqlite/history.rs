//! The delivery history in SQLite: table `history`, one JSON record per delivery with the
//! columns filters and updates look up by. Written on the store's writer thread like
//! everything else, so an update (read, change, write back) is atomic.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, db, ms};
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
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
        id,
        message: e.to_string(),
    })
}

fn insert(conn: &Connection, d: &mut Delivery) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO history (job, receiver, integration, state, alertnames, adoptable, accepted_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '')",
        params![
            d.job,
            d.receiver,
            d.integration,
            d.state.as_str(),
            serde_json::to_string(&d.alertnames).unwrap_or_default(),
            (d.job.is_none() && d.merged.is_some() && d.state == DeliveryState::Queued) as i64,
            ms(d.accepted_at),
        ],
    )
    .map_err(db)?;
    d.id = conn.last_insert_rowid();
    write(conn, d)?;
    Ok(d.id)
}

fn write(conn: &Connection, d: &Delivery) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE history SET job = ?2, state = ?3, adoptable = ?4, record = ?5 WHERE id = ?1",
        params![
            d.id,
            d.job,
            d.state.as_str(),
            (d.job.is_none() && d.merged.is_some() && d.state == DeliveryState::Queued) as i64,
            encode(d)?
        ],
    )
    .map_err(db)?;
    Ok(())
}

fn prune(conn: &Connection, keep: Retention, now: DateTime<Utc>) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM history WHERE accepted_at < ?1",
        params![ms(keep.cutoff(now))],
    )
    .map_err(db)?;
    conn.execute(
        "DELETE FROM history WHERE id <= (SELECT id FROM history ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        params![keep.max as i64],
    )
    .map_err(db)?;
    Ok(())
}

fn newest_of_job(conn: &Connection, job: i64) -> Result<Option<Delivery>, StoreError> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, record FROM history WHERE job = ?1 ORDER BY id DESC LIMIT 1",
            params![job],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    row.map(|(id, raw)| decode(id, &raw)).transpose()
}

fn adoptable(conn: &Connection, d: &Delivery) -> Result<Option<Delivery>, StoreError> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, record FROM history WHERE receiver = ?1 AND integration = ?2 AND adoptable = 1
             ORDER BY id LIMIT 1",
            params![d.receiver, d.integration],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    row.map(|(id, raw)| decode(id, &raw)).transpose()
}

/// [`SqliteStore::history_add`] inside a transaction already begun (the admission's, or its
/// own).
pub(super) fn add(
    conn: &Connection,
    records: Vec<Delivery>,
    keep: Retention,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(records.len());
    for mut d in records {
        // The worker got there first (it delivered before the accept path recorded the job):
        // its record is the newer truth.
        if let Some(job) = d.job
            && let Some(found) = newest_of_job(conn, job)?
        {
            ids.push(found.id);
            continue;
        }
        ids.push(insert(conn, &mut d)?);
    }
    prune(conn, keep, now)?;
    Ok(ids)
}

impl SqliteStore {
    pub async fn history_add(
        &self,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        self.call(move |w| add(&w.conn, records, keep, now)).await
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
                insert(&w.conn, &mut fresh)?;
                inserted = true;
            }
            if inserted {
                prune(&w.conn, keep, now)?;
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
