//! Faults for tests, kept out of the store itself: the writer has no flag to check, the fault
//! is SQLite's own (a commit hook that turns every commit into a rollback, as a full disk
//! would end it). Not for production use.

use super::SqliteStore;
use crate::store::StoreError;

/// While `on`, every commit of the store's writer fails and SQLite rolls the transaction
/// back: requests that wrote get an error, as on a full disk; reads still answer.
#[doc(hidden)]
pub async fn refuse_writes(store: &SqliteStore, on: bool) -> Result<(), StoreError> {
    store
        .call(move |w| {
            let hook = on.then_some(|| true);
            w.conn.commit_hook(hook).map_err(super::db)
        })
        .await
}
