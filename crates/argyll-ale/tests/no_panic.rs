//! The reader and evaluator never panic, whatever the input (proptest).
//!
//! `cargo test` runs 5,000 random programs per property; set `ALE_FUZZ_CASES` for a longer run,
//! e.g. `ALE_FUZZ_CASES=1000000 cargo test -p argyll-ale --release --test no_panic`.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use argyll_ale::{Limits, Program, eval_source, read_all};
use proptest::prelude::*;

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
    }
}

/// Source text built from Ale's tokens, so that most programs get past the reader.
fn ale_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
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
    ];
    proptest::collection::vec(token, 0..40).prop_map(|tokens| tokens.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_the_reader(text in "\\PC{0,64}") {
        let _ = read_all(&text);
    }

    #[test]
    fn token_soup_never_panics_the_evaluator(source in ale_like()) {
        let _ = eval_source(&[], &source, limits());
    }

    #[test]
    fn token_soup_scripts_never_panic_compile_or_run(source in ale_like()) {
        if let Ok(program) = Program::compile(&source, &["x", "y"]) {
            let inputs = serde_json::json!({"x": [1, 2.5, "s", {"k": null}], "y": 3});
            let inputs = inputs.as_object().cloned().unwrap_or_default();
            let _ = program.run_script(&inputs, limits());
            let _ = program.run_predicate(&inputs, limits());
        }
    }
}
