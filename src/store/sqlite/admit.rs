//! Admission: a webhook's jobs passed through their dedupe keys and stored in one request,
//! with their history records in the same transaction (one commit before the answer). The
//! notification is stored once ([`super::bodies`]): the jobs of its integrations and their
//! history records read the same body.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::SqliteStore;
use super::bodies::{Encoder, Packed, Written, encode, pack};
use super::dedupe::{at, take, take_or_extend};
use super::history;
use super::jobs::insert_job;
use super::writer::{Writer, aside};
use crate::store::history::{Delivery, Retention};
use crate::store::{Admission, Admitted, StoreError};

impl SqliteStore {
    pub async fn admit(
        &self,
        admissions: Vec<Admission>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Admitted>, StoreError> {
        let admissions = encode_admissions(admissions)?;
        let r = self
            .call(move |w| admit_in(w, admissions, now, &mut Written::default()))
            .await;
        self.wrote(r).map(|(admitted, _bodies, _spent)| admitted)
    }

    /// [`SqliteStore::admit`], and the history records of what was admitted added in the same
    /// transaction: one commit before the answer. A history write that fails is undone alone
    /// (its own savepoint) and returned beside the admissions, which stand.
    pub async fn admit_recorded(
        &self,
        admissions: Vec<Admission>,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Admitted>, Option<StoreError>), StoreError> {
        let admissions = encode_admissions(admissions)?;
        let records = history::Encoded::all(records)?;
        let r = self
            .call(move |w| {
                admit_recorded_in(w, admissions, records, keep, now, &mut Written::default())
            })
            .await;
        self.wrote(r)
            .map(|(admitted, failed, _spent)| (admitted, failed))
    }
}

/// [`SqliteStore::admit_recorded`] on the writer thread, the bodies already `written` reused.
#[allow(clippy::type_complexity)]
pub(super) fn admit_recorded_in(
    w: &mut Writer,
    admissions: EncodedAdmissions,
    records: Vec<history::Encoded>,
    keep: Retention,
    now: DateTime<Utc>,
    written: &mut Written,
) -> Result<(Vec<Admitted>, Option<StoreError>, EncodedAdmissions), StoreError> {
    let (admitted, bodies, spent) = admit_in(w, admissions, now, written)?;
    // A queued delivery's record reads its job's body.
    let records = records
        .into_iter()
        .zip(admitted.iter().zip(&bodies))
        .filter_map(|(e, (a, body))| e.of_admission(a, *body))
        .collect::<Vec<_>>();
    if records.is_empty() {
        return Ok((admitted, None, spent));
    }
    let failed = aside(w, |w| history::add(w, records, keep, now))?.err();
    Ok((admitted, failed, spent))
}

/// Notifications ready for [`admit_in`]: each job's notification already JSON, encoded once
/// for all the jobs that share it.
pub(super) type EncodedAdmissions = Vec<(Packed, Admission)>;

pub(super) fn encode_admissions(
    admissions: Vec<Admission>,
) -> Result<EncodedAdmissions, StoreError> {
    let mut encoder = Encoder::default();
    admissions
        .into_iter()
        .map(|a| Ok((encoder.encode(&a.job.notification)?, a)))
        .collect()
}

/// [`SqliteStore::admit`] on the writer thread: what became of each admission, and the body
/// each queued job reads. The jobs and their JSON come back beside the answer, to be freed by
/// the caller: freeing them took the one writer thread's time.
#[allow(clippy::type_complexity)]
pub(super) fn admit_in(
    w: &mut Writer,
    admissions: EncodedAdmissions,
    now: DateTime<Utc>,
    written: &mut Written,
) -> Result<(Vec<Admitted>, Vec<Option<i64>>, EncodedAdmissions), StoreError> {
    at(w, now);
    let mut out = Vec::with_capacity(admissions.len());
    let mut bodies = Vec::with_capacity(admissions.len());
    let mut spent = Vec::with_capacity(admissions.len());
    let mut queued = 0u64;
    for (mut json, mut a) in admissions {
        if let Some(identity) = &a.identity
            && !take(w, identity, now)?
        {
            out.push(Admitted::Duplicate);
            bodies.push(None);
            spent.push((json, a));
            continue;
        }
        let mut drop = Vec::new();
        for (i, mark) in &a.once {
            if !take(w, mark, now)? {
                drop.push(*i);
            }
        }
        for mark in &a.remember {
            take_or_extend(w, mark, now)?;
        }
        if !drop.is_empty() {
            let n = &a.job.notification;
            let keep = n
                .alerts
                .iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, a)| a.clone())
                .collect::<Vec<_>>();
            if keep.is_empty() {
                out.push(Admitted::Empty {
                    dropped: drop.len(),
                });
                bodies.push(None);
                spent.push((json, a));
                continue;
            }
            // Its own notification now, and its own body.
            a.job.notification = Arc::new(n.subset(keep));
            json = pack(&encode(&a.job.notification)?).into();
        }
        let (id, body) = insert_job(&w.conn, written, &a.job, &json, a.not_before, a.held)?;
        queued += 1;
        out.push(Admitted::Queued {
            id,
            dropped: drop.len(),
        });
        bodies.push(Some(body));
        spent.push((json, a));
    }
    if w.live + queued > w.capacity || (queued > 0 && w.over_size()?) {
        // The savepoint is rolled back: the state taken above is undone too.
        return Err(StoreError::Full);
    }
    w.live += queued;
    Ok((out, bodies, spent))
}
