//! Several `argyll` processes on one Redis (issue 6): 2,000 flows of a three-step sync HTTP
//! chain started alternately through two engines, against a local step server that counts
//! the calls of every work item (by `receipt_token`). Three runs: both engines healthy; one
//! engine killed with SIGKILL mid-run; `redis-server` (AOF) restarted mid-run.
//!
//! `MANY_INSTANCES_FLOWS` changes the number of flows (default 2,000).

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argyll_testkit::RedisServer;
use support::chain::{
    call_histogram, index_counts, register_chain, start_flows, step_server, wait_all_completed,
};
use support::{EngineProcess, LEASE};

fn flows() -> usize {
    std::env::var("MANY_INSTANCES_FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// The three runs share the machine's two cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------------ the runs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_complete_every_flow_calling_each_item_once() {
    let _serial = SERIAL.lock().await;
    let count = flows();
    let redis = RedisServer::start().unwrap();
    let (steps, calls) = step_server().await;
    let client = reqwest::Client::new();
    let a = EngineProcess::start("a", &redis.addr());
    let b = EngineProcess::start("b", &redis.addr());
    a.wait_healthy(&client).await;
    b.wait_healthy(&client).await;
    register_chain(&client, &a.base, &steps).await;

    let started = Instant::now();
    start_flows(&client, &[a.base.clone(), b.base.clone()], "load", count).await;
    wait_all_completed(&client, &b.base, count, Duration::from_secs(300)).await;
    println!("{count} flows on two engines: {:?}", started.elapsed());

    let (tokens, histogram) = call_histogram(&calls);
    assert_eq!(tokens, 3 * count, "every work item was called");
    assert_eq!(
        histogram,
        HashMap::from([(1, 3 * count)]),
        "each exactly once"
    );
    let counts = index_counts(&client, &a.base).await;
    assert_eq!(counts, HashMap::from([("completed".to_owned(), count)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engine_s_work_is_finished_by_the_survivor() {
    let _serial = SERIAL.lock().await;
    let count = flows();
    let redis = RedisServer::start().unwrap();
    let (steps, calls) = step_server().await;
    let client = reqwest::Client::new();
    let survivor = EngineProcess::start("survivor", &redis.addr());
    let mut victim = EngineProcess::start("victim", &redis.addr());
    survivor.wait_healthy(&client).await;
    victim.wait_healthy(&client).await;
    register_chain(&client, &survivor.base, &steps).await;

    start_flows(
        &client,
        &[survivor.base.clone(), victim.base.clone()],
        "load",
        count,
    )
    .await;
    // Kill the victim while work is in flight.
    loop {
        let done = index_counts(&client, &survivor.base)
            .await
            .get("completed")
            .copied()
            .unwrap_or(0);
        if done >= count / 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    victim.kill();
    let killed_at = Instant::now();
    if std::env::var("MANY_INSTANCES_LOGS").is_ok() {
        for _ in 0..15 {
            let counts = index_counts(&client, &survivor.base).await;
            println!("{:?} after the kill: {counts:?}", killed_at.elapsed());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    wait_all_completed(&client, &survivor.base, count, Duration::from_secs(300)).await;
    println!(
        "after SIGKILL of one engine: all {count} flows completed {:?} later (lease {LEASE})",
        killed_at.elapsed()
    );

    let (tokens, histogram) = call_histogram(&calls);
    assert_eq!(tokens, 3 * count, "every work item was called");
    let twice = histogram.get(&2).copied().unwrap_or(0);
    assert_eq!(
        histogram.keys().copied().max(),
        Some(if twice > 0 { 2 } else { 1 }),
        "at most twice: {histogram:?}"
    );
    println!("work items called twice (at-least-once after the kill): {twice}");
    if std::env::var("MANY_INSTANCES_LOGS").is_ok() {
        println!("--- survivor log\n{}", survivor.log());
    }
    let counts = index_counts(&client, &survivor.base).await;
    assert_eq!(counts, HashMap::from([("completed".to_owned(), count)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let count = flows();
    let mut redis = RedisServer::start_persistent().unwrap();
    let (steps, calls) = step_server().await;
    let client = reqwest::Client::new();
    let a = EngineProcess::start("a", &redis.addr());
    let b = EngineProcess::start("b", &redis.addr());
    a.wait_healthy(&client).await;
    b.wait_healthy(&client).await;
    register_chain(&client, &a.base, &steps).await;

    let engines = [a.base.clone(), b.base.clone()];
    let starter = {
        let client = client.clone();
        tokio::spawn(async move { start_flows(&client, &engines, "load", count).await })
    };
    while calls.lock().unwrap().len() < count / 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart().unwrap();
    starter.await.unwrap();
    wait_all_completed(&client, &a.base, count, Duration::from_secs(300)).await;

    let counts = index_counts(&client, &b.base).await;
    assert_eq!(
        counts,
        HashMap::from([("completed".to_owned(), count)]),
        "none lost or duplicated"
    );
    let (tokens, histogram) = call_histogram(&calls);
    assert_eq!(tokens, 3 * count);
    println!("calls per work item across the Redis restart: {histogram:?}");
    let logs = a.log() + &b.log();
    assert!(
        logs.contains("redis connection lost"),
        "the outage is logged"
    );
}
