//! The tables of the queue, the dedupe state and the counters, and the columns an older
//! store gets when it is opened (the history's and chatops' tables are in their own modules).

use rusqlite::Connection;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver    TEXT    NOT NULL,
    integration TEXT    NOT NULL,            -- the integration's identity (older stores: its position)
    kind        TEXT    NOT NULL,
    notification TEXT   NOT NULL,            -- the Notification as JSON
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
CREATE TABLE IF NOT EXISTS dedupe (
    key        TEXT PRIMARY KEY,
    value      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL            -- unix milliseconds; absent from then on
);
CREATE INDEX IF NOT EXISTS dedupe_expiry ON dedupe (expires_at);
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
/// history's notification in a column of its own).
pub(super) fn create(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(super::chatops::SCHEMA)?;
    conn.execute_batch(super::history::SCHEMA)?;
    for (table, column, decl) in [
        ("jobs", "held", "INTEGER NOT NULL DEFAULT 0"),
        ("jobs", "starts", "INTEGER NOT NULL DEFAULT 0"),
        ("history", "notification", "TEXT"),
    ] {
        add_column(conn, table, column, decl)?;
    }
    Ok(())
}
