//! The layering rules of `docs/ARCHITECTURE.md`, enforced: reads `cargo metadata` and fails when
//! a crate depends (directly or through others, normal dependencies only) on something its
//! layer forbids, and when the binary grows beyond composition.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Every crate's normal (non-dev, non-build) dependencies, by package name.
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // This platform's dependencies only: the others are not downloaded.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut graph = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().unwrap() {
        let name = names[node["id"].as_str().unwrap()].to_owned();
        let deps: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|kind| kind["kind"].is_null())
            })
            .map(|dep| names[dep["pkg"].as_str().unwrap()].to_owned())
            .collect();
        graph.entry(name).or_insert_with(BTreeSet::new).extend(deps);
    }
    graph
}

/// Everything `name` depends on, directly or not.
fn closure(graph: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![name.to_owned()];
    while let Some(next) = stack.pop() {
        for dep in graph.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

/// I/O, async runtimes and network clients: what the pure layer does without.
const EFFECTFUL: &[&str] = &[
    "tokio",
    "hyper",
    "axum",
    "reqwest",
    "fred",
    "object_store",
    "mlua",
];

/// The pure layer: decides, does nothing.
const PURE: &[&str] = &[
    "argyll-model",
    "argyll-events",
    "argyll-plan",
    "argyll-retry",
    "argyll-ale",
];

/// What each crate must not depend on (`docs/ARCHITECTURE.md`, "Layers").
fn forbidden() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut rules: Vec<(&'static str, Vec<&'static str>)> = PURE
        .iter()
        .map(|pure| {
            let mut banned = EFFECTFUL.to_vec();
            banned.extend(
                [
                    "argyll-store",
                    "argyll-engine",
                    "argyll-server",
                    "argyll-script",
                    "argyll-http",
                ]
                .iter(),
            );
            (*pure, banned)
        })
        .collect();
    rules.extend([
        ("argyll-ale", vec!["argyll-model"]),
        (
            "argyll-engine",
            vec![
                "argyll-server",
                "argyll-store-redis",
                "argyll-archive",
                "argyll-config",
                "fred",
                "object_store",
                "axum",
            ],
        ),
        (
            "argyll-store",
            vec![
                "argyll-engine",
                "argyll-server",
                "argyll-store-redis",
                "argyll-http",
                "argyll-script",
                "argyll-config",
            ],
        ),
        (
            "argyll-store-redis",
            vec!["argyll-engine", "argyll-server", "argyll-config"],
        ),
        (
            "argyll-store-local",
            vec!["argyll-engine", "argyll-server", "argyll-config"],
        ),
        (
            "argyll-archive",
            vec!["argyll-engine", "argyll-server", "argyll-config"],
        ),
        (
            "argyll-server",
            vec!["argyll-store-redis", "argyll-config", "fred"],
        ),
        (
            "argyll-script",
            vec![
                "argyll-engine",
                "argyll-store",
                "argyll-http",
                "argyll-config",
            ],
        ),
        (
            "argyll-http",
            vec!["argyll-engine", "argyll-store", "argyll-model"],
        ),
        (
            "argyll-config",
            vec![
                "argyll-engine",
                "argyll-store",
                "argyll-script",
                "argyll-http",
                "tokio",
            ],
        ),
        (
            "argyll-testkit",
            vec!["argyll-model", "argyll-engine", "argyll-store"],
        ),
        (
            "argyll-bench",
            vec![
                "argyll-engine",
                "argyll-store",
                "argyll-server",
                "argyll-model",
            ],
        ),
    ]);
    rules
}

#[test]
fn no_crate_depends_on_what_its_layer_forbids() {
    let graph = dependency_graph();
    let mut broken = Vec::new();
    for (krate, banned) in forbidden() {
        assert!(
            graph.contains_key(krate),
            "{krate} is not in the workspace: update the rules"
        );
        let reached = closure(&graph, krate);
        for ban in banned {
            if reached.contains(ban) {
                broken.push(format!("{krate} depends on {ban}"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_rules_catch_a_forbidden_edge() {
    // The check itself: a pure crate that reached tokio through another crate is found.
    let mut graph = BTreeMap::new();
    graph.insert(
        "argyll-model".to_owned(),
        BTreeSet::from(["helper".to_owned()]),
    );
    graph.insert("helper".to_owned(), BTreeSet::from(["tokio".to_owned()]));
    assert!(closure(&graph, "argyll-model").contains("tokio"));
}

#[test]
fn the_binary_is_composition_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut lines = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            lines += std::fs::read_to_string(&path).unwrap().lines().count();
        }
    }
    assert!(
        lines <= 600,
        "bins/argyll/src has {lines} lines: what is not composition belongs in a library crate"
    );
}

#[test]
fn no_source_file_of_the_engine_exceeds_600_lines() {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/argyll-engine/src");
    let mut stack = vec![engine];
    let mut long = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                if lines > 600 {
                    long.push(format!("{} ({lines} lines)", path.display()));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these by concern:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_documented_dependencies_are_the_real_ones() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ARCHITECTURE.md");
    let doc = std::fs::read_to_string(doc).unwrap();
    let block = doc
        .split("<!-- dependency edges")
        .nth(1)
        .and_then(|rest| rest.split("```text\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("docs/ARCHITECTURE.md has the dependency edges block");
    let documented: BTreeMap<String, BTreeSet<String>> = block
        .lines()
        .filter_map(|line| line.split_once('→'))
        .map(|(krate, deps)| {
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            (krate.trim().to_owned(), deps)
        })
        .collect();
    let graph = dependency_graph();
    let actual: BTreeMap<String, BTreeSet<String>> = graph
        .iter()
        .filter(|(name, _)| name.starts_with("argyll"))
        .map(|(name, deps)| {
            let ours = deps
                .iter()
                .filter(|dep| dep.starts_with("argyll"))
                .cloned()
                .collect();
            (name.clone(), ours)
        })
        .collect();
    assert_eq!(
        documented, actual,
        "docs/ARCHITECTURE.md's dependency edges differ from cargo metadata"
    );
}
