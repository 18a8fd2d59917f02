//! The flusher: a thread that makes the writer's commits durable and only then answers the
//! requests that wrote, while the writer already runs the next batch.
//!
//! The writer's connection commits with `synchronous=NORMAL`: SQLite appends the batch's
//! frames to the WAL and returns without an `fsync`. The writer hands the batch's answers to
//! this thread and goes on with the next batch; this thread `fdatasync`s the WAL file and then
//! answers every batch committed before that sync began — one sync for all of them, as a
//! database's WAL writer does. An answer that says "written" therefore still comes after the
//! `fsync` that makes it survive a power loss, as with `synchronous=FULL`; what changed is that
//! the writer no longer waits for it (with `FULL`, the sync was half of the writer's time in a
//! burst, and every webhook waiting behind a batch waited for that batch's sync too).
//!
//! Why the WAL's prefix is always what survives: SQLite reads the WAL back frame by frame,
//! each frame's checksum covering all before it, so a later commit never survives without the
//! earlier ones. It syncs the WAL itself before every checkpoint copies frames into the
//! database (`synchronous=NORMAL` does that as `FULL` does) and syncs the WAL's header when it
//! starts the file over, so a restart never lets new frames be taken for old ones.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use super::writer::Reply;
use crate::store::StoreError;

/// Makes what the writer committed so far durable.
pub(super) type Sync = Box<dyn FnMut() -> Result<(), String> + Send>;

/// `fdatasync` of the WAL file at `path`, opened once (again after a failure). A sync through
/// another descriptor of the same file covers every write to it before the call.
pub(super) fn sync_wal(path: PathBuf) -> Sync {
    let mut file: Option<File> = None;
    Box::new(move || {
        let f = match file.take() {
            Some(f) => f,
            None => OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        };
        f.sync_data()
            .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
        file = Some(f);
        Ok(())
    })
}

/// Answers each batch of `batches` (the replies of requests that wrote, from commits that
/// succeeded) after a sync that began once it was committed, until the writer is gone. A
/// failed sync answers the batches it was for with its error: what they wrote may not survive
/// a power loss, so their senders hear it was not stored and send again (dedupe takes what
/// did survive).
pub(super) fn run_flusher(mut sync: Sync, batches: Receiver<Vec<Reply>>) {
    while let Ok(first) = batches.recv() {
        let mut replies = first;
        while let Ok(more) = batches.try_recv() {
            replies.extend(more);
        }
        let outcome = sync().err().map(|e| {
            tracing::error!(error = %e, requests = replies.len(), "store: a commit could not be made durable");
            StoreError::Db(format!("the commit could not be made durable: {e}"))
        });
        for reply in replies {
            reply(outcome.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A reply that reports what it was answered on `to`.
    fn reply(to: &mpsc::Sender<(u32, Option<String>)>, n: u32) -> Reply {
        let to = to.clone();
        Box::new(move |e: Option<&StoreError>| {
            let _ = to.send((n, e.map(|e| e.to_string())));
        })
    }

    /// The answers wait for the sync; batches committed while one sync runs share the next.
    #[test]
    fn answers_after_the_sync_and_one_sync_serves_the_batches_waiting() {
        let (syncing, sync_began) = mpsc::channel::<()>();
        let (release, gate) = mpsc::channel::<()>();
        let sync: Sync = Box::new(move || {
            let _ = syncing.send(());
            gate.recv().map_err(|e| e.to_string())
        });
        let (batches, taken) = mpsc::channel();
        let flusher = std::thread::spawn(move || run_flusher(sync, taken));
        let (answers, answered) = mpsc::channel();
        batches.send(vec![reply(&answers, 1)]).unwrap();
        sync_began.recv().unwrap();
        // Committed while the first sync runs: neither answered yet.
        batches.send(vec![reply(&answers, 2)]).unwrap();
        batches.send(vec![reply(&answers, 3), reply(&answers, 4)]).unwrap();
        assert!(answered.try_recv().is_err(), "answered before its sync");
        release.send(()).unwrap();
        assert_eq!(answered.recv().unwrap(), (1, None));
        // The second sync is for 2, 3 and 4 together.
        sync_began.recv().unwrap();
        assert!(answered.try_recv().is_err(), "answered before its sync");
        release.send(()).unwrap();
        let rest: Vec<_> = (0..3).map(|_| answered.recv().unwrap()).collect();
        assert_eq!(rest, vec![(2, None), (3, None), (4, None)]);
        drop(batches);
        flusher.join().unwrap();
        assert!(sync_began.try_recv().is_err(), "a sync for nothing");
    }

    #[test]
    fn a_failed_sync_answers_its_batches_with_the_error() {
        let mut fail = true;
        let sync: Sync = Box::new(move || {
            let r = if fail { Err("EIO".to_string()) } else { Ok(()) };
            fail = false;
            r
        });
        let (batches, taken) = mpsc::channel();
        let (answers, answered) = mpsc::channel();
        batches.send(vec![reply(&answers, 1)]).unwrap();
        drop(batches);
        run_flusher(sync, taken);
        let (n, e) = answered.recv().unwrap();
        assert_eq!(n, 1);
        let e = e.expect("an error");
        assert!(e.contains("could not be made durable: EIO"), "{e}");
    }

    #[test]
    fn syncs_the_wal_file_and_says_which_it_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite3-wal");
        let mut sync = sync_wal(path.clone());
        let e = sync().unwrap_err();
        assert!(e.starts_with("cannot open ") && e.contains("queue.sqlite3-wal"), "{e}");
        std::fs::write(&path, b"frames").unwrap();
        sync().unwrap();
        sync().unwrap();
    }
}
