//! The harness end to end: it starts an engine (the workspace's `argyll` binary, built beside
//! it), runs a fixed number of flows of every scenario in both client modes and reports them.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_argyll-bench"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn every_scenario_runs_its_flows_without_errors() {
    let report = bench(&["--count", "20", "--clients", "4"]);
    let scenarios = report.as_object().unwrap();
    assert_eq!(scenarios.len(), 4, "{report}");
    for (name, figures) in scenarios {
        assert_eq!(figures["flows"], 20, "{name}");
        assert_eq!(figures["errors"], 0, "{name}");
        assert!(
            figures["flows_per_second"].as_f64().unwrap() > 0.0,
            "{name}"
        );
        assert!(figures["p99_ms"].as_f64().unwrap() >= figures["p50_ms"].as_f64().unwrap());
        assert!(figures["engine_rss_mb"].as_f64().unwrap() > 0.0, "{name}");
    }
    let fan_out = &scenarios["c: for_each 100 items, parallelism 10"];
    let ratio = fan_out["items_per_second"].as_f64().unwrap()
        / fan_out["flows_per_second"].as_f64().unwrap();
    assert!(
        (ratio - 100.0).abs() < 1e-6,
        "100 work items per flow: {ratio}"
    );
}

#[test]
fn the_large_fan_out_scenario_reports_start_and_health_latency() {
    let report = bench(&[
        "--scenario",
        "e",
        "--fan-out",
        "500",
        "--count",
        "1",
        "--clients",
        "1",
    ]);
    let figures = &report["e: one fan-out of 500 Ale items, parallelism 100"];
    assert_eq!(figures["flows"], 1, "{report}");
    assert_eq!(figures["errors"], 0, "{report}");
    let ratio = figures["items_per_second"].as_f64().unwrap()
        / figures["flows_per_second"].as_f64().unwrap();
    assert!((ratio - 500.0).abs() < 1e-6, "500 items per flow: {ratio}");
    assert!(figures["start_max_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(figures["start_max_ms"].as_f64().unwrap() <= figures["max_ms"].as_f64().unwrap());
    assert!(
        figures["health_max_ms"].as_f64().unwrap() >= figures["health_p99_ms"].as_f64().unwrap()
    );
}

#[test]
fn polling_clients_work_too() {
    let report = bench(&[
        "--count",
        "10",
        "--clients",
        "2",
        "--scenario",
        "a",
        "--mode",
        "poll",
    ]);
    let figures = &report["a: one Ale script step"];
    assert_eq!(figures["flows"], 10);
    assert_eq!(figures["mode"], "poll 100 ms");
}

#[test]
fn two_engines_on_redis_at_a_fixed_rate_report_redis_commands_per_flow() {
    let redis = argyll_testkit::RedisServer::start().unwrap();
    let addr = redis.addr();
    let report = bench(&[
        "--store",
        "redis",
        "--redis",
        &addr,
        "--engines",
        "2",
        "--scenario",
        "a",
        "--count",
        "300",
        "--clients",
        "8",
        "--rate",
        "600",
    ]);
    let figures = &report["a: one Ale script step"];
    assert_eq!(figures["flows"], 300, "{figures}");
    assert_eq!(figures["errors"], 0);
    assert_eq!(figures["engines"], 2);
    assert_eq!(figures["target_rate"], 600.0);
    // 300 flows at 600/s take about half a second: the schedule held the clients back.
    assert!(figures["seconds"].as_f64().unwrap() >= 0.45, "{figures}");
    let timeline: u64 = figures["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(timeline <= 300 && timeline > 0, "{figures}");
    // Every flow costs Redis work (its append at least), counted by command.
    let per_flow = figures["redis_commands_per_flow"].as_f64().unwrap();
    assert!(per_flow >= 1.0, "{figures}");
    assert!(
        figures["redis_commands_by_kind"]["evalsha"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    // The figures of both engine processes.
    assert!(figures["engine_rss_mb"].as_f64().unwrap() > 0.0);
}
