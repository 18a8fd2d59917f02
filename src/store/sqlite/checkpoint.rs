//! The checkpointer: a thread with its own connection that copies the WAL back into the
//! database after commits, so that webhooks waiting for the writer's commits do not wait for
//! that copy.

use std::time::Duration;

use rusqlite::Connection;

/// WAL pages past which the writer checkpoints what the checkpointer has not copied yet.
pub(super) const WAL_PAGES: u32 = 4096;

/// Bytes of WAL file kept once it starts over.
pub(super) const WAL_KEEP_BYTES: u64 = 32 * 1024 * 1024;

/// Checkpoints run at most this often: each copies what the commits since the last one added
/// to the WAL back into the database.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies the WAL back into the database after commits, at most every [`CHECKPOINT_EVERY`],
/// until the writer is gone. A PASSIVE checkpoint never blocks the writer: it copies the frames
/// no reader still needs, and the writer starts the WAL over once all are copied. Ends with
/// the writer (its wake-up channel closes); the last connection closed checkpoints the rest.
pub(super) fn run_checkpointer(conn: Connection, commits: std::sync::mpsc::Receiver<()>) {
    let mut last: Option<std::time::Instant> = None;
    while commits.recv().is_ok() {
        if let Some(wait) = last.and_then(|t| CHECKPOINT_EVERY.checked_sub(t.elapsed())) {
            // Pacing, not synchronisation: commits meanwhile are copied by this checkpoint.
            std::thread::sleep(wait);
        }
        while commits.try_recv().is_ok() {}
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "store: cannot checkpoint the WAL; tried again after the next commit");
        }
        last = Some(std::time::Instant::now());
    }
}
