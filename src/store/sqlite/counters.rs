//! Counters with an expiry (rate limits, daily budgets) and the write that probes the disk.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db, ms};
use crate::store::StoreError;

impl SqliteStore {
    /// A small real write, so that [`SqliteStore::is_writable`] follows the disk even when
    /// nothing else is written.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let r = self
            .call(|w| {
                w.conn
                    .execute(
                        "INSERT OR REPLACE INTO counters (key, value, expires_at)
                         VALUES ('store:probe', 0, ?1)",
                        [ms(Utc::now() + chrono::Duration::minutes(1))],
                    )
                    .map_err(db)?;
                Ok(())
            })
            .await;
        self.wrote(r)
    }

    pub async fn add_counter(
        &self,
        key: String,
        by: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.call(move |w| {
            let now = ms(Utc::now());
            w.conn
                .execute(
                    "DELETE FROM counters WHERE key = ?1 AND expires_at <= ?2",
                    params![key, now],
                )
                .map_err(db)?;
            w.conn
                .query_row(
                    "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = value + ?2 RETURNING value",
                    params![key, by, ms(expires_at)],
                    |r| r.get(0),
                )
                .map_err(db)
        })
        .await
    }

    pub async fn take_counters(
        &self,
        keys: Vec<String>,
        by: i64,
        limit: Option<i64>,
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.call(move |w| {
            let now = ms(Utc::now());
            let mut drop_expired = w
                .conn
                .prepare_cached("DELETE FROM counters WHERE key = ?1 AND expires_at <= ?2")
                .map_err(db)?;
            let mut get = w
                .conn
                .prepare_cached("SELECT value FROM counters WHERE key = ?1")
                .map_err(db)?;
            let mut add = w
                .conn
                .prepare_cached(
                    "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = value + ?2",
                )
                .map_err(db)?;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                drop_expired.execute(params![key, now]).map_err(db)?;
                let value: i64 = get
                    .query_row(params![key], |r| r.get(0))
                    .optional()
                    .map_err(db)?
                    .unwrap_or(0);
                if limit.is_some_and(|l| value + by > l) {
                    out.push(false);
                    continue;
                }
                add.execute(params![key, by, ms(expires_at)]).map_err(db)?;
                out.push(true);
            }
            Ok(out)
        })
        .await
    }

    pub async fn counter(&self, key: String, now: DateTime<Utc>) -> Result<i64, StoreError> {
        self.call(move |w| {
            w.conn
                .query_row(
                    "SELECT value FROM counters WHERE key = ?1 AND expires_at > ?2",
                    params![key, ms(now)],
                    |r| r.get(0),
                )
                .optional()
                .map(|v| v.unwrap_or(0))
                .map_err(db)
        })
        .await
    }
}
