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
