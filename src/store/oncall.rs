//! What on-call keeps: schedule overrides (someone covering a schedule from a start until an
//! end, for one person or for whoever is on call). Overrides are state, not configuration:
//! they are set from the API and outlive reloads. This module holds the record and the
//! dispatch; each backend keeps them its own way (`sqlite/oncall.rs`, `redis/oncall.rs`), and
//! [`crate::oncall::schedule`] says what they mean.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Overrides that ended longer ago than this are pruned when another is added.
pub const KEEP_ENDED: Duration = Duration::days(30);

/// Someone covering `schedule` from `start` until `end` (excluded): for `replaces` only, or
/// without it for whoever is on call. Ids grow: a greater id is a later override, which wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub id: i64,
    pub schedule: String,
    pub person: String,
    #[serde(default)]
    pub replaces: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// An override to store; the store gives it its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOverride {
    pub schedule: String,
    pub person: String,
    pub replaces: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl NewOverride {
    pub(super) fn with_id(self, id: i64) -> Override {
        Override {
            id,
            schedule: self.schedule,
            person: self.person,
            replaces: self.replaces,
            start: self.start,
            end: self.end,
        }
    }
}

impl Store {
    /// Stores an override and returns it with its id; prunes long-ended ones on the way.
    pub async fn override_add(
        &self,
        o: NewOverride,
        now: DateTime<Utc>,
    ) -> Result<Override, StoreError> {
        match self {
            Store::Sqlite(s) => s.override_add(o, now).await,
            Store::Redis(s) => s.override_add(o, now).await,
        }
    }

    /// Removes override `id` of `schedule`; false if there is none.
    pub async fn override_delete(&self, schedule: String, id: i64) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.override_delete(schedule, id).await,
            Store::Redis(s) => s.override_delete(schedule, id).await,
        }
    }

    /// Every override not ended at `now`, by id.
    pub async fn overrides(&self, now: DateTime<Utc>) -> Result<Vec<Override>, StoreError> {
        match self {
            Store::Sqlite(s) => s.overrides(now).await,
            Store::Redis(s) => s.overrides(now).await,
        }
    }
}
