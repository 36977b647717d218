//! The store conformance kit on the local store: every check on a fresh data directory, with
//! synced writes (the default) and without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use argyll_store::conformance as kit;
use argyll_store_local::{LocalConfig, LocalStore, SyncMode};

/// A store on a fresh directory that lives as long as the store's test.
fn store(sync: SyncMode) -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalConfig {
        sync,
        ..LocalConfig::new(dir.path())
    };
    let store = LocalStore::open(&config).unwrap();
    (dir, store)
}

macro_rules! check {
    ($module:ident, $sync:expr, $($name:ident),* $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = store($sync);
                    kit::$name(&store).await;
                }
            )*
        }
    };
}

argyll_store::for_each_conformance_check!(check!(synced, SyncMode::Always,));

argyll_store::for_each_conformance_check!(check!(unsynced, SyncMode::Never,));
