//! Chatops records in SQLite: tables `chatops_refs` (one row per group reference) and
//! `chatops_subscribers`, with the meaning [`crate::store::chatops`] gives them. Written on
//! the store's writer thread like everything else, so a touch (read, change, write back) is
//! atomic.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db, from_ms, ms};
use crate::store::StoreError;
use crate::store::chatops::{
    REF_LEN, RESOLVED_GRACE, RefRecord, STALE_AFTER, Subscriber, Touch, new_reference,
};
use crate::webhook::Ack;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS chatops_refs (
    ref         TEXT PRIMARY KEY,
    receiver    TEXT    NOT NULL,
    group_key   TEXT    NOT NULL,
    labels      TEXT    NOT NULL,            -- the group's common labels, JSON object
    alerts      TEXT    NOT NULL,            -- label sets of its firing alerts, JSON array
    recipients  TEXT    NOT NULL,            -- user ids it was pushed to, JSON array
    created_at  INTEGER NOT NULL,            -- unix milliseconds
    updated_at  INTEGER NOT NULL,
    resolved_at INTEGER,                     -- NULL while firing
    ack_by      TEXT,
    ack_at      INTEGER,
    UNIQUE (receiver, group_key)
);
CREATE TABLE IF NOT EXISTS chatops_subscribers (
    uid           TEXT    NOT NULL,
    extra         TEXT    NOT NULL,          -- the QR code's parameter; '' for the plain code
    subscribed_at INTEGER NOT NULL,
    PRIMARY KEY (uid, extra)
);
"#;

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Db(format!("cannot encode: {e}")))
}

const SELECT: &str = "SELECT ref, receiver, group_key, labels, alerts, recipients, resolved_at,
    ack_by, ack_at FROM chatops_refs";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefRecord> {
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let ack_by: Option<String> = r.get(7)?;
    let ack_at: Option<i64> = r.get(8)?;
    Ok(RefRecord {
        reference: text(0)?,
        receiver: text(1)?,
        group_key: text(2)?,
        // A row this module wrote; an unreadable one reads as empty rather than failing all.
        labels: serde_json::from_str(&text(3)?).unwrap_or_default(),
        alerts: serde_json::from_str(&text(4)?).unwrap_or_default(),
        recipients: serde_json::from_str(&text(5)?).unwrap_or_default(),
        resolved_at: r.get::<_, Option<i64>>(6)?.map(from_ms),
        ack: match (ack_by, ack_at) {
            (Some(by), Some(at)) => Some(Ack {
                by,
                at: from_ms(at),
            }),
            _ => None,
        },
    })
}

impl SqliteStore {
    pub async fn chatops_touch(&self, t: Touch) -> Result<Option<RefRecord>, StoreError> {
        self.call(move |w| {
            let conn = &w.conn;
            let now = ms(t.now);
            conn.execute(
                "DELETE FROM chatops_refs WHERE resolved_at < ?1 OR updated_at < ?2",
                params![ms(t.now - RESOLVED_GRACE), ms(t.now - STALE_AFTER)],
            )
            .map_err(db)?;
            let existing = conn
                .query_row(
                    &format!("{SELECT} WHERE receiver = ?1 AND group_key = ?2"),
                    params![t.receiver, t.group_key],
                    read_row,
                )
                .optional()
                .map_err(db)?;
            let Some(mut rec) = existing else {
                if !t.firing {
                    return Ok(None);
                }
                // Retried on the rare collision; longer references if the space is crowded.
                let mut attempt = 0;
                let reference = loop {
                    let len = if attempt < 20 { REF_LEN } else { REF_LEN + 1 };
                    let r = new_reference(len);
                    let taken: bool = conn
                        .query_row(
                            "SELECT EXISTS (SELECT 1 FROM chatops_refs WHERE ref = ?1)",
                            [&r],
                            |row| row.get(0),
                        )
                        .map_err(db)?;
                    if !taken {
                        break r;
                    }
                    attempt += 1;
                };
                conn.execute(
                    "INSERT INTO chatops_refs (ref, receiver, group_key, labels, alerts, recipients,
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    params![
                        reference,
                        t.receiver,
                        t.group_key,
                        json(&t.labels)?,
                        json(&t.alerts)?,
                        json(&t.recipients)?,
                        now
                    ],
                )
                .map_err(db)?;
                return Ok(Some(RefRecord {
                    reference,
                    receiver: t.receiver,
                    group_key: t.group_key,
                    labels: t.labels,
                    alerts: t.alerts,
                    recipients: t.recipients,
                    resolved_at: None,
                    ack: None,
                }));
            };
            for r in t.recipients {
                if !rec.recipients.contains(&r) {
                    rec.recipients.push(r);
                }
            }
            if t.firing {
                // Firing again after it resolved: an old acknowledgement no longer holds.
                if rec.resolved_at.is_some() {
                    rec.ack = None;
                }
                rec.resolved_at = None;
                rec.labels = t.labels;
                rec.alerts = t.alerts;
            } else if rec.resolved_at.is_none() {
                rec.resolved_at = Some(t.now);
            }
            conn.execute(
                "UPDATE chatops_refs SET labels = ?2, alerts = ?3, recipients = ?4, updated_at = ?5,
                 resolved_at = ?6, ack_by = ?7, ack_at = ?8 WHERE ref = ?1",
                params![
                    rec.reference,
                    json(&rec.labels)?,
                    json(&rec.alerts)?,
                    json(&rec.recipients)?,
                    now,
                    rec.resolved_at.map(ms),
                    rec.ack.as_ref().map(|a| a.by.clone()),
                    rec.ack.as_ref().map(|a| ms(a.at)),
                ],
            )
            .map_err(db)?;
            Ok(Some(rec))
        })
        .await
    }

    pub async fn chatops_ref(
        &self,
        reference: String,
        now: DateTime<Utc>,
    ) -> Result<Option<RefRecord>, StoreError> {
        self.call(move |w| {
            w.conn
                .query_row(
                    &format!(
                        "{SELECT} WHERE ref = ?1 AND (resolved_at IS NULL OR resolved_at >= ?2)"
                    ),
                    params![reference, ms(now - RESOLVED_GRACE)],
                    read_row,
                )
                .optional()
                .map_err(db)
        })
        .await
    }

    pub async fn chatops_ack(&self, reference: String, ack: Ack) -> Result<bool, StoreError> {
        self.call(move |w| {
            w.conn
                .execute(
                    "UPDATE chatops_refs SET ack_by = ?2, ack_at = ?3 WHERE ref = ?1",
                    params![reference, ack.by, ms(ack.at)],
                )
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }

    pub async fn chatops_firing(&self) -> Result<Vec<RefRecord>, StoreError> {
        self.call(|w| {
            let mut stmt = w
                .conn
                .prepare_cached(&format!(
                    "{SELECT} WHERE resolved_at IS NULL ORDER BY created_at"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], read_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    pub async fn subscriber_add(
        &self,
        uid: String,
        extra: String,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.call(move |w| {
            w.conn
                .execute(
                    "INSERT INTO chatops_subscribers (uid, extra, subscribed_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (uid, extra) DO UPDATE SET subscribed_at = ?3",
                    params![uid, extra, ms(at)],
                )
                .map(|_| ())
                .map_err(db)
        })
        .await
    }

    pub async fn subscriber_list(&self) -> Result<Vec<Subscriber>, StoreError> {
        self.call(move |w| {
            let mut stmt = w
                .conn
                .prepare_cached(
                    "SELECT uid, extra, subscribed_at FROM chatops_subscribers
                     ORDER BY subscribed_at, uid, extra",
                )
                .map_err(db)?;
            stmt.query_map([], |r| {
                Ok(Subscriber {
                    uid: r.get(0)?,
                    extra: r.get(1)?,
                    subscribed_at: from_ms(r.get(2)?),
                })
            })
            .map_err(db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)
        })
        .await
    }

    pub async fn subscriber_remove(&self, uid: String) -> Result<usize, StoreError> {
        self.call(move |w| {
            w.conn
                .execute("DELETE FROM chatops_subscribers WHERE uid = ?1", [uid])
                .map_err(db)
        })
        .await
    }

    pub async fn subscribers(&self, tags: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.call(move |w| {
            let mut stmt = w
                .conn
                .prepare_cached(
                    "SELECT uid FROM chatops_subscribers WHERE extra = ?1 ORDER BY subscribed_at, uid",
                )
                .map_err(db)?;
            let mut out: Vec<String> = Vec::new();
            for tag in &tags {
                let uids = stmt
                    .query_map([tag], |r| r.get::<_, String>(0))
                    .map_err(db)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?;
                for u in uids {
                    if !out.contains(&u) {
                        out.push(u);
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    // References, acknowledgements, their expiry and the listing of subscribers by tag are
    // tested on both backends in tests/it/store.rs; here, only that the file keeps them.

    #[tokio::test]
    async fn subscribers_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 10).unwrap();
        store
            .subscriber_add("U1".into(), "team-db".into(), Utc::now())
            .await
            .unwrap();
        drop(store);
        let store = Store::open(dir.path(), 10).unwrap();
        assert_eq!(
            store.subscribers(vec!["team-db".into()]).await.unwrap(),
            ["U1"]
        );
    }
}
