//! Notification bodies: each accepted notification's JSON stored once, in table `bodies`,
//! and read by every job and history record made from it (the integrations of a receiver,
//! and the deliveries' records), instead of a copy in each row. A body counts the rows that
//! read it (`refs`) and is deleted with the last of them.
//!
//! Encoding happens on the caller's task ([`Encoder`]): a notification shared by several jobs
//! (one `Arc`) is encoded once for all of them. A body is stored compressed (LZ4, its length
//! first, as a BLOB): a notification's JSON repeats its label names and values in every alert,
//! and compressed it takes a quarter of the pages or less. Bodies stored as text by older
//! versions read as before.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::db;
use crate::store::StoreError;
use crate::webhook::Notification;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS bodies (
    body INTEGER PRIMARY KEY,
    json TEXT    NOT NULL,                   -- the Notification as JSON (a BLOB: LZ4-compressed)
    refs INTEGER NOT NULL                    -- older stores' count, moved to body_refs (0)
);
"#;

/// The readers of each body: jobs, history records and appended webhooks.
const REFS: &str = r#"
CREATE TABLE body_refs (
    body INTEGER PRIMARY KEY,                -- bodies.body
    refs INTEGER NOT NULL
);
"#;

/// Creates the counts' table; a store whose bodies counted their readers themselves has the
/// counts moved, once, when the table is created.
pub(super) fn create(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(SCHEMA)?;
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'body_refs'",
        [],
        |r| r.get(0),
    )?;
    if has {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {REFS}
         INSERT INTO body_refs (body, refs) SELECT body, refs FROM bodies WHERE refs != 0;
         UPDATE bodies SET refs = 0 WHERE refs != 0;
         COMMIT;"
    ))
}

/// Stores a body read by `refs` rows (none: not counted, held by what wrote it); its id.
pub(super) fn insert(conn: &Connection, packed: &Packed, refs: i64) -> Result<i64, StoreError> {
    conn.prepare_cached("INSERT INTO bodies (json, refs) VALUES (?1, 0)")
        .and_then(|mut s| s.execute(params![&**packed]))
        .map_err(db)?;
    let body = conn.last_insert_rowid();
    if refs > 0 {
        start_count(conn, body, refs)?;
    }
    Ok(body)
}

/// Starts counting the readers of `body`: `refs` so far.
fn start_count(conn: &Connection, body: i64, refs: i64) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO body_refs (body, refs) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![body, refs]))
        .map_err(db)?;
    Ok(())
}

/// Deletes a body nothing reads (and no count was made for).
pub(super) fn delete(conn: &Connection, body: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM bodies WHERE body = ?1")
        .and_then(|mut s| s.execute([body]))
        .map_err(db)?;
    Ok(())
}

/// A body as stored: the notification's JSON, compressed ([`pack`]).
pub(super) type Packed = Arc<[u8]>;

/// Encodes notifications once each: jobs that share one (the same `Arc`) share its body.
#[derive(Default)]
pub(super) struct Encoder {
    done: HashMap<*const Notification, Packed>,
}

impl Encoder {
    pub(super) fn encode(&mut self, n: &Arc<Notification>) -> Result<Packed, StoreError> {
        if let Some(body) = self.done.get(&Arc::as_ptr(n)) {
            return Ok(body.clone());
        }
        let body: Packed = pack(&encode(n)?).into();
        self.done.insert(Arc::as_ptr(n), body.clone());
        Ok(body)
    }
}

/// A notification's JSON as a body is stored: LZ4-compressed, its length first.
pub(super) fn pack(json: impl AsRef<[u8]>) -> Vec<u8> {
    lz4_flex::compress_prepend_size(json.as_ref())
}

/// A stored body's JSON: compressed (a BLOB), or text as older versions wrote it.
pub(super) fn unpack(v: rusqlite::types::Value) -> Result<Option<String>, StoreError> {
    use rusqlite::types::Value;
    match v {
        Value::Null => Ok(None),
        Value::Text(json) => Ok(Some(json)),
        Value::Blob(packed) => {
            let bytes = lz4_flex::decompress_size_prepended(&packed)
                .map_err(|e| StoreError::Db(format!("a stored notification is damaged: {e}")))?;
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| StoreError::Db(format!("a stored notification is damaged: {e}")))
        }
        other => Err(StoreError::Db(format!(
            "a stored notification is not JSON but {:?}",
            other.data_type()
        ))),
    }
}

pub(super) fn encode(n: &Notification) -> Result<String, StoreError> {
    serde_json::to_string(n)
        .map_err(|e| StoreError::Db(format!("cannot encode a notification: {e}")))
}

/// The bodies written by one request, by what they hold (its address: a shared body is one
/// row), so that the jobs of one notification read one row; and the bodies stored before
/// without readers yet (appended webhooks', [`Written::seeded`]).
#[derive(Default)]
pub(super) struct Written {
    ids: HashMap<*const u8, i64>,
    /// Seeded bodies no job or record reads yet: their count is made by the first.
    unread: std::collections::HashSet<i64>,
}

impl Written {
    /// Bodies already stored without readers (an appended webhook's, which holds its body
    /// without counting), to be read by the jobs whose notification is the same: `packed`
    /// must be the very bytes those jobs carry.
    pub(super) fn seeded(bodies: &[(Packed, i64)]) -> Written {
        Written {
            ids: bodies.iter().map(|(p, b)| (p.as_ptr(), *b)).collect(),
            unread: bodies.iter().map(|(_, b)| *b).collect(),
        }
    }

    /// Whether a seeded `body` is still read by nothing.
    pub(super) fn is_unread(&self, body: i64) -> bool {
        self.unread.contains(&body)
    }

    /// The body holding `json`, written now if this request has not written it yet, with one
    /// more reader.
    pub(super) fn refer(&mut self, conn: &Connection, packed: &Packed) -> Result<i64, StoreError> {
        let key = packed.as_ptr();
        if let Some(&body) = self.ids.get(&key) {
            if self.unread.remove(&body) {
                start_count(conn, body, 1)?;
            } else {
                refer(conn, body)?;
            }
            return Ok(body);
        }
        let body = insert(conn, packed, 1)?;
        self.ids.insert(key, body);
        Ok(body)
    }
}

/// One more reader of `body`.
pub(super) fn refer(conn: &Connection, body: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE body_refs SET refs = refs + 1 WHERE body = ?1")
        .and_then(|mut s| s.execute([body]))
        .map_err(db)?;
    Ok(())
}

/// One reader fewer of `body`: deleted with its last.
pub(super) fn release(conn: &Connection, body: i64) -> Result<(), StoreError> {
    let left: Option<i64> = conn
        .prepare_cached("UPDATE body_refs SET refs = refs - 1 WHERE body = ?1 RETURNING refs")
        .and_then(|mut s| s.query_row([body], |r| r.get(0)).optional())
        .map_err(db)?;
    if left.is_some_and(|n| n <= 0) {
        conn.prepare_cached("DELETE FROM body_refs WHERE body = ?1")
            .and_then(|mut s| s.execute([body]))
            .map_err(db)?;
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
        let stored: Option<rusqlite::types::Value> = conn
            .prepare_cached("SELECT json FROM bodies WHERE body = ?1")
            .and_then(|mut s| s.query_row([body], |r| r.get(0)).optional())
            .map_err(db)?;
        if let Some(json) = stored.map(unpack).transpose()?.flatten() {
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
