//! The reader and evaluator never panic, whatever the input (proptest).
//!
//! `cargo test` runs 5,000 random inputs per property; set `ALE_FUZZ_CASES` for a longer run,
//! e.g. `ALE_FUZZ_CASES=1000000 cargo test -p argyll-ale --release --test no_panic -- --nocapture`
//! (each property prints how its cases ended: values, read/compile/runtime/limit errors).

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use argyll_ale::{AleError, Limits, Phase, Program, eval_source, read_all};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

fn cases() -> u32 {
    std::env::var("ALE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

fn limits() -> Limits {
    Limits {
        max_steps: 20_000,
        max_depth: 200,
        timeout: Some(Duration::from_millis(200)),
        max_output_bytes: 64 * 1024,
        max_memory_bytes: 16 * 1024 * 1024,
    }
}

/// Source text built from Ale's tokens, so that some programs get past the reader.
fn ale_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(token(), 0..40).prop_map(|tokens| tokens.join(" "))
}

/// One of Ale's tokens: brackets, quotes, literals, names of special forms and builtins.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop_oneof![
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("{".to_owned()),
            Just("}".to_owned()),
        ],
        3 => atom(),
    ]
}

/// A token that is not a bracket: quotes, literals, names of special forms and builtins.
fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("'".to_owned()),
        Just("`".to_owned()),
        Just(",".to_owned()),
        Just(",@".to_owned()),
        Just(" . ".to_owned()),
        Just("#b[".to_owned()),
        Just("\"s\\n\"".to_owned()),
        Just(":k".to_owned()),
        Just("#t".to_owned()),
        Just("#f".to_owned()),
        Just("#|c|#".to_owned()),
        Just(";c\n".to_owned()),
        prop_oneof![
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("mod"),
            Just("="),
            Just("<"),
            Just("eq"),
            Just("if"),
            Just("let"),
            Just("let*"),
            Just("lambda"),
            Just("define"),
            Just("cond"),
            Just("case"),
            Just("and"),
            Just("or"),
            Just("first"),
            Just("rest"),
            Just("cons"),
            Just("list"),
            Just("vector"),
            Just("map"),
            Just("filter"),
            Just("fold-left"),
            Just("range"),
            Just("take"),
            Just("concat"),
            Just("str"),
            Just("apply"),
            Just("nth"),
            Just("get"),
            Just("assoc"),
            Just("seq->vector"),
            Just("lambda-rec"),
            Just("x"),
            Just("y"),
            Just("f"),
            Just("raise"),
            Just("recover"),
            Just("macroexpand"),
            Just("eval"),
            Just("read"),
            Just("define-macro"),
            Just("->"),
            Just("for"),
        ]
        .prop_map(str::to_owned),
        (-1000i64..1000).prop_map(|n| n.to_string()),
        prop_oneof![
            Just("0.5"),
            Just("1/3"),
            Just("1e308"),
            Just("-0.0"),
            Just("99999999999999999999"),
            Just("0x1F")
        ]
        .prop_map(str::to_owned),
    ]
}

/// Well-formed forms: calls of the same vocabulary on nested arguments, so that most programs
/// get past the reader and the compiler and actually run.
fn well_formed() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        token().prop_filter("not a bracket", |s| !s
            .contains(['(', ')', '[', ']', '{', '}'])),
        Just("x".to_owned()),
        Just("y".to_owned()),
        Just("(range)".to_owned()),
        Just("[1 2 3]".to_owned()),
        Just("{:a 1 :b [2]}".to_owned()),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        (
            prop_oneof![Just("("), Just("["), Just("{")],
            proptest::collection::vec(inner, 0..6),
        )
            .prop_map(|(open, items)| {
                let close = match open {
                    "(" => ")",
                    "[" => "]",
                    _ => "}",
                };
                format!("{open}{}{close}", items.join(" "))
            })
    })
}

/// How the cases of one property ended, printed so that a long run shows what it exercised.
#[derive(Default)]
struct Outcomes {
    cases: u64,
    read_errors: u64,
    compile_errors: u64,
    values: u64,
    runtime_errors: u64,
    limit_errors: u64,
}

impl Outcomes {
    fn record<T>(&mut self, outcome: &Result<T, AleError>) {
        match outcome {
            Ok(_) => self.values += 1,
            Err(error) => match error.phase {
                Phase::Read => self.read_errors += 1,
                Phase::Compile => self.compile_errors += 1,
                Phase::Runtime => self.runtime_errors += 1,
                Phase::Limit => self.limit_errors += 1,
            },
        }
    }

    fn report(&self, property: &str) {
        println!(
            "{property}: {} cases; {} values, {} read errors, {} compile errors, {} runtime errors, {} limit errors",
            self.cases,
            self.values,
            self.read_errors,
            self.compile_errors,
            self.runtime_errors,
            self.limit_errors
        );
    }
}

/// Runs `property` on `cases()` inputs from `strategy`; a panic inside it fails the test with the
/// (shrunk) input.
fn check<S: Strategy>(name: &str, strategy: S, property: impl Fn(S::Value, &mut Outcomes)) {
    // Generating nested forms rejects some candidates internally; over 10⁶ cases that adds up
    // past proptest's default cap, and a rejected candidate is not a failure here.
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        max_local_rejects: u32::MAX,
        max_global_rejects: u32::MAX,
        ..ProptestConfig::default()
    };
    let outcomes = std::cell::RefCell::new(Outcomes::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |input| {
        let mut outcomes = outcomes.borrow_mut();
        outcomes.cases += 1;
        property(input, &mut outcomes);
        Ok(())
    });
    outcomes.borrow().report(name);
    if let Err(failure) = result {
        panic!("{name}: {failure}");
    }
}

fn inputs() -> serde_json::Map<String, serde_json::Value> {
    let inputs = serde_json::json!({"x": [1, 2.5, "s", {"k": null}], "y": 3});
    inputs.as_object().cloned().unwrap_or_default()
}

fn compile_and_run(source: String, outcomes: &mut Outcomes) {
    match Program::compile(&source, &["x", "y"]) {
        Ok(program) => {
            outcomes.record(&program.run_script(&inputs(), limits()));
            let _ = program.run_predicate(&inputs(), limits());
        }
        Err(error) => outcomes.record::<()>(&Err(error)),
    }
}

#[test]
fn arbitrary_text_never_panics_the_reader() {
    check(
        "reader on arbitrary text",
        "\\PC{0,64}",
        |text: String, outcomes| {
            outcomes.record(&read_all(&text));
        },
    );
}

#[test]
fn token_soup_never_panics_the_evaluator() {
    check("evaluator on token soup", ale_like(), |source, outcomes| {
        outcomes.record(&eval_source(&[], &source, limits()));
    });
}

#[test]
fn token_soup_scripts_never_panic_compile_or_run() {
    check("scripts from token soup", ale_like(), compile_and_run);
}

#[test]
fn well_formed_programs_never_panic_the_evaluator() {
    check(
        "evaluator on well-formed forms",
        well_formed(),
        |source, outcomes| {
            outcomes.record(&eval_source(&[], &source, limits()));
        },
    );
}

#[test]
fn well_formed_scripts_never_panic_compile_or_run() {
    check(
        "scripts from well-formed forms",
        well_formed(),
        compile_and_run,
    );
}
