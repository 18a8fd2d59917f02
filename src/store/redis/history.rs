//! The delivery history in the shared Redis, with the meaning [`crate::store::history`] gives
//! it: one JSON value per record (`h:rec:<id>`), ids from `h:seq`, a sorted set by acceptance
//! time (`h:time`) for listing and pruning, and pointers from a job (`h:job:<job>`) and from
//! a digest waiting for its job (`h:adopt:<receiver>\n<integration>`) to a record. Pointers
//! expire with the retention; one left dangling by pruning reads as absent.
//!
//! An update reads, changes and writes back a record without a script: a job is delivered by
//! one replica at a time, so its records have one writer, and a lost race costs a stale line
//! in the history, never a delivery.

use chrono::{DateTime, Utc};

use super::{RedisStore, ms};
use crate::store::StoreError;
use crate::store::history::{Delivery, DeliveryState, HistoryFilter, Retention, Update};

/// Records read per `MGET`.
const CHUNK: usize = 500;

fn encode(d: &Delivery) -> Result<String, StoreError> {
    serde_json::to_string(d).map_err(|e| StoreError::Db(e.to_string()))
}

fn adoptable(d: &Delivery) -> bool {
    d.job.is_none() && d.merged.is_some() && d.state == DeliveryState::Queued
}

impl RedisStore {
    async fn history_read(&self, id: i64) -> Result<Option<Delivery>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(&format!("h:rec:{id}")));
        let raw: Option<String> = self.cmd(cmd).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    async fn history_pointer(&self, name: String) -> Result<Option<i64>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(&name));
        let raw: Option<String> = self.cmd(cmd).await?;
        Ok(raw.and_then(|r| r.parse().ok()))
    }

    /// Writes a record (assigning an id when it has none) and its pointers.
    async fn history_write(
        &self,
        d: &mut Delivery,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        if d.id == 0 {
            let mut cmd = redis::cmd("INCR");
            cmd.arg(self.key("h:seq"));
            d.id = self.cmd(cmd).await?;
        }
        let expires = ms(now) + keep.max_age.as_millis() as i64;
        let adopt = format!("h:adopt:{}\n{}", d.receiver, d.integration);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.key(&format!("h:rec:{}", d.id)))
            .arg(encode(d)?)
            .arg("PXAT")
            .arg(expires)
            .ignore();
        pipe.cmd("ZADD")
            .arg(self.key("h:time"))
            .arg(ms(d.accepted_at))
            .arg(d.id)
            .ignore();
        if let Some(job) = d.job {
            pipe.cmd("SET")
                .arg(self.key(&format!("h:job:{job}")))
                .arg(d.id)
                .arg("PXAT")
                .arg(expires)
                .ignore();
        }
        if adoptable(d) {
            pipe.cmd("SET")
                .arg(self.key(&adopt))
                .arg(d.id)
                .arg("PXAT")
                .arg(expires)
                .ignore();
        }
        self.run_on(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await?;
        Ok(d.id)
    }

    async fn history_prune(&self, keep: Retention, now: DateTime<Utc>) -> Result<(), StoreError> {
        let time = self.key("h:time");
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&time)
            .arg("-inf")
            .arg(format!("({}", ms(keep.cutoff(now))));
        let mut old: Vec<i64> = self.cmd(cmd).await?;
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(&time);
        let count: usize = self.cmd(cmd).await?;
        let over = count.saturating_sub(old.len()).saturating_sub(keep.max);
        if over > 0 {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(&time).arg(old.len()).arg(old.len() + over - 1);
            old.extend(self.cmd::<Vec<i64>>(cmd).await?);
        }
        for chunk in old.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            pipe.cmd("ZREM").arg(&time).arg(chunk).ignore();
            let keys: Vec<String> = chunk
                .iter()
                .map(|id| self.key(&format!("h:rec:{id}")))
                .collect();
            pipe.cmd("DEL").arg(keys).ignore();
            self.run_on(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
                .await?;
        }
        Ok(())
    }

    pub async fn history_add(
        &self,
        records: Vec<Delivery>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut ids = Vec::with_capacity(records.len());
        for mut d in records {
            // The worker got there first (it delivered before the accept path recorded the
            // job): its record is the newer truth.
            if let Some(job) = d.job
                && let Some(id) = self.history_pointer(format!("h:job:{job}")).await?
                && self.history_read(id).await?.is_some()
            {
                ids.push(id);
                continue;
            }
            d.id = 0;
            ids.push(self.history_write(&mut d, keep, now).await?);
        }
        self.history_prune(keep, now).await?;
        Ok(ids)
    }

    pub async fn history_update(
        &self,
        updates: Vec<Update>,
        keep: Retention,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut inserted = false;
        for u in updates {
            let found = match self.history_pointer(format!("h:job:{}", u.job)).await? {
                Some(id) => self.history_read(id).await?,
                None => None,
            };
            if let Some(mut d) = found {
                d.apply(&u.change, now);
                self.history_write(&mut d, keep, now).await?;
                continue;
            }
            let Some(mut fresh) = u.or_insert else {
                continue;
            };
            let adopt = format!("h:adopt:{}\n{}", fresh.receiver, fresh.integration);
            let digest = match self.history_pointer(adopt.clone()).await? {
                Some(id) => self.history_read(id).await?.filter(adoptable),
                None => None,
            };
            if let Some(mut d) = digest {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(self.key(&adopt));
                self.cmd::<()>(cmd).await?;
                d.job = Some(u.job);
                d.apply(&u.change, now);
                self.history_write(&mut d, keep, now).await?;
                continue;
            }
            fresh.id = 0;
            fresh.job = Some(u.job);
            fresh.apply(&u.change, now);
            self.history_write(&mut fresh, keep, now).await?;
            inserted = true;
        }
        if inserted {
            self.history_prune(keep, now).await?;
        }
        Ok(())
    }

    pub async fn history(&self, filter: HistoryFilter) -> Result<Vec<Delivery>, StoreError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.key("h:time")).arg(0).arg(-1);
        let ids: Vec<i64> = self.cmd(cmd).await?;
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let mut cmd = redis::cmd("MGET");
            for id in chunk {
                cmd.arg(self.key(&format!("h:rec:{id}")));
            }
            let raw: Vec<Option<String>> = self.cmd(cmd).await?;
            out.extend(
                raw.into_iter()
                    .flatten()
                    .filter_map(|r| serde_json::from_str::<Delivery>(&r).ok())
                    .filter(|d| filter.matches(d)),
            );
        }
        out.sort_by_key(|d| std::cmp::Reverse(d.id));
        out.truncate(filter.limit);
        Ok(out)
    }
}
