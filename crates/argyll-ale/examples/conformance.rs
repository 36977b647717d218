//! Runs Ale case files against this implementation:
//! `cargo run -p argyll-ale --release --example conformance -- FILE.jsonl...`
//! Prints `FAIL id: reason` per mismatch, per-category counts, then `N passed, M failed`.
//! Cases listed in `tests/conformance-exceptions.txt` (with reasons) count as excepted.

use std::process::ExitCode;

use argyll_ale::conformance::{parse_exceptions, run_files};

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: conformance FILE.jsonl...");
        return ExitCode::from(2);
    }
    let mut files = Vec::new();
    for path in &paths {
        match std::fs::read_to_string(path) {
            Ok(text) => files.push((path.clone(), text)),
            Err(error) => {
                eprintln!("{path}: {error}");
                return ExitCode::from(2);
            }
        }
    }
    let exceptions_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance-exceptions.txt"
    );
    let exceptions =
        parse_exceptions(&std::fs::read_to_string(exceptions_path).unwrap_or_default());
    let report = run_files(&files, &exceptions);
    for (id, reason) in &report.failures {
        println!("FAIL {id}: {reason}");
    }
    for ((file, category), [passed, failed, excepted, skipped]) in &report.by_category {
        println!(
            "{file} {category}: {passed} passed, {failed} failed, {excepted} excepted, {skipped} skipped"
        );
    }
    let [passed, failed, _, _] = report.totals();
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
