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

argyll_store::for_each_conformance_check!(check!());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_kit_runs_on_fresh_stores() {
    kit::run_all(|| async { EmbeddedStore::new() }).await;
}
