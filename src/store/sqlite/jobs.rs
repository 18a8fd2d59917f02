//! The delivery queue: jobs stored, claimed (in memory only), completed, rescheduled,
//! dead-lettered and replayed; a job's notification is encoded and decoded by the caller's
//! task, so the writer spends its time on SQL. A job row names its notification's body
//! ([`super::bodies`]); rows written before bodies existed hold the JSON themselves.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::bodies::{self, Encoder, Packed, Written};
use super::history;
use super::writer::{Writer, aside};
use super::{SqliteStore, db, from_ms, ms};
use crate::store::history::{Outcome, Retention, Update};
use crate::store::{Depth, Failure, IntegrationId, Job, NewJob, Progress, StoreError};

impl SqliteStore {
    /// Gives back every claimed job not in `keep` (those still being delivered or recorded):
    /// the scheduler's claims that were lost, e.g. to a task that ended early.
    pub async fn release_stale(&self, keep: Vec<i64>) -> Result<usize, StoreError> {
        self.call(move |w| {
            let keep: HashSet<i64> = keep.into_iter().collect();
            let stale: Vec<i64> = w.claimed.difference(&keep).copied().collect();
            for id in &stale {
                w.release(*id);
            }
            Ok(stale.len())
        })
        .await
    }

    /// Counts one more attempt begun on a job, durably, before it is rendered and sent;
    /// returns how many were begun.
    pub async fn started(&self, id: i64) -> Result<u32, StoreError> {
        let r = self
            .call(move |w| {
                w.conn
                    .query_row(
                        "UPDATE jobs SET starts = starts + 1 WHERE id = ?1 RETURNING starts",
                        [id],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                    .map_err(db)
            })
            .await;
        self.wrote(r).map(|n| n.unwrap_or(0).max(0) as u32)
    }

    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<i64>, StoreError> {
        let jobs = encode_jobs(jobs)?;
        let r = self
            .call(move |w| {
                if w.live + jobs.len() as u64 > w.capacity || w.over_size()? {
                    return Err(StoreError::Full);
                }
                let ids = insert_jobs(&w.conn, &jobs)?;
                w.live += ids.len() as u64;
                Ok(ids)
            })
            .await;
        self.wrote(r)
    }

    pub async fn claim(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.call(move |w| {
            let ids = select_ids(
                &w.conn,
                "WHERE state = 'pending' AND not_before <= ?1 ORDER BY not_before, id LIMIT ?2",
                params![ms(now), (limit + w.claimed.len()) as i64],
            )?;
            take_claims(w, ids, limit)
        })
        .await
        .and_then(decode_jobs)
    }

    /// Claims the due control jobs of the on-call engine (escalation timers and the like),
    /// oldest due first, whatever deliveries wait before them.
    pub async fn claim_control(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        // The kind is written into the statement (not bound) so that the partial index
        // `jobs_control_due` applies.
        let tail = format!(
            "WHERE kind = '{}' AND state = 'pending' AND not_before <= ?1
             ORDER BY not_before, id LIMIT ?2",
            crate::store::incident::CONTROL_KIND
        );
        self.call(move |w| {
            let ids = select_ids(
                &w.conn,
                &tail,
                params![ms(now), (limit + w.claimed.len()) as i64],
            )?;
            take_claims(w, ids, limit)
        })
        .await
        .and_then(decode_jobs)
    }

    /// The index `jobs_target` ends with the rowid: `id > after` starts the scan past the
    /// chunks taken already instead of stepping over them again (a backlog taken 16 at a time,
    /// each chunk reading past all those claimed before it, was a quadratic scan: a quarter of
    /// the writer's time under a burst).
    pub async fn claim_target(
        &self,
        receiver: &str,
        integration: &IntegrationId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let receiver = receiver.to_string();
        let integration = integration.0.clone();
        self.call(move |w| {
            // Read a page at a time past the last id seen, the claimed ones (in flight)
            // skipped, until `limit` are found.
            let mut ids = Vec::with_capacity(limit);
            let mut cursor = after;
            while ids.len() < limit {
                let page = select_ids(
                    &w.conn,
                    "WHERE state = 'pending' AND receiver = ?1 AND integration = ?2 AND id > ?3
                     ORDER BY id LIMIT ?4",
                    params![receiver, integration, cursor, limit as i64],
                )?;
                let Some(&last) = page.last() else {
                    break;
                };
                cursor = last;
                let full = page.len() == limit;
                ids.extend(page.into_iter().filter(|id| !w.claimed.contains(id)));
                if !full {
                    break;
                }
            }
            take_claims(w, ids, limit)
        })
        .await
        .and_then(decode_jobs)
    }

    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.call(|w| {
            // Claimed jobs are pending in the file but not due: skipped, or the dispatcher
            // would wake every few milliseconds while deliveries are in flight.
            let mut stmt = w
                .conn
                .prepare_cached(
                    "SELECT id, not_before FROM jobs WHERE state = 'pending'
                     ORDER BY not_before LIMIT ?1",
                )
                .map_err(db)?;
            let mut rows = stmt.query([(w.claimed.len() + 1) as i64]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let id: i64 = r.get(0).map_err(db)?;
                if !w.claimed.contains(&id) {
                    return Ok(Some(from_ms(r.get(1).map_err(db)?)));
                }
            }
            Ok(None)
        })
        .await
    }

    pub async fn complete(&self, ids: Vec<i64>, then: Vec<NewJob>) -> Result<(), StoreError> {
        let then = encode_jobs(then)?;
        let r = self.call_first(move |w| complete_in(w, &ids, &then)).await;
        self.wrote(r)
    }

    pub async fn reschedule(
        &self,
        id: i64,
        f: Failure,
        not_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = self
            .call(move |w| reschedule_in(w, id, &f, not_before))
            .await;
        self.wrote(r)
    }

    pub async fn dead_letter(
        &self,
        id: i64,
        f: Failure,
        fallback: Vec<NewJob>,
    ) -> Result<(), StoreError> {
        let fallback = encode_jobs(fallback)?;
        let r = self.call(move |w| dead_in(w, id, &f, &fallback)).await;
        self.wrote(r)
    }

    /// An attempt's outcome and the change to its history record in one request, so one
    /// commit: the history's part in a savepoint of its own, undone alone when it fails (that
    /// failure is returned beside), never undoing the outcome.
    pub async fn finish(
        &self,
        id: i64,
        outcome: Outcome,
        update: Update,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<Option<StoreError>, StoreError> {
        let outcome = match outcome {
            Outcome::Delivered => Encoded::Delivered,
            Outcome::Retry { failure, at } => Encoded::Retry { failure, at },
            Outcome::Dead { failure, fallback } => Encoded::Dead {
                failure,
                fallback: encode_jobs(fallback)?,
            },
        };
        let r = self
            .call(move |w| {
                match &outcome {
                    Encoded::Delivered => complete_in(w, &[id], &[])?,
                    Encoded::Retry { failure, at } => reschedule_in(w, id, failure, *at)?,
                    Encoded::Dead { failure, fallback } => dead_in(w, id, failure, fallback)?,
                }
                aside(w, |w| history::update_in(w, vec![update], keep, now)).map(|r| r.err())
            })
            .await;
        self.wrote(r)
    }

    pub async fn depth(&self) -> Result<Vec<Depth>, StoreError> {
        self.call(|w| {
            let mut stmt = w
                .conn
                .prepare_cached(
                    "SELECT receiver, integration, count(*) FROM jobs WHERE state != 'dead'
                     GROUP BY receiver, integration",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Depth {
                        receiver: r.get(0)?,
                        integration: id_of(r.get(1)?),
                        count: r.get::<_, i64>(2)? as u64,
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    pub async fn dead_letters(&self) -> Result<Vec<Job>, StoreError> {
        self.call(|w| {
            let jobs = select_jobs(&w.conn, "WHERE state = 'dead' ORDER BY id", [])?;
            with_bodies(&w.conn, jobs)
        })
        .await
        .and_then(decode_jobs)
    }

    pub async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        self.call(|w| {
            w.conn
                .query_row("SELECT count(*) FROM jobs WHERE state = 'dead'", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    pub async fn replay(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.call(move |w| {
            let n = w
                .conn
                .execute(
                    "UPDATE jobs SET state = 'pending', attempt = 0, starts = 0, not_before = ?1,
                     accepted_at = ?1, failed_at = NULL
                     WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)",
                    params![ms(now), id],
                )
                .map_err(db)? as u64;
            w.live += n;
            Ok(n)
        })
        .await
    }

    pub async fn purge(&self) -> Result<u64, StoreError> {
        self.call(|w| {
            let gone = delete_returning_bodies(&w.conn, "WHERE state = 'dead'", [])?;
            Ok(gone as u64)
        })
        .await
    }

    pub async fn claim_held(
        &self,
        receiver: &str,
        integration: &IntegrationId,
    ) -> Result<Vec<Job>, StoreError> {
        let receiver = receiver.to_string();
        let integration = integration.0.clone();
        self.call(move |w| {
            let ids = select_ids(
                &w.conn,
                "WHERE state = 'pending' AND held = 1 AND receiver = ?1 AND integration = ?2
                 ORDER BY id",
                params![receiver, integration],
            )?;
            take_claims(w, ids, usize::MAX)
        })
        .await
        .and_then(decode_jobs)
    }
}

/// Stores a job; its notification goes to the body holding `json` (written by this request
/// already when another job shares it). Returns the job's id and its body.
pub(super) fn insert_job(
    conn: &Connection,
    written: &mut Written,
    j: &NewJob,
    json: &Packed,
    not_before: DateTime<Utc>,
    held: bool,
) -> Result<(i64, i64), StoreError> {
    let body = written.refer(conn, json)?;
    conn.prepare_cached(
        "INSERT INTO jobs (receiver, integration, kind, notification, body, accepted_at,
         not_before, state, fallback, held) VALUES (?1, ?2, ?3, '', ?4, ?5, ?6, 'pending', ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            j.receiver,
            j.integration.0,
            j.kind,
            body,
            ms(j.accepted_at),
            ms(not_before),
            j.fallback,
            held
        ])
    })
    .map_err(db)?;
    Ok((conn.last_insert_rowid(), body))
}

/// A job ready for the writer: its notification already JSON (shared with the other jobs of
/// the same notification). Encoding and decoding happen on the caller's task, so the one
/// writer thread spends its time on SQL only.
pub(super) struct EncodedJob {
    job: NewJob,
    json: Packed,
}

pub(super) fn encode_jobs(jobs: Vec<NewJob>) -> Result<Vec<EncodedJob>, StoreError> {
    let mut encoder = Encoder::default();
    jobs.into_iter()
        .map(|job| {
            let json = encoder.encode(&job.notification)?;
            Ok(EncodedJob { job, json })
        })
        .collect()
}

pub(super) fn insert_jobs(conn: &Connection, jobs: &[EncodedJob]) -> Result<Vec<i64>, StoreError> {
    let mut written = Written::default();
    jobs.iter()
        .map(|e| {
            insert_job(
                conn,
                &mut written,
                &e.job,
                &e.json,
                e.job.accepted_at,
                false,
            )
            .map(|(id, _)| id)
        })
        .collect()
}

/// Deletes the jobs `tail` selects and gives back their bodies; returns how many.
pub(super) fn delete_returning_bodies(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    let gone: Vec<Option<i64>> = conn
        .prepare_cached(&format!("DELETE FROM jobs {tail} RETURNING body"))
        .and_then(|mut s| {
            s.query_map(params, |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db)?;
    for body in gone.iter().flatten() {
        bodies::release(conn, *body)?;
    }
    Ok(gone.len())
}

pub(super) fn progress_json(p: &Progress) -> String {
    serde_json::to_string(p).unwrap_or_else(|_| "[]".into())
}

/// The first `limit` of the jobs `ids` not claimed already, now claimed, read in full. Only
/// those are read: the rows skipped (claimed, in flight) cost an index step, not their
/// notification.
pub(super) fn take_claims(w: &mut Writer, ids: Vec<i64>, limit: usize) -> Result<Raw, StoreError> {
    let mut out = Vec::new();
    for id in ids {
        if out.len() >= limit {
            break;
        }
        if w.claimed.contains(&id) {
            continue;
        }
        if let Some(job) = select_jobs(&w.conn, "WHERE id = ?1", [id])?.pop() {
            w.claimed.insert(id);
            out.push(job);
        }
    }
    with_bodies(&w.conn, out)
}

/// Rows read, with the JSON of the bodies they name, each once.
pub(super) struct Raw {
    jobs: Vec<RawJob>,
    bodies: HashMap<i64, String>,
}

pub(super) fn with_bodies(conn: &Connection, jobs: Vec<RawJob>) -> Result<Raw, StoreError> {
    let bodies = bodies::read(conn, jobs.iter().filter_map(|j| j.body))?;
    Ok(Raw { jobs, bodies })
}

/// The ids of the jobs `tail` selects, in its order.
pub(super) fn select_ids(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT id FROM jobs {tail}"))
        .map_err(db)?;
    let rows = stmt.query_map(params, |r| r.get(0)).map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// A job row as stored: the notification and progress still JSON (see [`EncodedJob`]).
pub(super) struct RawJob {
    id: i64,
    receiver: String,
    integration: IntegrationId,
    kind: String,
    /// The JSON of a row written before bodies existed ('' otherwise).
    notification: String,
    body: Option<i64>,
    attempt: i64,
    progress: String,
    accepted_at: i64,
    not_before: i64,
    fallback: bool,
    last_error: Option<String>,
    reason: Option<String>,
    failed_at: Option<i64>,
    held: bool,
}

/// The `integration` column: an identity (text), or the position a store written by an
/// older version holds (an integer).
pub(super) fn id_of(v: rusqlite::types::Value) -> IntegrationId {
    use rusqlite::types::Value;
    IntegrationId(match v {
        Value::Text(s) => s,
        Value::Integer(n) => n.to_string(),
        Value::Real(f) => (f as i64).to_string(),
        Value::Null | Value::Blob(_) => String::new(),
    })
}

pub(super) fn select_jobs(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RawJob>, StoreError> {
    let sql = format!(
        "SELECT id, receiver, integration, kind, notification, attempt, progress, accepted_at,
         not_before, fallback, last_error, reason, failed_at, held, body FROM jobs {tail}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok(RawJob {
                id: r.get(0)?,
                receiver: r.get(1)?,
                integration: id_of(r.get(2)?),
                kind: r.get(3)?,
                notification: r.get(4)?,
                attempt: r.get(5)?,
                progress: r.get(6)?,
                accepted_at: r.get(7)?,
                not_before: r.get(8)?,
                fallback: r.get(9)?,
                last_error: r.get(10)?,
                reason: r.get(11)?,
                failed_at: r.get(12)?,
                held: r.get(13)?,
                body: r.get(14)?,
            })
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// The jobs read, each body parsed once: jobs of one notification share it.
pub(super) fn decode_jobs(raw: Raw) -> Result<Vec<Job>, StoreError> {
    let Raw { jobs, mut bodies } = raw;
    let mut parsed: HashMap<i64, Arc<crate::webhook::Notification>> = HashMap::new();
    jobs.into_iter()
        .map(|r| {
            let corrupt = |e: serde_json::Error| StoreError::Corrupt {
                id: r.id,
                message: e.to_string(),
            };
            let notification = match r.body {
                None => Arc::new(serde_json::from_str(&r.notification).map_err(corrupt)?),
                Some(body) => match parsed.get(&body) {
                    Some(n) => n.clone(),
                    None => {
                        let json = bodies.remove(&body).ok_or_else(|| StoreError::Corrupt {
                            id: r.id,
                            message: format!("its notification (body {body}) is missing"),
                        })?;
                        let n = Arc::new(serde_json::from_str(&json).map_err(corrupt)?);
                        parsed.insert(body, Arc::clone(&n));
                        n
                    }
                },
            };
            Ok(Job {
                notification,
                progress: serde_json::from_str(&r.progress).map_err(corrupt)?,
                id: r.id,
                receiver: r.receiver,
                integration: r.integration,
                kind: r.kind,
                attempt: r.attempt.max(0) as u32,
                accepted_at: from_ms(r.accepted_at),
                not_before: from_ms(r.not_before),
                fallback: r.fallback,
                last_error: r.last_error,
                reason: r.reason,
                failed_at: r.failed_at.map(from_ms),
                held: r.held,
            })
        })
        .collect()
}

/// [`Outcome`] with its fallback jobs' notifications already JSON.
enum Encoded {
    Delivered,
    Retry {
        failure: Failure,
        at: DateTime<Utc>,
    },
    Dead {
        failure: Failure,
        fallback: Vec<EncodedJob>,
    },
}

/// Forgets the delivered jobs `ids`; stores `then`.
pub(super) fn complete_in(
    w: &mut Writer,
    ids: &[i64],
    then: &[EncodedJob],
) -> Result<(), StoreError> {
    let mut removed = 0;
    for id in ids {
        w.release(*id);
        removed += delete_returning_bodies(&w.conn, "WHERE id = ?1", [id])?;
    }
    let added = insert_jobs(&w.conn, then)?.len();
    w.live = (w.live + added as u64).saturating_sub(removed as u64);
    Ok(())
}

/// The job `id` failed: pending again from `not_before`.
fn reschedule_in(
    w: &mut Writer,
    id: i64,
    f: &Failure,
    not_before: DateTime<Utc>,
) -> Result<(), StoreError> {
    w.release(id);
    w.conn
        .prepare_cached(
            "UPDATE jobs SET state = 'pending', attempt = ?2, progress = ?3, last_error = ?4,
             reason = ?5, not_before = ?6 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                f.attempt,
                progress_json(&f.progress),
                f.error,
                f.reason,
                ms(not_before)
            ])
        })
        .map_err(db)?;
    Ok(())
}

/// The job `id` is given up: a dead letter; `fallback` stored.
fn dead_in(
    w: &mut Writer,
    id: i64,
    f: &Failure,
    fallback: &[EncodedJob],
) -> Result<(), StoreError> {
    w.release(id);
    let n = w
        .conn
        .prepare_cached(
            "UPDATE jobs SET state = 'dead', attempt = ?2, progress = ?3, last_error = ?4,
             reason = ?5, failed_at = ?6 WHERE id = ?1 AND state != 'dead'",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                f.attempt,
                progress_json(&f.progress),
                f.error,
                f.reason,
                ms(Utc::now())
            ])
        })
        .map_err(db)?;
    let added = insert_jobs(&w.conn, fallback)?.len();
    w.live = (w.live + added as u64).saturating_sub(n as u64);
    Ok(())
}
