//! On-call records in the shared Redis, with the meaning [`crate::store::oncall`] gives them
//! and `sqlite/oncall.rs` keeps in SQLite: one hash `oc:overrides` (id → the override as
//! JSON), ids from the counter `oc:override_id` so that every replica agrees which is later.

use chrono::{DateTime, Utc};

use super::RedisStore;
use crate::store::StoreError;
use crate::store::oncall::{KEEP_ENDED, NewOverride, Override};

const HASH: &str = "oc:overrides";
const NEXT_ID: &str = "oc:override_id";

fn decode(json: &str) -> Option<Override> {
    // A value this module wrote; an unreadable one is skipped rather than failing them all.
    serde_json::from_str(json).ok()
}

impl RedisStore {
    async fn all_overrides(&self) -> Result<Vec<Override>, StoreError> {
        let mut cmd = redis::cmd("HVALS");
        cmd.arg(self.key(HASH));
        let values: Vec<String> = self.cmd(cmd).await?;
        let mut all: Vec<Override> = values.iter().filter_map(|v| decode(v)).collect();
        all.sort_by_key(|o| o.id);
        Ok(all)
    }

    pub async fn override_add(
        &self,
        o: NewOverride,
        now: DateTime<Utc>,
    ) -> Result<Override, StoreError> {
        let stale: Vec<i64> = self
            .all_overrides()
            .await?
            .into_iter()
            .filter(|o| o.end < now - KEEP_ENDED)
            .map(|o| o.id)
            .collect();
        if !stale.is_empty() {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(self.key(HASH)).arg(stale);
            let _: i64 = self.cmd(cmd).await?;
        }
        let mut cmd = redis::cmd("INCR");
        cmd.arg(self.key(NEXT_ID));
        let id: i64 = self.cmd(cmd).await?;
        let o = o.with_id(id);
        let json =
            serde_json::to_string(&o).map_err(|e| StoreError::Db(format!("cannot encode: {e}")))?;
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.key(HASH)).arg(id).arg(json);
        let _: i64 = self.cmd(cmd).await?;
        Ok(o)
    }

    pub async fn override_delete(&self, schedule: String, id: i64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.key(HASH)).arg(id);
        let found: Option<String> = self.cmd(cmd).await?;
        match found.as_deref().and_then(decode) {
            Some(o) if o.schedule == schedule => {
                let mut cmd = redis::cmd("HDEL");
                cmd.arg(self.key(HASH)).arg(id);
                let n: i64 = self.cmd(cmd).await?;
                Ok(n > 0)
            }
            _ => Ok(false),
        }
    }

    pub async fn overrides(&self, now: DateTime<Utc>) -> Result<Vec<Override>, StoreError> {
        let mut all = self.all_overrides().await?;
        all.retain(|o| o.end > now);
        Ok(all)
    }
}
