//! Whatever the script text and inputs, compiling and running never panics (proptest).
//!
//! `cargo test` runs 2,000 cases per property; set `SCRIPT_FUZZ_CASES` for a longer run.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use argyll_script::{ScriptLimits, ScriptRunner};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("SCRIPT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn runner() -> ScriptRunner {
    ScriptRunner::new(ScriptLimits {
        memory_bytes: 4 << 20,
        steps: 200_000,
        timeout: Duration::from_millis(200),
    })
}

fn lua_token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just("return"),
            Just("local"),
            Just("function"),
            Just("end"),
            Just("if"),
            Just("then"),
            Just("else"),
            Just("for"),
            Just("in"),
            Just("do"),
            Just("while"),
            Just("repeat"),
            Just("until"),
            Just("and"),
            Just("or"),
            Just("not"),
            Just("nil"),
            Just("true"),
            Just("{"),
            Just("}"),
            Just("("),
            Just(")"),
            Just("["),
            Just("]"),
            Just("="),
            Just(","),
            Just("."),
            Just(":"),
            Just(";"),
            Just(".."),
            Just("..."),
            Just("#"),
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("^"),
            Just("=="),
            Just("~="),
            Just("<"),
            Just("x"),
            Just("t"),
            Just("s"),
            Just("pairs"),
            Just("ipairs"),
            Just("pcall"),
            Just("error"),
            Just("setmetatable"),
            Just("rawset"),
            Just("string"),
            Just("table"),
            Just("math"),
            Just("gsub"),
            Just("rep"),
            Just("_G"),
            Just("_ENV"),
            Just("select"),
            Just("tostring"),
            Just("\"a-b\""),
            Just("'%d+'"),
            Just("0/0"),
            Just("2^53"),
        ]
        .prop_map(str::to_owned),
        (-100i64..100).prop_map(|n| n.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lua_token_soup_never_panics(tokens in proptest::collection::vec(lua_token(), 0..30), x in any::<i32>()) {
        let runner = runner();
        let source = tokens.join(" ");
        let args = vec!["s".to_owned(), "t".to_owned(), "x".to_owned()];
        let inputs = serde_json::json!({"x": x, "s": "a,b", "t": [1, {"k": null}]});
        let inputs = inputs.as_object().cloned().unwrap();
        let _ = runner.execute_blocking("lua", &source, &args, &inputs);
        let _ = runner.evaluate_predicate_blocking("lua", &source, &args, &inputs);
    }

    #[test]
    fn arbitrary_text_never_panics_either_language(source in "\\PC{0,80}") {
        let runner = runner();
        for language in ["lua", "ale"] {
            let _ = runner.execute_blocking(language, &source, &[], &serde_json::Map::new());
        }
    }
}
