//! The conformance runner over the recorded Ale cases (`shared/spec/ale-cases/`), shared by the
//! `conformance` test and example.
//!
//! Value cases compare the reader form of the (realised) result with the recorded `printed`;
//! error cases require an error (with the recorded prefix where the case's Go test compared a
//! prefix); crash cases (the original died) must simply not crash. Argyll cases go through
//! [`Program`] and compare outputs as typed JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value as Json;

use crate::eval::Limits;
use crate::print::reader_form;
use crate::script::{Program, eval_source};

/// What happened to one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Matched the recording.
    Pass,
    /// Did not match; the reason says how.
    Fail(String),
    /// Not eligible (nondeterministic, `asm`, or not an Ale case).
    Skip,
}

/// The outcome of a run over some case files.
#[derive(Debug, Default)]
pub struct Report {
    /// `(file, category)` → (passed, failed, excepted, skipped).
    pub by_category: BTreeMap<(String, String), [usize; 4]>,
    /// Failing cases not in the exceptions, with reasons.
    pub failures: Vec<(String, String)>,
    /// Excepted cases that now pass (the exceptions file can shrink).
    pub fixed_exceptions: Vec<String>,
}

impl Report {
    /// Total passed, failed (not excepted), excepted and skipped.
    pub fn totals(&self) -> [usize; 4] {
        let mut totals = [0; 4];
        for counts in self.by_category.values() {
            for (total, count) in totals.iter_mut().zip(counts) {
                *total += count;
            }
        }
        totals
    }
}

/// Parses an exceptions file: one `<case id> <reason>` per line; `#` comments.
pub fn parse_exceptions(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (id, reason) = line.split_once(char::is_whitespace)?;
            Some((id.to_owned(), reason.trim().to_owned()))
        })
        .collect()
}

fn limits() -> Limits {
    Limits {
        max_steps: 50_000_000,
        max_depth: 10_000,
        timeout: Some(Duration::from_secs(5)),
        ..Limits::default()
    }
}

/// Runs one case (a JSON object from a case file).
pub fn run_case(case: &Json) -> Verdict {
    if case.get("nondeterministic").and_then(Json::as_bool) == Some(true) {
        return Verdict::Skip;
    }
    if case.get("category").and_then(Json::as_str) == Some("asm") {
        return Verdict::Skip;
    }
    if case.get("kind").is_some() {
        return run_argyll_case(case);
    }
    let Some(source) = case.get("src").and_then(Json::as_str) else {
        return Verdict::Skip;
    };
    let setup: Vec<&str> = case
        .get("setup")
        .and_then(Json::as_array)
        .map(|items| items.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let result = case.get("result").cloned().unwrap_or(Json::Null);
    let outcome = std::panic::catch_unwind(|| eval_source(&setup, source, limits()));
    let Ok(outcome) = outcome else {
        return Verdict::Fail("panicked".into());
    };
    match result.get("kind").and_then(Json::as_str) {
        Some("value") => {
            let expected = result
                .get("printed")
                .and_then(Json::as_str)
                .unwrap_or_default();
            match outcome {
                Ok((value, _)) => {
                    let printed = reader_form(&value);
                    if printed == expected {
                        Verdict::Pass
                    } else {
                        Verdict::Fail(format!("printed {printed}, expected {expected}"))
                    }
                }
                Err(error) => Verdict::Fail(format!("error {error}, expected {expected}")),
            }
        }
        Some("error") => match outcome {
            Ok((value, _)) => {
                Verdict::Fail(format!("value {}, expected an error", reader_form(&value)))
            }
            Err(error) => {
                let expect = case.get("go_test_expect");
                let mode = expect.and_then(|e| e.get("mode")).and_then(Json::as_str);
                let prefix = expect.and_then(|e| e.get("value")).and_then(Json::as_str);
                match (mode, prefix) {
                    (Some("error_prefix"), Some(prefix)) if !error.message.starts_with(prefix) => {
                        Verdict::Fail(format!(
                            "error {:?} does not start with {prefix:?}",
                            error.message
                        ))
                    }
                    _ => Verdict::Pass,
                }
            }
        },
        Some("crash") => Verdict::Pass,
        _ => Verdict::Skip,
    }
}

fn run_argyll_case(case: &Json) -> Verdict {
    let script = case
        .get("script")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let kind = case.get("kind").and_then(Json::as_str).unwrap_or_default();
    let args: Vec<&str> = case
        .get("args")
        .and_then(Json::as_array)
        .map(|items| items.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let inputs = case
        .get("inputs")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let outcome = case.get("outcome").cloned().unwrap_or(Json::Null);
    let expected_kind = outcome
        .get("kind")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let run = std::panic::catch_unwind(|| -> Result<Json, (String, String)> {
        let program =
            Program::compile(script, &args).map_err(|e| ("compile".to_owned(), e.message))?;
        match kind {
            "validate" => Ok(Json::Null),
            "predicate" => program
                .run_predicate(&inputs, limits())
                .map(Json::Bool)
                .map_err(|e| ("runtime".to_owned(), e.message)),
            _ => program
                .run_script(&inputs, limits())
                .map(Json::Object)
                .map_err(|e| ("runtime".to_owned(), e.message)),
        }
    });
    let Ok(run) = run else {
        return Verdict::Fail("panicked".into());
    };
    match (expected_kind, run) {
        ("compiled", Ok(_)) | ("crash", _) => Verdict::Pass,
        ("outputs", Ok(actual)) => {
            let expected: Option<Json> = outcome.get("typed_json").and_then(|t| {
                t.as_str()
                    .map(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Some(t.clone()))
            });
            match expected {
                Some(expected) if expected == actual => Verdict::Pass,
                expected => Verdict::Fail(format!(
                    "outputs {actual}, expected {}",
                    expected.unwrap_or(Json::Null)
                )),
            }
        }
        ("bool", Ok(actual)) => {
            let expected = outcome.get("value").cloned().unwrap_or(Json::Null);
            if expected == actual {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("predicate {actual}, expected {expected}"))
            }
        }
        ("error", Err((phase, _))) => {
            let expected_phase = outcome
                .get("phase")
                .and_then(Json::as_str)
                .unwrap_or_default();
            if expected_phase.is_empty() || expected_phase == phase {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("{phase} error, expected a {expected_phase} error"))
            }
        }
        (expected, Ok(actual)) => Verdict::Fail(format!("got {actual}, expected {expected}")),
        (expected, Err((phase, message))) => {
            Verdict::Fail(format!("{phase} error {message:?}, expected {expected}"))
        }
    }
}

/// Runs every case of every file (JSON Lines text, named), applying the exceptions.
pub fn run_files(files: &[(String, String)], exceptions: &BTreeMap<String, String>) -> Report {
    let mut report = Report::default();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (name, text) in files {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(case) = serde_json::from_str::<Json>(line) else {
                report
                    .failures
                    .push((format!("{name}:?"), "unparsable case line".into()));
                continue;
            };
            let id = case
                .get("id")
                .and_then(Json::as_str)
                .unwrap_or("?")
                .to_owned();
            seen.insert(id.clone());
            let category = case
                .get("category")
                .and_then(Json::as_str)
                .or(case.get("kind").and_then(Json::as_str))
                .unwrap_or("-");
            let counts = report
                .by_category
                .entry((name.clone(), category.to_owned()))
                .or_insert([0; 4]);
            match run_case(&case) {
                Verdict::Pass => {
                    if exceptions.contains_key(&id) {
                        report.fixed_exceptions.push(id);
                    }
                    counts[0] += 1;
                }
                Verdict::Fail(reason) => {
                    if exceptions.contains_key(&id) {
                        counts[2] += 1;
                    } else {
                        counts[1] += 1;
                        report.failures.push((id, reason));
                    }
                }
                Verdict::Skip => counts[3] += 1,
            }
        }
    }
    report
}
