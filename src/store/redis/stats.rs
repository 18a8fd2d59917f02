//! The hourly counters of [`crate::store::stats`] in the shared Redis: one hash per hour,
//! `stats:{hour}` (see `stats_add.lua`), expiring [`KEEP`] after its hour, so nothing prunes.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use redis::Script;

use super::{RedisStore, ms};
use crate::store::StoreError;
use crate::store::stats::{Hour, KEEP, MAX_NAMES_PER_HOUR, OTHER_NAMES, Tally, hour_of};

static STATS_ADD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("stats_add.lua")));

impl RedisStore {
    pub async fn stats_add(&self, tally: Tally, now: DateTime<Utc>) -> Result<(), StoreError> {
        let hour = hour_of(now);
        let _: i64 = self
            .eval(&STATS_ADD, move |i| {
                i.arg(ms(hour))
                    .arg(ms(hour + KEEP))
                    .arg(MAX_NAMES_PER_HOUR)
                    .arg(OTHER_NAMES)
                    .arg(tally.severity);
                for n in tally.alertnames {
                    i.arg(n);
                }
            })
            .await?;
        Ok(())
    }

    /// Every hour from `since` to `last`, read in one pipeline.
    pub async fn stats(
        &self,
        since: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> Result<Vec<Hour>, StoreError> {
        let mut hours = Vec::new();
        let mut h = since;
        while h <= last && hours.len() <= (KEEP.num_hours() as usize) {
            hours.push(h);
            h += Duration::hours(1);
        }
        let mut pipe = redis::pipe();
        for h in &hours {
            pipe.cmd("HGETALL")
                .arg(self.key(&format!("stats:{}", ms(*h))));
        }
        let all: Vec<Vec<(String, i64)>> = self
            .run_on(|mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        let mut out = Vec::new();
        for (hour, fields) in hours.into_iter().zip(all) {
            if fields.is_empty() {
                continue;
            }
            let mut h = Hour {
                hour,
                ..Hour::default()
            };
            for (f, n) in fields {
                let n = n.max(0) as u64;
                if let Some(s) = f.strip_prefix("s:") {
                    h.severities.push((s.to_string(), n));
                } else if let Some(name) = f.strip_prefix("n:") {
                    h.alertnames.push((name.to_string(), n));
                }
            }
            // The order SQLite answers in: most first, then by name.
            for list in [&mut h.severities, &mut h.alertnames] {
                list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            }
            out.push(h);
        }
        Ok(out)
    }
}
