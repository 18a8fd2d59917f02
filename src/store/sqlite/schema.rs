//! The tables of the queue, the dedupe state and the counters, and what an older store gets
//! when it is opened: the columns it lacks, its dedupe table moved into a run, its runs' keys
//! kept as digests, the indexes no longer kept dropped (the history's, chatops' and the bodies'
//! tables are in their own modules).

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;

use super::dedupe::digest_of;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver    TEXT    NOT NULL,
    integration TEXT    NOT NULL,            -- the integration's identity (older stores: its position)
    kind        TEXT    NOT NULL,
    notification TEXT   NOT NULL DEFAULT '', -- rows written before `body`: the Notification as JSON
    body        INTEGER,                     -- the notification's body (see bodies.rs)
    attempt     INTEGER NOT NULL DEFAULT 0,
    progress    TEXT    NOT NULL DEFAULT '[]', -- recipients already delivered, JSON array
    accepted_at INTEGER NOT NULL,            -- unix milliseconds
    not_before  INTEGER NOT NULL,            -- unix milliseconds
    state       TEXT    NOT NULL,            -- pending | inflight | dead
    fallback    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    reason      TEXT,
    failed_at   INTEGER,
    held        INTEGER NOT NULL DEFAULT 0,  -- resolved alerts waiting to be merged
    starts      INTEGER NOT NULL DEFAULT 0   -- attempts begun (attempt: those that ended)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, not_before);
CREATE INDEX IF NOT EXISTS jobs_target ON jobs (receiver, integration, state);
CREATE TABLE IF NOT EXISTS counters (
    key        TEXT PRIMARY KEY,
    value      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

/// Adds `table.column` (declared as `decl`) to a store written before the column existed.
pub(super) fn add_column(
    conn: &Connection,
    table: &str,
    column: &str,
    decl: &str,
) -> Result<(), rusqlite::Error> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// Creates what is missing: the tables of every module, and the columns of stores written
/// before they existed (resolved jobs held for grouping, attempts counted at their start, the
/// history's notification in a column of its own, the body a job or record reads); moves an
/// older dedupe table into a run and older runs' text keys to digests (SQL function
/// `dedupe_digest`, registered for the while); drops the indexes no longer kept.
pub(super) fn create(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(SCHEMA)?;
    super::bodies::create(conn)?;
    conn.execute_batch(super::inbox::SCHEMA)?;
    conn.execute_batch(super::dedupe::SCHEMA)?;
    conn.execute_batch(super::dedupe_runs::SCHEMA)?;
    conn.execute_batch(super::chatops::SCHEMA)?;
    conn.execute_batch(super::history::SCHEMA)?;
    for (table, column, decl) in [
        ("jobs", "held", "INTEGER NOT NULL DEFAULT 0"),
        ("jobs", "starts", "INTEGER NOT NULL DEFAULT 0"),
        ("jobs", "body", "INTEGER"),
        ("history", "notification", "TEXT"),
        ("history", "body", "INTEGER"),
    ] {
        add_column(conn, table, column, decl)?;
    }
    conn.create_scalar_function(
        "dedupe_digest",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => digest_of(t).to_vec(),
                ValueRef::Blob(b) => b.to_vec(),
                _ => Vec::new(),
            })
        },
    )?;
    let moved = dedupe_into_a_run(conn).and_then(|()| run_keys_as_digests(conn));
    conn.remove_function("dedupe_digest", 1)?;
    moved?;
    conn.execute_batch(super::history::INDEXES)?;
    conn.execute_batch(&control_due())?;
    Ok(())
}

/// The on-call engine's pending control jobs by due time: a partial index, so only those
/// rows (a few per open incident) pay for it, and [`super::Sqlite::claim_control`] finds a
/// due timer without walking the deliveries' backlog.
fn control_due() -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS jobs_control_due ON jobs (not_before)
         WHERE kind = '{}' AND state = 'pending';",
        crate::store::incident::CONTROL_KIND
    )
}

/// Moves the key-ordered dedupe table of an older store (with rowids or without, and its
/// expiry index) into a sealed run ([`super::dedupe_runs`]), older than any row of the log,
/// its keys as digests (`dedupe_digest`, see [`create`]), in one transaction.
fn dedupe_into_a_run(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'dedupe'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT INTO dedupe_runs (run, key, value, expires_at)
             SELECT 1 + (SELECT coalesce(max(run), 0) FROM dedupe_run_list), dedupe_digest(key),
                    value, expires_at
             FROM dedupe;
         INSERT INTO dedupe_run_list (run, upto, keys, expires_at, state)
             SELECT run, 0, count(*), max(expires_at), 'sealed' FROM dedupe_runs
             WHERE run = 1 + (SELECT coalesce(max(run), 0) FROM dedupe_run_list) GROUP BY run;
         DROP TABLE dedupe;
         COMMIT;",
    )
}

/// Runs written before keys were kept as digests (`dedupe_runs.key` declared `TEXT`) get each
/// key replaced by its digest, in a table declared anew, in one transaction. (The log's older
/// rows need nothing: the log is only read at open, and a text key read is digested.)
fn run_keys_as_digests(conn: &Connection) -> Result<(), rusqlite::Error> {
    let text: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('dedupe_runs')
         WHERE name = 'key' AND upper(type) = 'TEXT'",
        [],
        |r| r.get(0),
    )?;
    if !text {
        return Ok(());
    }
    let moved = conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {}
         INSERT INTO dedupe_runs_digests (run, key, value, expires_at)
             SELECT run, dedupe_digest(key), value, expires_at FROM dedupe_runs;
         DROP TABLE dedupe_runs;
         ALTER TABLE dedupe_runs_digests RENAME TO dedupe_runs;
         COMMIT;",
        super::dedupe_runs::SCHEMA.replace(
            "CREATE TABLE IF NOT EXISTS dedupe_runs (",
            "CREATE TABLE dedupe_runs_digests ("
        )
    ));
    if moved.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    moved
}
