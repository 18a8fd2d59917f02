//! The tables of the queue, the dedupe state and the counters, and what an older store gets
//! when it is opened: the columns it lacks, its dedupe table rebuilt without rowids, the
//! indexes no longer kept dropped (the history's, chatops' and the bodies' tables are in their
//! own modules).

use rusqlite::Connection;

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
CREATE TABLE IF NOT EXISTS dedupe (
    key        TEXT PRIMARY KEY,
    value      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL            -- unix milliseconds; absent from then on
) WITHOUT ROWID;
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

/// The dedupe state's expiry index, no longer kept: each merged key wrote a page of it besides
/// the table's own (two fifths of a merge's time); expired keys go as the merge passes their
/// part of the key space instead ([`super::dedupe`]).
const DEDUPE_EXPIRY: &str = "DROP INDEX IF EXISTS dedupe_expiry;";

/// Creates what is missing: the tables of every module, and the columns of stores written
/// before they existed (resolved jobs held for grouping, attempts counted at their start, the
/// history's notification in a column of its own, the body a job or record reads); rebuilds a
/// dedupe table with rowids without them; drops the indexes no longer kept.
pub(super) fn create(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(SCHEMA)?;
    super::bodies::create(conn)?;
    conn.execute_batch(super::inbox::SCHEMA)?;
    conn.execute_batch(super::dedupe::SCHEMA)?;
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
    dedupe_without_rowid(conn)?;
    conn.execute_batch(DEDUPE_EXPIRY)?;
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

/// Rebuilds a dedupe table written with rowids (a store from before) as WITHOUT ROWID, its
/// keys kept, in one transaction.
fn dedupe_without_rowid(conn: &Connection) -> Result<(), rusqlite::Error> {
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'dedupe'",
        [],
        |r| r.get(0),
    )?;
    if sql.to_ascii_uppercase().contains("WITHOUT ROWID") {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE dedupe_new (
             key        TEXT PRIMARY KEY,
             value      INTEGER NOT NULL,
             expires_at INTEGER NOT NULL
         ) WITHOUT ROWID;
         INSERT INTO dedupe_new (key, value, expires_at) SELECT key, value, expires_at FROM dedupe;
         DROP TABLE dedupe;
         ALTER TABLE dedupe_new RENAME TO dedupe;
         COMMIT;",
    )
}
