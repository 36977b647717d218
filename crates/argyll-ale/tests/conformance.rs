//! Runs every recorded Ale and Argyll case (`shared/spec/ale-cases/`) through this
//! implementation. Fails when a case outside `conformance-exceptions.txt` fails, when an
//! excepted case passes (the list must stay true), or below 97% of the eligible cases.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;

use argyll_ale::conformance::{parse_exceptions, run_files};

/// The recorded cases of the shared specification; `None` (skipped) when it is not there.
fn cases_dir() -> Option<PathBuf> {
    argyll_testkit::spec_dir("the recorded Ale cases").map(|spec| spec.join("spec/ale-cases"))
}

#[test]
fn recorded_cases_match() {
    let Some(cases) = cases_dir() else {
        return;
    };
    let mut files = Vec::new();
    for name in [
        "ale-core-cases.jsonl",
        "ale-probe-cases.jsonl",
        "argyll-cases.jsonl",
    ] {
        let text = std::fs::read_to_string(cases.join(name)).expect("case file");
        files.push((name.to_owned(), text));
    }
    let exceptions_text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-exceptions.txt"),
    )
    .expect("exceptions file");
    let exceptions = parse_exceptions(&exceptions_text);
    let report = run_files(&files, &exceptions);

    for ((file, category), [passed, failed, excepted, skipped]) in &report.by_category {
        println!(
            "{file:24} {category:22} {passed:4} passed {failed:3} failed {excepted:3} excepted {skipped:3} skipped"
        );
    }
    let [passed, failed, excepted, skipped] = report.totals();
    let eligible = passed + failed + excepted;
    println!(
        "total: {passed} passed, {failed} failed, {excepted} excepted, {skipped} skipped of {eligible} eligible"
    );

    assert!(
        report.failures.is_empty(),
        "failing cases: {:#?}",
        report.failures
    );
    assert!(
        report.fixed_exceptions.is_empty(),
        "excepted cases now pass, remove them: {:?}",
        report.fixed_exceptions
    );
    assert!(
        passed * 100 >= eligible * 97,
        "{passed} of {eligible} eligible cases is below 97%"
    );
}
