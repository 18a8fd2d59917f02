//! The delivery history in SQLite: table `history`, one JSON record per delivery with the
//! columns filters and updates look up by. A queued delivery's record reads its job's
//! notification body ([`super::bodies`]: the notification stored once); other records (a
//! suppressed duplicate, a digest) hold their notification's JSON in a column of their own
//! (encoded by the caller, written once; an update rewrites only the small record). Written on
//! the store's writer thread like everything else, so an update (read, change, write back) is
//! atomic.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::bodies;
use super::{SqliteStore, Writer, db, ms};
use crate::store::StoreError;
use crate::store::history::{
    Delivery, DeliveryState, Derived, HistoryFilter, Retention, Update, kept,
};

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
    record      TEXT    NOT NULL,            -- the Delivery as JSON, without its notification
    notification TEXT,                       -- the notification as JSON (older rows: in record)
    body        INTEGER                      -- or the body it reads (a queued delivery's)
);
CREATE INDEX IF NOT EXISTS history_job ON history (job);
"#;

/// Indexes made after the columns older stores lack were added. Only digests waiting for
/// their job are looked up by receiver and integration: a partial index, which other records
/// never touch. Age is pruned from the oldest rows (by id), without an index of its own.
pub(super) const INDEXES: &str = r#"
DROP INDEX IF EXISTS history_accepted;
DROP INDEX IF EXISTS history_adopt;
CREATE INDEX IF NOT EXISTS history_adoptable ON history (receiver, integration)
    WHERE adoptable = 1;
"#;

/// A record ready for the writer: its notification taken out and already JSON, so that the one
/// writer thread spends its time on SQL, not on encoding (it was a tenth of its time).
pub(super) struct Encoded {
    record: Delivery,
    notification: Option<String>,
    /// The body the record reads instead of a notification of its own.
    body: Option<i64>,
    /// Whether what the record shows of its notification is what [`Derived::of`] it gives, so
    /// that a row reading its body can be stored without it ([`Slim`]).
    derived: bool,
}

impl Encoded {
    pub(super) fn new(mut record: Delivery) -> Result<Encoded, StoreError> {
        // Fewer alerts than a record keeps: the notification is whole, the same as its body.
        let derived = record.notification.as_ref().is_some_and(|n| {
            n.alerts.len() < crate::store::history::RECORD_ALERTS
                && Derived::of(n).shown_by(&record)
        });
        let notification = record
            .notification
            .take()
            .map(|n| serde_json::to_string(&n))
            .transpose()
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(Encoded {
            record,
            notification,
            body: None,
            derived,
        })
    }

    pub(super) fn all(records: Vec<Delivery>) -> Result<Vec<Encoded>, StoreError> {
        records.into_iter().map(Encoded::new).collect()
    }

    /// [`crate::store::history::of_admission`] of the record; reading `body` (its job's)
    /// instead of a copy of the notification when there is one.
    pub(super) fn of_admission(
        self,
        a: &crate::store::Admitted,
        body: Option<i64>,
    ) -> Option<Encoded> {
        let notification = if body.is_some() {
            None
        } else {
            self.notification
        };
        let derived = self.derived;
        crate::store::history::of_admission(self.record, a).map(|record| Encoded {
            record,
            notification,
            body,
            derived,
        })
    }
}

/// The record's JSON without its notification, which has a column of its own (written with
/// the row; an update leaves it as it is), and that notification's JSON when the record held
/// one (a row written before the column existed, read back whole).
/// `slim`: the row reads a body whose notification gives what the record shows of it.
fn encode(d: &mut Delivery, slim: bool) -> Result<(String, Option<String>), StoreError> {
    let err = |e: serde_json::Error| StoreError::Db(e.to_string());
    let n = d.notification.take();
    let record = if slim {
        serde_json::to_string(&Lean::of(d))
    } else {
        serde_json::to_string(d)
    }
    .map_err(err);
    let notification = n
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(err);
    d.notification = n;
    Ok((record?, notification?))
}

fn decode(
    id: i64,
    raw: &str,
    notification: Option<&str>,
    cols: &Cols,
) -> Result<Delivery, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt {
        id,
        message: e.to_string(),
    };
    let slim = Slim::is(raw) || Lean::is(raw);
    let lean = |(lean, cols): (Lean<'_>, &Cols)| {
        lean.delivery(cols).ok_or_else(|| StoreError::Corrupt {
            id,
            message: format!("unknown state {:?}", cols.state),
        })
    };
    let mut d: Delivery = if Lean::is(raw) {
        lean((serde_json::from_str(raw).map_err(corrupt)?, cols))?
    } else if slim {
        let (l, own) = serde_json::from_str::<Slim<'_>>(raw)
            .map_err(corrupt)?
            .lean();
        lean((l, &own))?
    } else {
        serde_json::from_str(raw).map_err(corrupt)?
    };
    if let Some(n) = notification {
        // A body holds the whole notification: the record keeps a bounded part of it.
        let n: crate::webhook::Notification = serde_json::from_str(n).map_err(corrupt)?;
        if slim {
            Derived::of(&n).show_in(&mut d);
        }
        d.notification = Some(kept(&n));
    }
    // The row's id is the truth: a record is written once with its row, before the row has one.
    d.id = id;
    Ok(d)
}

/// A record as a row that reads a body held it before [`Lean`]: without what that body's
/// notification shows ([`Derived`]: group key, status, alertnames, links; about 330 of a
/// record's 630 bytes), taken from the body when read. Its first field marks it; older rows
/// and rows with their own notification hold the whole [`Delivery`]. Read, no longer written.
#[derive(serde::Deserialize)]
struct Slim<'a> {
    job: Option<i64>,
    receiver: String,
    integration: String,
    state: DeliveryState,
    /// The rest is what a [`Lean`] record holds.
    #[serde(flatten, borrow)]
    rest: Lean<'a>,
}

impl<'a> Slim<'a> {
    const MARK: &'static str = r#"{"derived":true"#;

    fn is(raw: &str) -> bool {
        raw.starts_with(Self::MARK)
    }

    /// The record in the form written now, and what that form leaves to the columns.
    fn lean(self) -> (Lean<'a>, Cols) {
        let cols = Cols {
            job: self.job,
            receiver: self.receiver,
            integration: self.integration,
            state: self.state.as_str().to_owned(),
        };
        (self.rest, cols)
    }
}

/// What a [`Lean`] record leaves to the row's columns.
#[derive(Debug, Default)]
struct Cols {
    job: Option<i64>,
    receiver: String,
    integration: String,
    state: String,
}

impl Cols {
    /// The columns read from `at` on: job, receiver, integration, state.
    fn read(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Cols> {
        Ok(Cols {
            job: r.get(at)?,
            receiver: r.get(at + 1)?,
            integration: r.get(at + 2)?,
            state: r.get(at + 3)?,
        })
    }
}

/// The columns [`Cols::read`] reads, in its order.
const COLS: &str = "job, receiver, integration, state";

/// A [`Slim`] record as it is written now: without what the row's columns hold (job,
/// receiver, integration, state) and without its empty fields, taken from the columns when
/// read: about 140 bytes instead of 330, written when the delivery is routed and again at each
/// change (the history was a third of the bytes a burst wrote).
#[derive(serde::Serialize, serde::Deserialize)]
struct Lean<'a> {
    /// Marks the form (absent from a [`Slim`] row).
    #[serde(default)]
    lean: u8,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempts: u32,
    accepted_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_attempt: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    merged: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl<'a> Lean<'a> {
    const MARK: &'static str = r#"{"lean":1"#;

    fn is(raw: &str) -> bool {
        raw.starts_with(Self::MARK)
    }

    fn of(d: &'a Delivery) -> Lean<'a> {
        Lean {
            lean: 1,
            kind: d.kind.as_str().into(),
            attempts: d.attempts,
            accepted_at: d.accepted_at,
            updated_at: d.updated_at,
            sent_at: d.sent_at,
            next_attempt: d.next_attempt,
            last_error: d.last_error.clone(),
            digest: d.digest,
            merged: d.merged,
        }
    }

    /// The record with its row's columns, without what its notification shows until that is
    /// read; `None` when the state column is not one this version knows.
    fn delivery(self, cols: &Cols) -> Option<Delivery> {
        Some(Delivery {
            id: 0,
            job: cols.job,
            receiver: cols.receiver.clone(),
            kind: self.kind.into_owned(),
            integration: cols.integration.clone(),
            group_key: String::new(),
            status: String::new(),
            alertnames: Vec::new(),
            external_url: None,
            generator_urls: Vec::new(),
            state: DeliveryState::parse(&cols.state)?,
            attempts: self.attempts,
            accepted_at: self.accepted_at,
            updated_at: self.updated_at,
            sent_at: self.sent_at,
            next_attempt: self.next_attempt,
            last_error: self.last_error,
            digest: self.digest,
            merged: self.merged,
            notification: None,
        })
    }
}

/// The columns [`decode`] reads, in its order (from `history h LEFT JOIN bodies b`).
const COLUMNS: &str =
    "h.id, h.record, coalesce(h.notification, b.json), h.job, h.receiver, h.integration, h.state";

type Row = (i64, String, rusqlite::types::Value, Cols);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, Cols::read(r, 3)?))
}

/// A record, its notification read from its own copy or from the body it names (compressed
/// or not, see [`bodies::unpack`]).
fn decode_row((id, raw, n, cols): Row) -> Result<Delivery, StoreError> {
    decode(id, &raw, bodies::unpack(n)?.as_deref(), &cols)
}

/// Whether a record is a digest waiting for its job.
fn adoptable_flag(d: &Delivery) -> i64 {
    (d.job.is_none() && d.merged.is_some() && d.state == DeliveryState::Queued) as i64
}

/// Inserts a record, JSON and all, in one statement; its id is the row's.
fn insert(w: &mut Writer, e: &mut Encoded) -> Result<i64, StoreError> {
    let d = &mut e.record;
    let (record, held) = encode(d, e.body.is_some() && e.derived)?;
    w.conn
        .prepare_cached(
            "INSERT INTO history (job, receiver, integration, state, alertnames, adoptable, accepted_at, record, notification, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
                e.notification.as_ref().or(held.as_ref()),
                e.body,
            ])
        })
        .map_err(db)?;
    d.id = w.conn.last_insert_rowid();
    if let Some(body) = e.body {
        bodies::refer(&w.conn, body)?;
    }
    if let Some(n) = &mut w.history_rows {
        *n += 1;
    }
    Ok(d.id)
}

/// `slim`: the row holds a [`Slim`] record (see [`encode`]).
fn write(conn: &Connection, d: &mut Delivery, slim: bool) -> Result<(), StoreError> {
    let (record, notification) = encode(d, slim)?;
    conn.prepare_cached(
        "UPDATE history SET job = ?2, state = ?3, adoptable = ?4, record = ?5,
           notification = coalesce(?6, notification) WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.id,
            d.job,
            d.state.as_str(),
            adoptable_flag(d),
            record,
            notification
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

/// Oldest records looked at for age: pruning costs what it deletes, not a scan of what is kept.
const AGE_SCAN: i64 = 256;

/// How often, at most, the oldest records are looked at for age. Ages are hours or days: a
/// record is gone at most a second after it aged. Looking on every write was a quarter of the
/// writer's time under a burst (256 rows read per accepted webhook).
const AGE_EVERY_MS: i64 = 1_000;

/// Records pruned beyond those past `web.history_max`: a sixteenth of it. Deleting a run of
/// the oldest records at once frees their pages (a freed page is not written); deleting as
/// many as were added, page by page, wrote each emptied page once for every few records,
/// 2.8 KB for every accepted webhook under a burst.
fn prune_beyond(keep: Retention) -> u64 {
    keep.max as u64 / 16
}

/// Records pruned past `web.history_max` in one transaction at most (a millisecond or two of the
/// writer's time: each record deleted gives back its body). Deleting a sixteenth of 10,000 at
/// once held the webhooks waiting behind it for 9 ms at the median and 28 ms at worst; what is
/// left over is pruned before the next batch.
pub(super) const PRUNE_STEP: u64 = 128;

/// Prunes the history when records were written since the last look ([`Writer::history_prune`]),
/// in a transaction of its own before a batch's. Outside the requests' savepoints, the pages
/// it empties are not copied to the statement journal. When nothing is due it begins no
/// transaction; when it fails, the next record written tries again.
pub(super) fn prune_if_due(w: &mut Writer) {
    let Some((keep, now)) = w.history_prune.take() else {
        return;
    };
    let at = ms(now);
    let aged_due = w
        .history_aged_at
        .is_none_or(|last| at < last || at - last >= AGE_EVERY_MS);
    if !aged_due && rows(w).is_ok_and(|n| n <= keep.max as u64) {
        return;
    }
    let pruned = super::writer::run(&w.conn, "BEGIN IMMEDIATE")
        .and_then(|()| prune(w, keep, now))
        .and_then(|more| super::writer::run(&w.conn, "COMMIT").map(|()| more));
    match pruned {
        Ok(more) => {
            let _ = w.checkpoint.try_send(());
            if more && w.history_prune.is_none() {
                w.history_prune = Some((keep, now));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "store: cannot prune the delivery history; tried again after the next record");
            if !w.conn.is_autocommit() {
                let _ = w.conn.execute_batch("ROLLBACK");
            }
            w.history_rows = None;
            w.history_aged_at = None;
        }
    }
}

/// Drops records older than `keep.max_age` among the oldest [`AGE_SCAN`] (records are written
/// in the order they are accepted, so the aged ones are there; looked at once per
/// [`AGE_EVERY_MS`]), then, past `keep.max`, the oldest down to [`prune_beyond`] below it, at
/// most [`PRUNE_STEP`]; gives back the bodies they read. Each costs what it deletes, not what
/// is kept. Whether more than `keep.max` are left.
fn prune(w: &mut Writer, keep: Retention, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let at = ms(now);
    let due = w
        .history_aged_at
        .is_none_or(|last| at < last || at - last >= AGE_EVERY_MS);
    let aged = if due {
        let n = delete_returning_bodies(
            &w.conn,
            "WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?2) AND accepted_at < ?1",
            params![ms(keep.cutoff(now)), AGE_SCAN],
        )?;
        w.history_aged_at = Some(at);
        n
    } else {
        0
    };
    let left = rows(w)?.saturating_sub(aged);
    w.history_rows = Some(left);
    let excess = left.saturating_sub(keep.max as u64);
    if excess > 0 {
        let n = delete_returning_bodies(
            &w.conn,
            "WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?1)",
            params![excess.saturating_add(prune_beyond(keep)).min(PRUNE_STEP) as i64],
        )?;
        w.history_rows = Some(left.saturating_sub(n));
        return Ok(left.saturating_sub(n) > keep.max as u64);
    }
    Ok(false)
}

/// Deletes the records `tail` selects and gives back the bodies they read; returns how many.
fn delete_returning_bodies(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    let gone: Vec<Option<i64>> = conn
        .prepare_cached(&format!("DELETE FROM history {tail} RETURNING body"))
        .and_then(|mut s| {
            s.query_map(params, |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db)?;
    for body in gone.iter().flatten() {
        bodies::release(conn, *body)?;
    }
    Ok(gone.len() as u64)
}

/// Whether a row's record leaves what its body shows to the body ([`Slim`], [`Lean`]).
fn slim(raw: &str) -> bool {
    Slim::is(raw) || Lean::is(raw)
}

/// The newest record of a job, without its notification (an update leaves that column alone),
/// and whether its row holds it [`Slim`].
fn newest_of_job(conn: &Connection, job: i64) -> Result<Option<(Delivery, bool)>, StoreError> {
    let row: Option<(i64, String, Cols)> = conn
        .prepare_cached(&format!(
            "SELECT id, record, {COLS} FROM history WHERE job = ?1 ORDER BY id DESC LIMIT 1"
        ))
        .and_then(|mut s| {
            s.query_row(params![job], |r| {
                Ok((r.get(0)?, r.get(1)?, Cols::read(r, 2)?))
            })
            .optional()
        })
        .map_err(db)?;
    row.map(|(id, raw, cols)| Ok((decode(id, &raw, None, &cols)?, slim(&raw))))
        .transpose()
}

/// A digest's record waiting for its job, without its notification, and whether its row
/// holds it [`Slim`].
fn adoptable(conn: &Connection, d: &Delivery) -> Result<Option<(Delivery, bool)>, StoreError> {
    let row: Option<(i64, String, Cols)> = conn
        .prepare_cached(&format!(
            "SELECT id, record, {COLS} FROM history
             WHERE receiver = ?1 AND integration = ?2 AND adoptable = 1 ORDER BY id LIMIT 1"
        ))
        .and_then(|mut s| {
            s.query_row(params![d.receiver, d.integration], |r| {
                Ok((r.get(0)?, r.get(1)?, Cols::read(r, 2)?))
            })
            .optional()
        })
        .map_err(db)?;
    row.map(|(id, raw, cols)| Ok((decode(id, &raw, None, &cols)?, slim(&raw))))
        .transpose()
}

/// [`SqliteStore::history_add`] inside a transaction already begun (the admission's, or its
/// own).
pub(super) fn add(
    w: &mut Writer,
    records: Vec<Encoded>,
    keep: Retention,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(records.len());
    for mut e in records {
        // The worker got there first (it delivered before the accept path recorded the job):
        // its record is the newer truth.
        if let Some(job) = e.record.job
            && let Some((found, _)) = newest_of_job(&w.conn, job)?
        {
            ids.push(found.id);
            continue;
        }
        ids.push(insert(w, &mut e)?);
    }
    w.history_prune = Some((keep, now));
    Ok(ids)
}

/// [`SqliteStore::history_update`] inside a request already begun (an attempt's outcome, or
/// its own).
pub(super) fn update_in(
    w: &mut Writer,
    updates: Vec<Update>,
    keep: Retention,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut inserted = false;
    for u in updates {
        if let Some((mut d, slim)) = newest_of_job(&w.conn, u.job)? {
            d.apply(&u.change, now);
            write(&w.conn, &mut d, slim)?;
            continue;
        }
        let Some(mut fresh) = u.or_insert else {
            continue;
        };
        if let Some((mut d, slim)) = adoptable(&w.conn, &fresh)? {
            d.job = Some(u.job);
            d.apply(&u.change, now);
            write(&w.conn, &mut d, slim)?;
            continue;
        }
        fresh.job = Some(u.job);
        fresh.apply(&u.change, now);
        insert(w, &mut Encoded::new(fresh)?)?;
        inserted = true;
    }
    if inserted {
        w.history_prune = Some((keep, now));
    }
    Ok(())
}

impl SqliteStore {
    pub async fn history_add(
        &self,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let records = Encoded::all(records)?;
        self.call(move |w| add(w, records, keep, now)).await
    }

    pub async fn history_update(
        &self,
        updates: Vec<Update>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.call(move |w| update_in(w, updates, keep, now)).await
    }

    pub async fn history(&self, filter: HistoryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.call(move |w| {
            let mut stmt = w
                .conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM history h LEFT JOIN bodies b ON b.body = h.body
                     WHERE (?1 IS NULL OR h.receiver = ?1) AND (?2 IS NULL OR h.state = ?2)
                       AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(h.alertnames) WHERE value = ?3))
                     ORDER BY h.id DESC LIMIT ?4"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    params![
                        filter.receiver,
                        filter.state.map(DeliveryState::as_str),
                        filter.alertname,
                        filter.limit as i64
                    ],
                    row,
                )
                .map_err(db)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(decode_row(r.map_err(db)?)?);
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::{Change, HistoryFilter, Retention, Update};
    use crate::store::sqlite::{FILE, SqliteStore};

    fn delivery(job: i64) -> Delivery {
        let n = crate::webhook::sample_notification();
        let now = Utc::now();
        Delivery {
            id: 0,
            job: Some(job),
            receiver: "oncall".into(),
            kind: "console".into(),
            integration: "console-0".into(),
            group_key: n.group_key.clone(),
            status: "firing".into(),
            alertnames: vec!["HighCPU".into()],
            external_url: None,
            generator_urls: Vec::new(),
            state: DeliveryState::Queued,
            attempts: 0,
            accepted_at: now,
            updated_at: now,
            sent_at: None,
            next_attempt: None,
            last_error: None,
            digest: None,
            merged: None,
            notification: Some(n),
        }
    }

    fn all() -> HistoryFilter {
        HistoryFilter {
            receiver: None,
            state: None,
            alertname: None,
            limit: 10,
        }
    }

    /// The notification has a column of its own; a row written before it existed (the
    /// notification inside `record`) reads back whole, and keeps its notification when updated.
    #[tokio::test]
    async fn notifications_in_their_column_and_in_rows_written_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let keep = Retention {
            max_age: std::time::Duration::from_secs(3600),
            max: 100,
        };
        let now = Utc::now();
        let store = SqliteStore::open(dir.path(), 100, true).unwrap();
        store
            .history_add(vec![delivery(1)], keep, now)
            .await
            .unwrap();
        drop(store);
        // An older version's row: the whole Delivery in `record`, no column.
        let conn = Connection::open(dir.path().join(FILE)).unwrap();
        let (record, column): (String, Option<String>) = conn
            .query_row("SELECT record, notification FROM history", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert!(record.contains(r#""notification":null"#), "{record}");
        assert!(column.unwrap().contains("Sample alert"));
        let mut old = delivery(2);
        old.id = 0;
        let whole = serde_json::to_string(&old).unwrap();
        conn.execute(
            "INSERT INTO history (job, receiver, integration, state, alertnames, accepted_at, record)
             VALUES (2, 'oncall', 'console-0', 'queued', '[\"HighCPU\"]', ?1, ?2)",
            params![ms(now), whole],
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(dir.path(), 100, true).unwrap();
        let read = store.history(all()).await.unwrap();
        assert_eq!(read.len(), 2);
        let expected = crate::webhook::sample_notification();
        for d in &read {
            assert_eq!(d.notification.as_ref(), Some(&expected), "record {}", d.id);
        }
        for job in [1, 2] {
            let u = Update {
                job,
                change: Change::Sent { attempts: 1 },
                or_insert: None,
            };
            store.history_update(vec![u], keep, now).await.unwrap();
        }
        let read = store.history(all()).await.unwrap();
        for d in &read {
            assert_eq!(d.state, DeliveryState::Sent);
            assert_eq!(d.notification.as_ref(), Some(&expected), "record {}", d.id);
        }
    }
}
