//! The hourly counters of [`crate::store::stats`] in SQLite: table `stats_hourly`, one row per
//! (hour, what, key); `what` is `s` for a severity, `n` for an alert name. The table is created
//! on first use; old hours are deleted as new ones are counted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db, from_ms, ms};
use crate::store::StoreError;
use crate::store::stats::{Hour, KEEP, MAX_NAMES_PER_HOUR, OTHER_NAMES, Tally, hour_of};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS stats_hourly (
    hour  INTEGER NOT NULL,   -- unix milliseconds of the hour's start
    what  TEXT    NOT NULL,   -- s: severity, n: alert name
    key   TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (hour, what, key)
) WITHOUT ROWID;
"#;

impl SqliteStore {
    pub async fn stats_add(&self, tally: Tally, now: DateTime<Utc>) -> Result<(), StoreError> {
        let hour = ms(hour_of(now));
        let oldest = ms(hour_of(now - KEEP));
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            w.conn
                .prepare_cached("DELETE FROM stats_hourly WHERE hour < ?1")
                .and_then(|mut s| s.execute(params![oldest]))
                .map_err(db)?;
            let mut bump = w
                .conn
                .prepare_cached(
                    "INSERT INTO stats_hourly (hour, what, key, n) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (hour, what, key) DO UPDATE SET n = n + 1",
                )
                .map_err(db)?;
            bump.execute(params![hour, "s", tally.severity])
                .map_err(db)?;
            let mut known = w
                .conn
                .prepare_cached(
                    "SELECT 1 FROM stats_hourly WHERE hour = ?1 AND what = 'n' AND key = ?2",
                )
                .map_err(db)?;
            let mut names = w
                .conn
                .prepare_cached("SELECT count(*) FROM stats_hourly WHERE hour = ?1 AND what = 'n'")
                .map_err(db)?;
            for name in &tally.alertnames {
                let seen = known
                    .query_row(params![hour, name], |_| Ok(()))
                    .optional()
                    .map_err(db)?
                    .is_some();
                let full = !seen && {
                    let n: i64 = names.query_row(params![hour], |r| r.get(0)).map_err(db)?;
                    n as usize >= MAX_NAMES_PER_HOUR
                };
                let key = if !full { name.as_str() } else { OTHER_NAMES };
                bump.execute(params![hour, "n", key]).map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn stats(&self, since: DateTime<Utc>) -> Result<Vec<Hour>, StoreError> {
        let since = ms(since);
        self.call(move |w| {
            w.conn.execute_batch(SCHEMA).map_err(db)?;
            let mut stmt = w
                .conn
                .prepare_cached(
                    "SELECT hour, what, key, n FROM stats_hourly WHERE hour >= ?1 ORDER BY hour, what, n DESC, key",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![since], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(db)?;
            let mut hours: BTreeMap<i64, Hour> = BTreeMap::new();
            for row in rows {
                let (hour, what, key, n) = row.map_err(db)?;
                let h = hours.entry(hour).or_insert_with(|| Hour {
                    hour: from_ms(hour),
                    ..Hour::default()
                });
                let n = n.max(0) as u64;
                match what.as_str() {
                    "s" => h.severities.push((key, n)),
                    _ => h.alertnames.push((key, n)),
                }
            }
            Ok(hours.into_values().collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn tally(severity: &'static str, names: &[&str]) -> Tally {
        Tally {
            severity,
            alertnames: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn counts_per_hour_bounded_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), 100, true).unwrap();
        let t0: DateTime<Utc> = "2026-12-01T10:15:00Z".parse().unwrap();
        store
            .stats_add(tally("critical", &["A", "B"]), t0)
            .await
            .unwrap();
        store
            .stats_add(tally("critical", &["A"]), t0)
            .await
            .unwrap();
        store
            .stats_add(tally("warning", &["A"]), t0 + Duration::hours(1))
            .await
            .unwrap();
        let hours = store.stats(t0 - Duration::hours(2)).await.unwrap();
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[0].hour, hour_of(t0));
        assert_eq!(hours[0].severities, vec![("critical".to_string(), 2)]);
        assert_eq!(
            hours[0].alertnames,
            vec![("A".to_string(), 2), ("B".to_string(), 1)]
        );
        assert_eq!(hours[1].severities, vec![("warning".to_string(), 1)]);

        // Past the cap, new names of that hour are counted together.
        let t1 = t0 + Duration::hours(1);
        for i in 0..MAX_NAMES_PER_HOUR + 5 {
            store
                .stats_add(tally("info", &[&format!("N{i}")]), t1)
                .await
                .unwrap();
        }
        let hours = store.stats(hour_of(t1)).await.unwrap();
        assert_eq!(hours[0].alertnames.len(), MAX_NAMES_PER_HOUR + 1);
        assert!(hours[0].alertnames.contains(&(OTHER_NAMES.to_string(), 6)));

        // Counting eight days later drops the old hours.
        store
            .stats_add(tally("info", &["late"]), t0 + KEEP + Duration::hours(2))
            .await
            .unwrap();
        let hours = store.stats(t0 - Duration::hours(1)).await.unwrap();
        assert_eq!(hours.len(), 1, "{hours:?}");
    }
}
