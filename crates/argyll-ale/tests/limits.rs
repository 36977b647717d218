//! Budgets: runaway scripts end with a limit error, never a hang, a stack overflow or a panic.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use argyll_ale::{Limits, Phase, Program, eval_source};
use serde_json::{Map, json};

fn inputs(value: serde_json::Value) -> Map<String, serde_json::Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn limit_error(script: &str, limits: Limits) -> String {
    let program = Program::compile(script, &["n"]).expect("compiles");
    let started = Instant::now();
    let error = program
        .run_script(&inputs(json!({"n": 1})), limits)
        .expect_err("must hit a limit");
    assert_eq!(error.phase, Phase::Limit, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    error.message
}

#[test]
fn an_infinite_tail_loop_exhausts_the_step_budget() {
    let limits = Limits {
        max_steps: 1_000_000,
        ..Limits::default()
    };
    let message = limit_error("((lambda-rec spin (x) (spin x)) n)", limits);
    assert!(message.contains("step limit"), "{message}");
}

#[test]
fn infinite_recursion_hits_the_depth_limit_without_overflowing_the_stack() {
    let message = limit_error(
        "((lambda-rec down (x) (+ 1 (down x))) n)",
        Limits::default(),
    );
    assert!(
        message.contains("recursion depth limit exceeded (10000 calls)"),
        "{message}"
    );
}

#[test]
fn the_wall_clock_deadline_stops_long_work() {
    let limits = Limits {
        max_steps: u64::MAX,
        timeout: Some(Duration::from_millis(50)),
        ..Limits::default()
    };
    let message = limit_error("((lambda-rec spin (x) (spin x)) n)", limits);
    assert!(message.contains("time limit exceeded (50 ms)"), "{message}");
}

#[test]
fn realising_an_infinite_sequence_is_stopped() {
    let limits = Limits {
        max_steps: 200_000,
        ..Limits::default()
    };
    let message = limit_error("{:all (seq->vector (range))}", limits);
    assert!(message.contains("step limit"), "{message}");
}

#[test]
fn deep_but_bounded_recursion_works_on_a_small_stack() {
    // Test threads have 2 MiB of stack; the evaluator grows its stack on demand. No deadline:
    // unoptimised test builds are slow, and this is about the stack.
    let limits = Limits {
        max_depth: 50_000,
        timeout: None,
        ..Limits::default()
    };
    let (value, _) = eval_source(
        &[],
        "((lambda-rec count (n) (if (= n 0) 0 (+ 1 (count (- n 1))))) 40000)",
        limits,
    )
    .expect("deep recursion within the limit");
    assert_eq!(argyll_ale::reader_form(&value), "40000");
}

#[test]
fn long_lists_and_sequences_are_dropped_without_recursion() {
    let (value, _) = eval_source(
        &[],
        "(length (seq->list (range 300000)))",
        Limits::default(),
    )
    .expect("runs");
    assert_eq!(argyll_ale::reader_form(&value), "300000");
    let (value, _) =
        eval_source(&[], "(length! (take 300000 (range)))", Limits::default()).expect("runs");
    assert_eq!(argyll_ale::reader_form(&value), "300000");
}

#[test]
fn deeply_nested_data_is_built_printed_and_dropped_safely() {
    let build =
        "((lambda-rec nest (n acc) (if (= n 0) acc (nest (- n 1) [{:k (list acc)}]))) 20000 '())";
    // No deadline: unoptimised test builds running in parallel are slow, and this is about the
    // stack.
    let relaxed = Limits {
        timeout: None,
        ..Limits::default()
    };
    let (value, _) = eval_source(&[], &format!("(length {build})"), relaxed).expect("runs");
    assert_eq!(argyll_ale::reader_form(&value), "1");
    let (value, _) = eval_source(&[], &format!("(length (str {build}))"), relaxed).expect("prints");
    assert_eq!(
        argyll_ale::reader_form(&value),
        (20_000 * "[{:k ()}]".len() + 2).to_string()
    );

    let script =
        "((lambda-rec nest (n acc) (if (= n 0) {:deep acc} (nest (- n 1) [acc]))) 20000 n)";
    let program = Program::compile(script, &["n"]).expect("compiles");
    let error = program
        .run_script(&inputs(json!({"n": 1})), relaxed)
        .expect_err("too deep for JSON");
    assert!(error.message.contains("nested too deeply"), "{error}");
    let lists = Program::compile(
        "((lambda-rec nest (n acc) (if (= n 0) {:deep acc} (nest (- n 1) (list acc)))) 200 n)",
        &["n"],
    )
    .expect("compiles");
    let error = lists
        .run_script(&inputs(json!({"n": 1})), Limits::default())
        .expect_err("lists count as nesting");
    assert!(error.message.contains("nested too deeply"), "{error}");
    let shallow = Program::compile("{:deep [[[[n]]]]}", &["n"]).expect("compiles");
    let outputs = shallow
        .run_script(&inputs(json!({"n": 1})), Limits::default())
        .expect("runs");
    assert_eq!(outputs["deep"], json!([[[[1]]]]));
}

/// `[v v]` doubled n times takes n steps to build and 2ⁿ to walk: every walk must be bounded.
const DOUBLED: &str =
    "((lambda-rec double (n acc) (if (= n 0) acc (double (- n 1) [acc acc]))) 64 n)";

#[test]
fn values_with_exponential_unshared_size_cannot_hang_a_walk() {
    let error = |script: &str| {
        let program = Program::compile(script, &["n"]).expect("compiles");
        let started = Instant::now();
        let error = program
            .run_script(&inputs(json!({"n": 1})), Limits::default())
            .expect_err("must hit a limit");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{script} took {:?}",
            started.elapsed()
        );
        assert_eq!(error.phase, Phase::Limit, "{script}: {error}");
        error.message
    };
    assert!(
        error(&format!("(str {DOUBLED})")).contains("output size limit exceeded (16777216 bytes)")
    );
    assert!(error(&format!("(str! {DOUBLED})")).contains("output size limit"));
    assert!(error(&format!("{{:big {DOUBLED}}}")).contains("output size limit"));
    assert!(error(&format!("[(seq->list (range 3)) {DOUBLED}]")).contains("output size limit"));
    let other = DOUBLED.replace("acc acc", "acc (identity acc)");
    let message = error(&format!("(= {DOUBLED} {other})"));
    assert!(
        message.contains("step limit") || message.contains("time limit"),
        "{message}"
    );

    // Shared parts compare in one step; hashing looks at a bounded prefix.
    let program = Program::compile(
        &format!("(let [v {DOUBLED}] [(= v v) (length {{v 1 [v] 2}})])"),
        &["n"],
    )
    .expect("compiles");
    let outputs = program
        .run_script(&inputs(json!({"n": 1})), Limits::default())
        .expect("runs");
    assert_eq!(outputs["result"], json!([true, 2]));

    let small = Limits {
        max_output_bytes: 10,
        ..Limits::default()
    };
    let program = Program::compile("(str \"0123456789\" n)", &["n"]).expect("compiles");
    let error = program
        .run_script(&inputs(json!({"n": 1})), small)
        .expect_err("11 bytes");
    assert_eq!(error.message, "output size limit exceeded (10 bytes)");
}

#[test]
fn errors_carry_their_phase() {
    let compile = Program::compile("{:x (length a a)}", &["a"]).expect_err("arity");
    assert_eq!(
        (compile.phase, compile.message.as_str()),
        (Phase::Compile, "got 2 arguments, expected 1")
    );
    let unknown = Program::compile("{:x totl}", &["total"]).expect_err("unknown name");
    assert_eq!(unknown.message, "name not declared in namespace: totl");
    let read = Program::compile("{:x (+ 1 2}", &[]).expect_err("syntax");
    assert_eq!(read.phase, Phase::Read);
    let program = Program::compile("(/ n 0)", &["n"]).expect("compiles");
    let runtime = program
        .run_script(&inputs(json!({"n": 1})), Limits::default())
        .expect_err("divide by zero");
    assert_eq!(
        (runtime.phase, runtime.message.as_str()),
        (Phase::Runtime, "divide by zero")
    );
    let raised = Program::compile("(raise \"bad input: \" n)", &["n"]).expect("compiles");
    let error = raised
        .run_script(&inputs(json!({"n": 42})), Limits::default())
        .expect_err("raise");
    assert_eq!(error.message, "bad input: 42");
}
