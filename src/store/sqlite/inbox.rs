//! The inbox: webhooks appended as received, each one body ([`super::bodies`]) and one small
//! row, in the accept path's group commit; routed, deduplicated and queued afterwards, in
//! arrival order, by a request that consumes them in the same transaction as the jobs and
//! history records it makes ([`SqliteStore::admit_inboxed`]). A job whose notification is
//! the body as appended reads that body: the notification is stored once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::admit::{admit_recorded_in, encode_admissions};
use super::bodies::{Packed, Written, delete, encode, insert, pack, unpack};
use super::writer::Writer;
use super::{SqliteStore, db, from_ms, ms};
use crate::store::history::{Delivery, Retention};
use crate::store::inbox::{Inboxed, Stored};
use crate::store::{Admission, Admitted, StoreError};
use crate::webhook::Notification;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY,         -- arrival order
    receiver    TEXT,                        -- the receiver the webhook's path named, if any
    received_at INTEGER NOT NULL,            -- unix milliseconds
    body        INTEGER NOT NULL             -- the notification (bodies.rs), held without a count
);
"#;

impl SqliteStore {
    /// Appends a validated notification as received; answers once committed. Refused
    /// ([`StoreError::Full`]) as a job would be: an appended webhook counts as a waiting job
    /// until it is routed.
    pub async fn append(
        &self,
        n: &Notification,
        receiver: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.append_json(encode(n)?.as_bytes(), receiver, now).await
    }

    /// [`SqliteStore::append`] of a notification already encoded ([`crate::webhook::Received`]).
    pub async fn append_json(
        &self,
        json: &[u8],
        receiver: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let packed: Packed = pack(json).into();
        let r = self
            .call(move |w| append_in(w, &packed, receiver.as_deref(), now))
            .await;
        self.wrote(r)
    }

    /// Webhooks appended and not routed yet.
    pub async fn inbox_len(&self) -> Result<u64, StoreError> {
        self.call(|w| {
            w.conn
                .prepare_cached("SELECT count(*) FROM inbox")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(|n| n.max(0) as u64)
                .map_err(db)
        })
        .await
    }

    /// The `limit` oldest appended webhooks, their notifications still packed.
    pub async fn inbox_take(&self, limit: usize) -> Result<Vec<Inboxed>, StoreError> {
        let rows = self
            .call(move |w| {
                let mut stmt = w
                    .conn
                    .prepare_cached(
                        "SELECT i.id, i.receiver, i.received_at, i.body, b.json
                         FROM inbox i LEFT JOIN bodies b ON b.body = i.body
                         ORDER BY i.id LIMIT ?1",
                    )
                    .map_err(db)?;
                let rows = stmt
                    .query_map([limit as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, rusqlite::types::Value>(4)?,
                        ))
                    })
                    .map_err(db)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?;
                Ok(rows)
            })
            .await?;
        // Decoded here, not on the writer thread.
        Ok(rows
            .into_iter()
            .map(|(id, receiver, received_at, body, stored)| {
                let packed: Packed = match &stored {
                    rusqlite::types::Value::Blob(b) => b.as_slice().into(),
                    _ => Packed::from(&[][..]),
                };
                let notification = unpack(stored)
                    .and_then(|json| {
                        json.ok_or_else(|| StoreError::Db("its body is missing".into()))
                    })
                    .and_then(|json| {
                        serde_json::from_str::<Notification>(&json)
                            .map_err(|e| StoreError::Db(format!("its body is damaged: {e}")))
                    })
                    .map_err(|e| e.to_string());
                Inboxed {
                    id,
                    receiver,
                    received_at: from_ms(received_at),
                    notification,
                    stored: Stored { body, packed },
                }
            })
            .collect())
    }

    /// The admissions made from `taken` (appended webhooks), with their history records, and
    /// `taken` consumed, in one transaction. An admission whose notification is a webhook's
    /// body as appended reads that body.
    pub(crate) async fn admit_inboxed(
        &self,
        taken: Vec<(i64, Stored)>,
        admissions: Vec<Admission>,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Admitted>, Option<StoreError>), StoreError> {
        let mut admissions = encode_admissions(admissions)?;
        let records = super::history::Encoded::all(records)?;
        let stored: HashMap<Packed, i64> = taken
            .iter()
            .map(|(_, s)| s)
            .filter(|s| !s.packed.is_empty())
            .map(|s| (s.packed.clone(), s.body))
            .collect();
        let mut seeds: Vec<(Packed, i64)> = Vec::new();
        for (packed, _) in &mut admissions {
            if let Some((same, &body)) = stored.get_key_value(packed) {
                *packed = same.clone();
                if !seeds.iter().any(|(_, b)| *b == body) {
                    seeds.push((same.clone(), body));
                }
            }
        }
        let (ids, bodies): (Vec<i64>, Vec<i64>) = taken.iter().map(|(id, s)| (*id, s.body)).unzip();
        let r = self
            .call_first(move |w| {
                w.live = w.live.saturating_sub(ids.len() as u64);
                let mut written = Written::seeded(&seeds);
                let (admitted, failed, spent) =
                    admit_recorded_in(w, admissions, records, keep, now, &mut written)?;
                for id in &ids {
                    w.conn
                        .prepare_cached("DELETE FROM inbox WHERE id = ?1")
                        .and_then(|mut s| s.execute([id]))
                        .map_err(db)?;
                }
                // A webhook holds its body without counting; a body no job took goes now.
                for body in &bodies {
                    if !seeds.iter().any(|(_, b)| b == body) || written.is_unread(*body) {
                        delete(&w.conn, *body)?;
                    }
                }
                Ok((admitted, failed, spent, seeds))
            })
            .await;
        self.wrote(r)
            .map(|(admitted, failed, _spent, _seeds)| (admitted, failed))
    }
}

/// [`SqliteStore::append`] on the writer thread.
fn append_in(
    w: &mut Writer,
    packed: &Packed,
    receiver: Option<&str>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    if w.live + 1 > w.capacity || w.over_size()? {
        return Err(StoreError::Full);
    }
    let body = insert(&w.conn, packed, 0)?;
    w.grew(packed.len());
    w.conn
        .prepare_cached("INSERT INTO inbox (receiver, received_at, body) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![receiver, ms(now), body]))
        .map_err(db)?;
    w.live += 1;
    Ok(w.conn.last_insert_rowid())
}

/// Appended webhooks in the file, counted as waiting jobs when the store is opened.
pub(super) fn count(conn: &rusqlite::Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))
}
