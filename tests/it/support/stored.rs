//! Stored jobs as the backends hold them, read and written around the store's interface:
//! what an earlier version left behind (its `progress` strings), and what this one writes.

use std::collections::BTreeMap;
use std::path::Path;

use super::redis::RedisServer;

/// Where a store keeps its jobs.
#[derive(Clone, Copy)]
pub enum Raw<'a> {
    /// The SQLite store in this directory.
    Sqlite(&'a Path),
    /// A Redis store under this key prefix.
    Redis(&'a RedisServer, &'a str),
}

async fn redis(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every stored job's id and its Redis key.
async fn redis_jobs(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Vec<(i64, String)> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}job:*"))
        .query_async(conn)
        .await
        .unwrap();
    keys.into_iter()
        .filter_map(|k| Some((k.strip_prefix(&format!("{prefix}job:"))?.parse().ok()?, k)))
        .collect()
}

/// Each stored job's `progress`, exactly as stored (a JSON array), by job id.
pub async fn progress(raw: Raw<'_>) -> BTreeMap<i64, String> {
    match raw {
        Raw::Sqlite(dir) => {
            let conn = rusqlite::Connection::open(dir.join("queue.sqlite3")).unwrap();
            let mut stmt = conn.prepare("SELECT id, progress FROM jobs").unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }
        Raw::Redis(server, prefix) => {
            let mut conn = redis(server).await;
            let mut out = BTreeMap::new();
            for (id, key) in redis_jobs(&mut conn, prefix).await {
                let p: String = redis::cmd("HGET")
                    .arg(&key)
                    .arg("progress")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                out.insert(id, p);
            }
            out
        }
    }
}

/// Sets the `progress` of every stored job, pending or dead, to `json`.
pub async fn set_progress(raw: Raw<'_>, json: &str) {
    match raw {
        Raw::Sqlite(dir) => {
            let conn = rusqlite::Connection::open(dir.join("queue.sqlite3")).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            let n = conn
                .execute("UPDATE jobs SET progress = ?1", [json])
                .unwrap();
            assert!(n > 0, "no stored job");
        }
        Raw::Redis(server, prefix) => {
            let mut conn = redis(server).await;
            let jobs = redis_jobs(&mut conn, prefix).await;
            assert!(!jobs.is_empty(), "no stored job");
            for (_, key) in jobs {
                let () = redis::cmd("HSET")
                    .arg(&key)
                    .arg("progress")
                    .arg(json)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
}
