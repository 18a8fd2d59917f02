//! On-call records in SQLite: table `oncall_overrides`, with the meaning
//! [`crate::store::oncall`] gives it. The table is created on first use, so opening the store
//! needs nothing more.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{SqliteStore, db, from_ms, ms};
use crate::store::StoreError;
use crate::store::oncall::{KEEP_ENDED, NewOverride, Override};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS oncall_overrides (
    id        INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: a greater id is a later override
    schedule  TEXT    NOT NULL,
    person    TEXT    NOT NULL,
    replaces  TEXT,                              -- NULL: whoever is on call
    start_at  INTEGER NOT NULL,                  -- unix milliseconds
    end_at    INTEGER NOT NULL
);
"#;

impl SqliteStore {
    pub async fn override_add(
        &self,
        o: NewOverride,
        now: DateTime<Utc>,
    ) -> Result<Override, StoreError> {
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            w.conn
                .execute(
                    "DELETE FROM oncall_overrides WHERE end_at < ?1",
                    params![ms(now - KEEP_ENDED)],
                )
                .map_err(db)?;
            w.conn
                .execute(
                    "INSERT INTO oncall_overrides (schedule, person, replaces, start_at, end_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![o.schedule, o.person, o.replaces, ms(o.start), ms(o.end)],
                )
                .map_err(db)?;
            Ok(o.with_id(w.conn.last_insert_rowid()))
        })
        .await
    }

    pub async fn override_delete(&self, schedule: String, id: i64) -> Result<bool, StoreError> {
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            let n = w
                .conn
                .execute(
                    "DELETE FROM oncall_overrides WHERE id = ?1 AND schedule = ?2",
                    params![id, schedule],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    pub async fn overrides(&self, now: DateTime<Utc>) -> Result<Vec<Override>, StoreError> {
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            let mut stmt = w
                .conn
                .prepare_cached(
                    "SELECT id, schedule, person, replaces, start_at, end_at
                     FROM oncall_overrides WHERE end_at > ?1 ORDER BY id",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![ms(now)], |r| {
                    Ok(Override {
                        id: r.get(0)?,
                        schedule: r.get(1)?,
                        person: r.get(2)?,
                        replaces: r.get(3)?,
                        start: from_ms(r.get(4)?),
                        end: from_ms(r.get(5)?),
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }
}
