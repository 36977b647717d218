//! The store conformance kit on real Redis: a single `redis-server` and a three-node Redis
//! Cluster, both started on free ports for this test binary. Every check gets fresh key
//! prefixes, so the checks share the servers without seeing each other's data.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::OnceLock;

use argyll_store::conformance as kit;
use argyll_store_redis::{RedisConfig, RedisStore};
use argyll_testkit::{RedisCluster, RedisServer, unique};

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().expect("redis-server starts"))
}

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start().expect("a local Redis Cluster starts"))
}

async fn store_at(addr: &str) -> RedisStore {
    let prefix = unique("argyll-test");
    RedisStore::connect(
        RedisConfig::new(addr, &format!("{prefix}:engine")),
        RedisConfig::new(addr, &format!("{prefix}:flow")),
    )
    .await
    .unwrap()
}

macro_rules! check {
    ($module:ident, $addr:expr, $($name:ident),* $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    kit::$name(&store_at(&$addr).await).await;
                }
            )*
        }
    };
}

argyll_store::for_each_conformance_check!(check!(single, server().addr(),));

argyll_store::for_each_conformance_check!(check!(cluster, cluster().addrs(),));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_kit_runs_on_fresh_stores() {
    let addr = server().addr();
    kit::run_all(|| store_at(&addr)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_and_flow_stores_can_be_two_servers() {
    let other = RedisServer::start().unwrap();
    let prefix = unique("two");
    let make = || async {
        RedisStore::connect(
            RedisConfig::new(&server().addr(), &format!("{prefix}:engine")),
            RedisConfig::new(&other.addr(), &format!("{prefix}:flow")),
        )
        .await
        .unwrap()
    };
    kit::append_and_read(&make().await).await;
    kit::feed_carries_every_append(&make().await).await;
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_naming_its_address() {
    let port = argyll_testkit::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let error = RedisStore::connect(RedisConfig::new(&addr, "x"), RedisConfig::new(&addr, "y"))
        .await
        .expect_err("no server there");
    assert!(error.to_string().contains(&addr), "{error}");
}

#[tokio::test]
async fn memory_usage_reports_used_and_max_memory() {
    use argyll_store::StoreInfo;
    let limited = RedisServer::start_with(&["--maxmemory", "64mb"]).unwrap();
    let store = store_at(&limited.addr()).await;
    let usage = store
        .memory_usage()
        .await
        .unwrap()
        .expect("Redis has a memory gauge");
    assert!(usage.used_bytes > 0);
    assert_eq!(usage.max_bytes, 64 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_is_not_reported_as_unavailable() {
    use argyll_store::{FlowIndex, FlowIndexEntry, FlowOutcome, FlowPhase, StoreError};
    // The flow index's entries key holding a string: every index script fails with WRONGTYPE.
    let prefix = unique("argyll-test");
    let store = RedisStore::connect(
        RedisConfig::new(&server().addr(), &format!("{prefix}:engine")),
        RedisConfig::new(&server().addr(), &format!("{prefix}:flow")),
    )
    .await
    .unwrap();
    let key = format!("{{{prefix}:flow:index}}:entries");
    argyll_testkit::redis_command(server().port(), &["SET", &key, "not a hash"]).unwrap();
    let entry = FlowIndexEntry {
        flow_id: "f".into(),
        goals: Vec::new(),
        parent_flow_id: None,
        outcome: FlowOutcome::Active,
        phase: FlowPhase::Active,
        created_at: argyll_model::Timestamp::default(),
        completed_at: None,
        error: None,
    };
    let error = store.insert_flow(entry).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Refused(ref message) if message.contains("WRONGTYPE")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_malformed_address_is_a_configuration_error() {
    use argyll_store::StoreError;
    for addr in ["no-port", "127.0.0.1:port"] {
        let error = RedisStore::connect(RedisConfig::new(addr, "x"), RedisConfig::new(addr, "y"))
            .await
            .expect_err("refused");
        assert!(
            matches!(error, StoreError::Misconfigured(ref message) if message.contains(addr)),
            "{addr}: {error:?}"
        );
    }
}

/// Flows indexed before the creation-time zset existed (by an older version: no zset, no
/// marker) are added to it on the first listing in a time order, in batches, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_indexed_before_the_creation_order_are_added_on_first_use() {
    use argyll_model::Timestamp;
    use argyll_store::{FlowIndex, FlowIndexEntry, FlowOrder, FlowOutcome, FlowPhase, FlowQuery};
    let prefix = unique("argyll-test");
    let connect = || async {
        RedisStore::connect(
            RedisConfig::new(&server().addr(), &format!("{prefix}:engine")),
            RedisConfig::new(&server().addr(), &format!("{prefix}:flow")),
        )
        .await
        .unwrap()
    };
    let store = connect().await;
    let flows: i64 = 1_100;
    for n in 0..flows {
        store
            .insert_flow(FlowIndexEntry {
                flow_id: format!("f{n:04}"),
                goals: Vec::new(),
                parent_flow_id: None,
                outcome: FlowOutcome::Active,
                phase: FlowPhase::Active,
                created_at: Timestamp::from_unix_millis(1_000_000 - n),
                completed_at: None,
                error: None,
            })
            .await
            .unwrap();
    }
    let ids_key = format!("{{{prefix}:flow:index}}:ids");
    let port = server().port();
    let deleted = argyll_testkit::redis_command(
        port,
        &[
            "DEL",
            &format!("{ids_key}:by-created"),
            &format!("{ids_key}:by-created-complete"),
        ],
    )
    .unwrap();
    assert_eq!(deleted, ":1\r\n", "the zset existed, the marker not yet");
    let store = connect().await;
    let query = FlowQuery {
        order: FlowOrder::OldestFirst,
        limit: 2,
        ..FlowQuery::default()
    };
    let page = store.list_flows(&query).await.unwrap();
    let ids: Vec<&str> = page.entries.iter().map(|e| e.flow_id.as_str()).collect();
    assert_eq!(ids, ["f1099", "f1098"]);
    assert_eq!(
        argyll_testkit::redis_command(port, &["ZCARD", &format!("{ids_key}:by-created")]).unwrap(),
        format!(":{flows}\r\n")
    );
    assert_eq!(
        argyll_testkit::redis_command(port, &["EXISTS", &format!("{ids_key}:by-created-complete")])
            .unwrap(),
        ":1\r\n"
    );
    let newest = store
        .list_flows(&FlowQuery {
            order: FlowOrder::NewestFirst,
            ..FlowQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(newest.entries.len(), 1_100);
    assert_eq!(newest.entries[0].flow_id, "f0000");
}
