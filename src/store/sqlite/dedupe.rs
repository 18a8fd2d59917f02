//! Dedupe state: keys taken once (`SET NX PX`), taken or extended, recalled, and forgotten
//! once expired.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, db, ms};
use crate::store::{Mark, StoreError};

impl SqliteStore {
    pub async fn remember(&self, marks: Vec<Mark>, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.call(move |w| {
            for m in &marks {
                take_or_extend(&w.conn, m, now)?;
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
            let mut stmt = w
                .conn
                .prepare_cached("SELECT value FROM dedupe WHERE key = ?1 AND expires_at > ?2")
                .map_err(db)?;
            keys.iter()
                .map(|k| {
                    stmt.query_row(params![k, ms(now)], |r| r.get(0))
                        .optional()
                        .map_err(db)
                })
                .collect()
        })
        .await
    }

    pub async fn state_size(&self) -> Result<u64, StoreError> {
        self.call(|w| {
            w.conn
                .query_row("SELECT count(*) FROM dedupe", [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(db)
        })
        .await
    }
}

/// Forgets expired dedupe state.
pub(super) fn prune(conn: &Connection, now: DateTime<Utc>) -> Result<usize, StoreError> {
    conn.prepare_cached("DELETE FROM dedupe WHERE expires_at <= ?1")
        .and_then(|mut s| s.execute([ms(now)]))
        .map_err(db)
}

/// `SET NX PX`: takes the key if it is absent (or expired); whether it did.
pub(super) fn take(conn: &Connection, m: &Mark, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "INSERT INTO dedupe (key, value, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
             WHERE dedupe.expires_at <= ?4",
        )
        .and_then(|mut s| s.execute(params![m.key, m.value, ms(m.expires_at), ms(now)]))
        .map_err(db)?;
    Ok(n > 0)
}

/// Takes the key if absent; otherwise keeps its value and extends its expiry.
pub(super) fn take_or_extend(
    conn: &Connection,
    m: &Mark,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO dedupe (key, value, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET
           value = CASE WHEN dedupe.expires_at <= ?4 THEN excluded.value ELSE dedupe.value END,
           expires_at = max(dedupe.expires_at, excluded.expires_at)",
    )
    .and_then(|mut s| s.execute(params![m.key, m.value, ms(m.expires_at), ms(now)]))
    .map_err(db)?;
    Ok(())
}
