//! The embedded store passes the conformance kit, one test per check so failures are precise.

use argyll_store::EmbeddedStore;
use argyll_store::conformance as kit;

macro_rules! check {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            kit::$name(&EmbeddedStore::new()).await;
        }
    )*};
}

check!(
    append_and_read,
    stale_appends_conflict,
    concurrent_conflicting_appends,
    snapshots,
    feed_carries_every_append,
    flow_index,
    recently_deactivated,
    deactivated_before,
    leases,
    many_leases,
    lease_races,
    timers,
    delete_aggregates,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_kit_runs_on_fresh_stores() {
    kit::run_all(|| async { EmbeddedStore::new() }).await;
}
