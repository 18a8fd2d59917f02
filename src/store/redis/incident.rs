//! Incidents in the shared Redis, with the meaning [`crate::store::incident`] gives them and
//! `sqlite/incident.rs` keeps in SQLite: hash `oc:incidents` (id → the record as JSON), hash
//! `oc:incident_open` (receiver and groupKey → id of the open one), ids from the counter
//! `oc:incident_id`. Opening and every change are Lua scripts, so the open-or-create and the
//! compare-and-set are atomic across replicas; a change with the jobs it queues (pages, status
//! updates, timers) and the control job it settles is one script (`incident_commit.lua`
//! before the queue's own `complete.lua`).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;

use super::RedisStore;
use crate::store::incident::{Incident, IncidentState, reference};
use crate::store::{NewJob, StoreError};

const HASH: &str = "oc:incidents";
const OPEN: &str = "oc:incident_open";
const NEXT_ID: &str = "oc:incident_id";

/// ARGV: prefix, open key, id, json. Returns the open incident's JSON if there is one
/// (nothing stored), else stores this one and returns nothing.
static OPEN_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p = ARGV[1]
local id = redis.call('HGET', p .. 'oc:incident_open', ARGV[2])
if id then
  local cur = redis.call('HGET', p .. 'oc:incidents', id)
  if cur then return cur end
end
redis.call('HSET', p .. 'oc:incident_open', ARGV[2], ARGV[3])
redis.call('HSET', p .. 'oc:incidents', ARGV[3], ARGV[4])
return false
"#,
    )
});

/// ARGV: prefix, id, expected version, json, open key, resolved (0/1). Returns 1 if stored.
static UPDATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p = ARGV[1]
local cur = redis.call('HGET', p .. 'oc:incidents', ARGV[2])
if not cur then return 0 end
local ok, rec = pcall(cjson.decode, cur)
if not ok then return 0 end
if tostring(rec['version'] or 0) ~= ARGV[3] then return 0 end
redis.call('HSET', p .. 'oc:incidents', ARGV[2], ARGV[4])
if ARGV[6] == '1' then
  if redis.call('HGET', p .. 'oc:incident_open', ARGV[5]) == ARGV[2] then
    redis.call('HDEL', p .. 'oc:incident_open', ARGV[5])
  end
end
return 1
"#,
    )
});

/// The compare-and-set, then the queue's settle-and-add, in one script.
static COMMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("prelude.lua"),
        include_str!("incident_commit.lua"),
        include_str!("complete.lua")
    ))
});

fn encode(i: &Incident) -> Result<String, StoreError> {
    serde_json::to_string(i).map_err(|e| StoreError::Db(format!("cannot encode: {e}")))
}

fn decode(json: &str) -> Option<Incident> {
    // A value this module wrote; an unreadable one is skipped rather than failing them all.
    serde_json::from_str(json).ok()
}

impl RedisStore {
    pub async fn incident_open(&self, mut new: Incident) -> Result<(Incident, bool), StoreError> {
        let mut cmd = redis::cmd("INCR");
        cmd.arg(self.key(NEXT_ID));
        new.id = self.cmd(cmd).await?;
        new.reference = reference(new.id);
        new.version = 0;
        let (key, id, json) = (new.open_key(), new.id, encode(&new)?);
        let found: Option<String> = self
            .eval_durable(&OPEN_SCRIPT, |inv| {
                inv.arg(key).arg(id).arg(json);
            })
            .await?;
        match found {
            Some(cur) => match decode(&cur) {
                Some(i) => Ok((i, false)),
                None => Err(StoreError::Corrupt {
                    id,
                    message: "unreadable incident".into(),
                }),
            },
            None => Ok((new, true)),
        }
    }

    pub async fn incident_update(&self, incident: &Incident) -> Result<bool, StoreError> {
        let mut next = incident.clone();
        next.version = incident.version + 1;
        let (id, expected, json, key, resolved) = (
            next.id,
            incident.version.to_string(),
            encode(&next)?,
            next.open_key(),
            if next.state == IncidentState::Resolved {
                "1"
            } else {
                "0"
            },
        );
        let stored: i64 = self
            .eval_durable(&UPDATE_SCRIPT, |inv| {
                inv.arg(id).arg(expected).arg(json).arg(key).arg(resolved);
            })
            .await?;
        Ok(stored == 1)
    }

    pub async fn incident_commit(
        &self,
        incident: &Incident,
        done: Vec<i64>,
        then: Vec<NewJob>,
    ) -> Result<bool, StoreError> {
        let mut next = incident.clone();
        next.version = incident.version + 1;
        let jobs = super::job_args(&then)?;
        let (id, expected, json, key, resolved) = (
            next.id,
            incident.version.to_string(),
            encode(&next)?,
            next.open_key(),
            if next.state == IncidentState::Resolved {
                "1"
            } else {
                "0"
            },
        );
        let settled = done.clone();
        let stored: i64 = self
            .eval_durable(&COMMIT_SCRIPT, move |inv| {
                inv.arg(done.len()).arg(done).arg(jobs);
                inv.arg(id).arg(expected).arg(json).arg(key).arg(resolved);
            })
            .await?;
        if stored == 1 {
            self.forget_inflight(&settled);
        }
        Ok(stored == 1)
    }

    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.key(HASH)).arg(id);
        let found: Option<String> = self.cmd(cmd).await?;
        Ok(found.as_deref().and_then(decode))
    }

    pub async fn incident_of_group(&self, key: String) -> Result<Option<Incident>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.key(OPEN)).arg(key);
        let id: Option<i64> = self.cmd(cmd).await?;
        match id {
            Some(id) => self.incident(id).await,
            None => Ok(None),
        }
    }

    pub async fn incidents(&self, keep_since: DateTime<Utc>) -> Result<Vec<Incident>, StoreError> {
        let mut cmd = redis::cmd("HVALS");
        cmd.arg(self.key(HASH));
        let values: Vec<String> = self.cmd(cmd).await?;
        let mut all: Vec<Incident> = values.iter().filter_map(|v| decode(v)).collect();
        let stale: Vec<i64> = all
            .iter()
            .filter(|i| i.state == IncidentState::Resolved)
            .filter(|i| i.resolved_at.is_some_and(|t| t < keep_since))
            .map(|i| i.id)
            .collect();
        if !stale.is_empty() {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(self.key(HASH)).arg(&stale);
            let _: i64 = self.cmd(cmd).await?;
            all.retain(|i| !stale.contains(&i.id));
        }
        all.sort_by_key(|i| std::cmp::Reverse(i.id));
        Ok(all)
    }
}
