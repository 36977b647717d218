//! Runs the recorded Argyll cases through this crate's runner: `argyll-cases.jsonl` (Ale, as
//! Argyll wraps it) and `lua-cases.jsonl` (Lua with Argyll's sandbox and conversions).
//!
//! Cases marked `nondeterministic` (addresses, clock) are skipped. Values must match (`typed_json` outputs, predicate booleans); errors must have the same phase
//! and, where recorded, a message that starts with the recorded one. Cases we deliberately
//! differ on, including those where the original crashed (`go-panic`), are listed with a reason
//! in `tests/conformance-exceptions.txt`; the test fails on any other mismatch and on a listed
//! case that starts matching.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use argyll_ale::conformance::parse_exceptions;
use argyll_script::{Phase, ScriptError, ScriptLimits, ScriptRunner};
use serde_json::Value as Json;

/// The recorded cases of the shared specification; `None` (skipped) when it is not there.
fn cases_dir() -> Option<PathBuf> {
    argyll_testkit::spec_dir("the recorded Ale and Lua cases")
        .map(|spec| spec.join("spec/ale-cases"))
}

fn exceptions() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-exceptions.txt"),
    )
    .expect("exceptions file");
    let exceptions = parse_exceptions(&text);
    let listed = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count();
    assert_eq!(listed, exceptions.len(), "every exception needs a reason");
    assert!(
        exceptions.values().all(|reason| !reason.is_empty()),
        "every exception needs a reason"
    );
    exceptions
}

/// `Ok(())` when the case matches, `Err(why)` when it does not.
fn check(runner: &ScriptRunner, language: &str, case: &Json) -> Result<(), String> {
    let script = case["script"].as_str().unwrap_or_default();
    let args: Vec<String> = case["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let inputs = case["inputs"].as_object().cloned().unwrap_or_default();
    let outcome = &case["outcome"];
    let run: Result<Json, ScriptError> = match case["kind"].as_str().unwrap_or_default() {
        "validate" => runner
            .validate(language, script, &args)
            .map(|()| Json::Null),
        "predicate" => runner
            .evaluate_predicate_blocking(language, script, &args, &inputs)
            .map(Json::Bool),
        _ => runner
            .execute_blocking(language, script, &args, &inputs)
            .map(Json::Object),
    };
    match (outcome["kind"].as_str().unwrap_or_default(), run) {
        ("compiled", Ok(_)) => Ok(()),
        ("outputs", Ok(actual)) => {
            let expected: Json =
                serde_json::from_str(outcome["typed_json"].as_str().unwrap_or("null"))
                    .map_err(|e| format!("unreadable typed_json: {e}"))?;
            if expected == actual {
                Ok(())
            } else {
                Err(format!("outputs {actual}, expected {expected}"))
            }
        }
        ("bool", Ok(actual)) => {
            if outcome["value"] == actual {
                Ok(())
            } else {
                Err(format!("predicate {actual}, expected {}", outcome["value"]))
            }
        }
        ("error", Err(error)) => {
            let phase = match error.phase {
                Phase::Compile => "compile",
                Phase::Runtime => "runtime",
                Phase::Limit(_) => "limit",
            };
            let expected_phase = outcome["phase"].as_str().unwrap_or(phase);
            if expected_phase != phase {
                return Err(format!(
                    "{phase} error {:?}, expected a {expected_phase} error",
                    error.message
                ));
            }
            match outcome["error"].as_str() {
                Some(expected) if language == "lua" && !error.message.starts_with(expected) => {
                    Err(format!("error {:?}, expected {expected:?}", error.message))
                }
                _ => Ok(()),
            }
        }
        ("crash", _) => Ok(()),
        ("go-panic", result) => Err(format!("the original crashed; we give {result:?}")),
        (expected, Ok(actual)) => Err(format!("got {actual}, expected {expected}")),
        (expected, Err(error)) => Err(format!(
            "{} error {:?}, expected {expected}",
            error.phase, error.message
        )),
    }
}

#[test]
fn recorded_argyll_and_lua_cases_match_through_the_runner() {
    let Some(cases) = cases_dir() else {
        return;
    };
    let runner = ScriptRunner::new(ScriptLimits::default());
    let exceptions = exceptions();
    let mut unexpected = Vec::new();
    let mut used_exceptions = 0;
    for (file, language) in [("argyll-cases.jsonl", "ale"), ("lua-cases.jsonl", "lua")] {
        let text = std::fs::read_to_string(cases.join(file)).expect("case file");
        let mut counts: BTreeMap<String, [usize; 3]> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let case: Json = serde_json::from_str(line).expect("case line");
            if case["nondeterministic"] == Json::Bool(true) {
                continue;
            }
            let id = case["id"].as_str().unwrap().to_owned();
            let kind = case["kind"].as_str().unwrap_or_default().to_owned();
            let count = counts.entry(kind).or_default();
            let verdict = check(&runner, language, &case);
            match (verdict, exceptions.get(&id)) {
                (Ok(()), None) => count[0] += 1,
                (Err(why), Some(_)) => {
                    count[1] += 1;
                    used_exceptions += 1;
                    let _ = why;
                }
                (Ok(()), Some(reason)) => {
                    unexpected.push(format!("{id} now matches; remove its exception ({reason})"))
                }
                (Err(why), None) => unexpected.push(format!("FAIL {id}: {why}")),
            }
        }
        for (kind, [passed, excepted, _]) in &counts {
            println!("{file:<20} {kind:<10} {passed:4} passed {excepted:4} excepted");
        }
    }
    println!(
        "{used_exceptions} cases excepted of {} listed",
        exceptions.len()
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    assert_eq!(
        used_exceptions,
        exceptions.len(),
        "every exception must name a case that exists"
    );
}
