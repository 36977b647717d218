//! Archiving through the binary (issue 7): flows run on Redis are archived to a real S3 API
//! (`moto_server`) by the server's own archiver or by `argyll archive`, disappear from Redis,
//! and stay readable through the API (decision 20).

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use argyll_testkit::{MotoServer, RedisServer};
use serde_json::{Value, json};
use support::{EngineProcess, register_step, send};

fn archive_settings(moto: &MotoServer) -> Vec<(&'static str, String)> {
    vec![
        ("ARCHIVE_BUCKET_URL", "s3://flows".into()),
        ("ARCHIVE_MAX_AGE", "1s".into()),
        ("ARCHIVE_SWEEP_INTERVAL", "1s".into()),
        ("ARCHIVE_SWEEP_BATCH", "100".into()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
    ]
}

fn redis_keys(redis: &RedisServer, pattern: &str) -> usize {
    redis.count_keys(pattern).unwrap()
}

/// Registers a script step and runs `count` flows; returns their final states.
async fn run_flows(client: &reqwest::Client, engine: &str, count: usize) -> Vec<(String, Value)> {
    let step = json!({
        "id": "double", "name": "double", "type": "script",
        "attributes": {"x": {"role": "required"}, "y": {"role": "output"}},
        "script": {"language": "ale", "script": "{:y (* 2 x)}"}
    });
    register_step(client, engine, &step).await;
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let (client, engine) = (client.clone(), engine.to_owned());
        runs.spawn(async move {
            let id = format!("arch-{i:03}");
            let body = json!({"id": id, "goals": ["double"], "init": {"x": i}});
            let (status, _) = send(
                &client,
                reqwest::Method::POST,
                &format!("{engine}/engine/flow"),
                &body,
            )
            .await;
            assert_eq!(status, 201);
            let (_, flow) = send(
                &client,
                reqwest::Method::GET,
                &format!("{engine}/engine/flow/{id}?wait=10s"),
                &Value::Null,
            )
            .await;
            assert_eq!(flow["status"], "completed");
            drop(permit);
            (id, flow)
        });
    }
    let mut flows = Vec::new();
    while let Some(run) = runs.join_next().await {
        flows.push(run.unwrap());
    }
    flows
}

/// Waits (up to 30 s) until Redis holds no events of the test's flows; returns how many are left.
async fn wait_until_archived(redis: &RedisServer) -> usize {
    for _ in 0..300 {
        if redis_keys(redis, "*flow:arch-*:events") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis_keys(redis, "*flow:arch-*:events")
}

/// Each flow reads back from the bucket (`archived: true`) as it was before archiving.
async fn assert_served_from_the_bucket(
    client: &reqwest::Client,
    engine: &str,
    flows: &[(String, Value)],
) {
    for (id, before) in flows {
        let (status, mut after) = send(
            client,
            reqwest::Method::GET,
            &format!("{engine}/engine/flow/{id}"),
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(after["archived"], true, "{id} is read from the bucket");
        after.as_object_mut().unwrap().remove("archived");
        assert_eq!(&after, before, "{id} reads back identical");
    }
}

async fn listed(client: &reqwest::Client, engine: &str, archived: bool) -> usize {
    let url = format!("{engine}/engine/flow?archived={archived}");
    let (_, page) = send(client, reqwest::Method::GET, &url, &Value::Null).await;
    page["count"].as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_archives_finished_flows_and_still_serves_them() {
    let redis = RedisServer::start().unwrap();
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let client = reqwest::Client::new();
    let engine = EngineProcess::start_with("a", &redis.addr(), &archive_settings(&moto), None);
    engine.wait_healthy(&client).await;
    let flows = run_flows(&client, &engine.base, 500).await;

    assert_eq!(
        wait_until_archived(&redis).await,
        0,
        "archived flows leave Redis"
    );
    assert_eq!(listed(&client, &engine.base, false).await, 0);
    assert_eq!(listed(&client, &engine.base, true).await, 500);

    assert_served_from_the_bucket(&client, &engine.base, &flows).await;
    for (id, _) in &flows {
        let (status, events) = send(
            &client,
            reqwest::Method::GET,
            &format!("{}/engine/flow/{id}/events", engine.base),
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            (events["count"].as_u64(), &events["archived"]),
            (Some(7), &json!(true))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argyll_archive_runs_the_archiver_alone() {
    let redis = RedisServer::start().unwrap();
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let client = reqwest::Client::new();
    let engine = EngineProcess::start("server", &redis.addr());
    engine.wait_healthy(&client).await;
    run_flows(&client, &engine.base, 10).await;
    assert_eq!(redis_keys(&redis, "*flow:arch-*:events"), 10);

    let _archiver = EngineProcess::start_with(
        "archiver",
        &redis.addr(),
        &archive_settings(&moto),
        Some("archive"),
    );
    assert_eq!(wait_until_archived(&redis).await, 0);
    assert_eq!(listed(&client, &engine.base, true).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_bucket_is_logged_and_archiving_resumes() {
    let redis = RedisServer::start().unwrap();
    let mut moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let client = reqwest::Client::new();
    let engine = EngineProcess::start_with("a", &redis.addr(), &archive_settings(&moto), None);
    engine.wait_healthy(&client).await;
    moto.stop().unwrap();
    run_flows(&client, &engine.base, 10).await;
    for _ in 0..300 {
        if engine.log().contains("archive job failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        engine.log().contains("archive job failed"),
        "{}",
        engine.log()
    );
    assert!(engine.log().contains("WARN"));
    assert_eq!(
        redis_keys(&redis, "*flow:arch-*:events"),
        10,
        "nothing deleted"
    );

    moto.restart().unwrap();
    moto.create_bucket("flows").unwrap();
    assert_eq!(wait_until_archived(&redis).await, 0, "archiving resumed");
    assert_eq!(listed(&client, &engine.base, true).await, 10);
}

/// Waits (up to 30 s) until the engine lists none of the test's flows as unarchived (the
/// listing with `archived=true` has them all, archived or not).
async fn wait_until_listed_archived(client: &reqwest::Client, engine: &str, count: usize) {
    for _ in 0..300 {
        if listed(client, engine, false).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed(client, engine, true).await, count);
    assert_eq!(listed(client, engine, false).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_on_its_local_store_archives_finished_flows_and_still_serves_them() {
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let client = reqwest::Client::new();
    let engine = EngineProcess::launch("local", &archive_settings(&moto), None, &[]);
    engine.wait_healthy(&client).await;
    let flows = run_flows(&client, &engine.base, 100).await;
    wait_until_listed_archived(&client, &engine.base, 100).await;
    assert_served_from_the_bucket(&client, &engine.base, &flows).await;
}

/// The local store belongs to one process: `argyll archive` beside a running server is
/// refused naming the directory, and archives the directory of a stopped server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argyll_archive_on_the_local_store_archives_a_stopped_servers_flows() {
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let client = reqwest::Client::new();
    let data = tempfile::tempdir().unwrap();
    let dir = ("ARGYLL_DATA_DIR", data.path().display().to_string());
    let mut server = EngineProcess::launch("server", std::slice::from_ref(&dir), None, &[]);
    server.wait_healthy(&client).await;
    run_flows(&client, &server.base, 10).await;

    let mut settings = archive_settings(&moto);
    settings.push(dir.clone());
    settings.push(("ENGINE_LOGGING_LEVEL", "info".into()));
    let mut beside = EngineProcess::launch("archiver", &settings, Some("archive"), &[]);
    let refused = wait_for_log(&mut beside, "locked by another running process").await;
    assert!(refused.contains("ARGYLL_DATA_DIR="), "{refused}");

    assert!(
        server.terminate(Duration::from_secs(10)),
        "the server stops"
    );
    let mut archiver = EngineProcess::launch("archiver", &settings, Some("archive"), &[]);
    let swept = wait_for_log(&mut archiver, "archive sweep").await;
    assert!(swept.contains("\"archived\":10"), "{swept}");
    assert!(
        archiver.terminate(Duration::from_secs(10)),
        "the archiver stops"
    );

    let server = EngineProcess::launch("server", &[dir], None, &[]);
    server.wait_healthy(&client).await;
    assert_eq!(listed(&client, &server.base, true).await, 10);
    assert_eq!(listed(&client, &server.base, false).await, 0);
}

/// The first log line of `process` containing `needle`, waiting for it (up to 30 s).
async fn wait_for_log(process: &mut EngineProcess, needle: &str) -> String {
    for _ in 0..300 {
        if let Some(line) = process.log().lines().find(|line| line.contains(needle)) {
            return line.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no `{needle}` in:\n{}", process.log());
}
