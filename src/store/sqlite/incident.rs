//! Incidents in SQLite: table `incidents`, one row per incident with the record as JSON and
//! the columns its lookups need, with the meaning [`crate::store::incident`] gives it. The
//! table is created on first use.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db, ms};
use crate::store::incident::{Incident, IncidentState, reference};
use crate::store::{NewJob, StoreError};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS incidents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    open_key    TEXT,                 -- receiver and groupKey while open; NULL once resolved
    version     INTEGER NOT NULL,     -- compare-and-set
    resolved_at INTEGER,              -- unix milliseconds
    body        TEXT    NOT NULL      -- the Incident as JSON
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open ON incidents (open_key);
"#;

fn encode(i: &Incident) -> Result<String, StoreError> {
    serde_json::to_string(i).map_err(|e| StoreError::Db(format!("cannot encode: {e}")))
}

/// Stores `next` if the stored incident is still at the version before it: false when another
/// change came first.
fn compare_and_set(conn: &rusqlite::Connection, next: &Incident) -> Result<bool, StoreError> {
    conn.execute_batch(SCHEMA).map_err(db)?;
    let resolved = next.state == IncidentState::Resolved;
    let n = conn
        .execute(
            "UPDATE incidents SET body = ?1, version = ?2, open_key = ?3, resolved_at = ?4
             WHERE id = ?5 AND version = ?6",
            params![
                encode(next)?,
                next.version as i64,
                (!resolved).then(|| next.open_key()),
                next.resolved_at.map(ms),
                next.id,
                (next.version - 1) as i64,
            ],
        )
        .map_err(db)?;
    Ok(n == 1)
}

fn decode(id: i64, body: &str) -> Result<Incident, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        id,
        message: e.to_string(),
    })
}

impl SqliteStore {
    pub async fn incident_open(&self, mut new: Incident) -> Result<(Incident, bool), StoreError> {
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            let key = new.open_key();
            let found: Option<(i64, String)> = w
                .conn
                .query_row(
                    "SELECT id, body FROM incidents WHERE open_key = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            if let Some((id, body)) = found {
                return Ok((decode(id, &body)?, false));
            }
            w.conn
                .execute(
                    "INSERT INTO incidents (open_key, version, body) VALUES (?1, 0, '{}')",
                    params![key],
                )
                .map_err(db)?;
            new.id = w.conn.last_insert_rowid();
            new.reference = reference(new.id);
            new.version = 0;
            w.conn
                .execute(
                    "UPDATE incidents SET body = ?1 WHERE id = ?2",
                    params![encode(&new)?, new.id],
                )
                .map_err(db)?;
            Ok((new, true))
        })
        .await
    }

    pub async fn incident_update(&self, incident: &Incident) -> Result<bool, StoreError> {
        let mut next = incident.clone();
        next.version = incident.version + 1;
        self.call(move |w| compare_and_set(&w.conn, &next)).await
    }

    pub async fn incident_commit(
        &self,
        incident: &Incident,
        done: Vec<i64>,
        then: Vec<NewJob>,
    ) -> Result<bool, StoreError> {
        let then = super::jobs::encode_jobs(then)?;
        let mut next = incident.clone();
        next.version = incident.version + 1;
        // One request of the writer: one savepoint, so the change and the jobs commit together.
        let r = self
            .call(move |w| {
                if !compare_and_set(&w.conn, &next)? {
                    return Ok(false);
                }
                super::jobs::complete_in(w, &done, &then)?;
                Ok(true)
            })
            .await;
        self.wrote(r)
    }

    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            let body: Option<String> = w
                .conn
                .query_row(
                    "SELECT body FROM incidents WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            body.map(|b| decode(id, &b)).transpose()
        })
        .await
    }

    pub async fn incident_of_group(&self, key: String) -> Result<Option<Incident>, StoreError> {
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            let found: Option<(i64, String)> = w
                .conn
                .query_row(
                    "SELECT id, body FROM incidents WHERE open_key = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            found.map(|(id, b)| decode(id, &b)).transpose()
        })
        .await
    }

    pub async fn incidents(&self, keep_since: DateTime<Utc>) -> Result<Vec<Incident>, StoreError> {
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            w.conn
                .execute(
                    "DELETE FROM incidents WHERE open_key IS NULL AND resolved_at < ?1",
                    params![ms(keep_since)],
                )
                .map_err(db)?;
            let mut stmt = w
                .conn
                .prepare_cached("SELECT id, body FROM incidents ORDER BY id DESC")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, body) = row.map_err(db)?;
                match decode(id, &body) {
                    Ok(i) => out.push(i),
                    Err(e) => {
                        tracing::warn!(incident = id, error = %e, "skipping an unreadable incident")
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
