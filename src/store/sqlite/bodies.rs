//! Notification bodies: each accepted notification's JSON stored once, in table `bodies`,
//! and read by every job and history record made from it (the integrations of a receiver,
//! and the deliveries' records), instead of a copy in each row. A body counts the rows that
//! read it (`refs`) and is deleted with the last of them.
//!
//! Encoding happens on the caller's task ([`Encoder`]): a notification shared by several jobs
//! (one `Arc`) is encoded once for all of them.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::db;
use crate::store::StoreError;
use crate::webhook::Notification;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS bodies (
    body INTEGER PRIMARY KEY,
    json TEXT    NOT NULL,                   -- the Notification as JSON
    refs INTEGER NOT NULL                    -- jobs and history records that read it
);
"#;

/// Encodes notifications once each: jobs that share one (the same `Arc`) share its JSON.
#[derive(Default)]
pub(super) struct Encoder {
    done: HashMap<*const Notification, Arc<str>>,
}

impl Encoder {
    pub(super) fn encode(&mut self, n: &Arc<Notification>) -> Result<Arc<str>, StoreError> {
        if let Some(json) = self.done.get(&Arc::as_ptr(n)) {
            return Ok(json.clone());
        }
        let json: Arc<str> = encode(n)?.into();
        self.done.insert(Arc::as_ptr(n), json.clone());
        Ok(json)
    }
}

pub(super) fn encode(n: &Notification) -> Result<String, StoreError> {
    serde_json::to_string(n)
        .map_err(|e| StoreError::Db(format!("cannot encode a notification: {e}")))
}

/// The bodies written by one request, by the JSON they hold (its address: shared JSON is one
/// body), so that the jobs of one notification read one row.
#[derive(Default)]
pub(super) struct Written {
    ids: HashMap<*const u8, i64>,
}

impl Written {
    /// The body holding `json`, written now if this request has not written it yet, with one
    /// more reader.
    pub(super) fn refer(&mut self, conn: &Connection, json: &Arc<str>) -> Result<i64, StoreError> {
        let key = json.as_ptr();
        if let Some(&body) = self.ids.get(&key) {
            refer(conn, body)?;
            return Ok(body);
        }
        conn.prepare_cached("INSERT INTO bodies (json, refs) VALUES (?1, 1)")
            .and_then(|mut s| s.execute(params![&**json]))
            .map_err(db)?;
        let body = conn.last_insert_rowid();
        self.ids.insert(key, body);
        Ok(body)
    }
}

/// One more reader of `body`.
pub(super) fn refer(conn: &Connection, body: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE bodies SET refs = refs + 1 WHERE body = ?1")
        .and_then(|mut s| s.execute([body]))
        .map_err(db)?;
    Ok(())
}

/// One reader fewer of `body`: deleted with its last.
pub(super) fn release(conn: &Connection, body: i64) -> Result<(), StoreError> {
    let left: Option<i64> = conn
        .prepare_cached("UPDATE bodies SET refs = refs - 1 WHERE body = ?1 RETURNING refs")
        .and_then(|mut s| s.query_row([body], |r| r.get(0)).optional())
        .map_err(db)?;
    if left.is_some_and(|n| n <= 0) {
        conn.prepare_cached("DELETE FROM bodies WHERE body = ?1")
            .and_then(|mut s| s.execute([body]))
            .map_err(db)?;
    }
    Ok(())
}

/// The JSON of each of `bodies`, each read once however many rows name it.
pub(super) fn read(
    conn: &Connection,
    bodies: impl IntoIterator<Item = i64>,
) -> Result<HashMap<i64, String>, StoreError> {
    let mut out = HashMap::new();
    for body in bodies {
        if out.contains_key(&body) {
            continue;
        }
        let json: Option<String> = conn
            .prepare_cached("SELECT json FROM bodies WHERE body = ?1")
            .and_then(|mut s| s.query_row([body], |r| r.get(0)).optional())
            .map_err(db)?;
        if let Some(json) = json {
            out.insert(body, json);
        }
    }
    Ok(out)
}

/// How many bodies are stored (for tests).
#[cfg(test)]
pub(super) fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM bodies", [], |r| r.get(0))
        .unwrap_or(-1)
}
