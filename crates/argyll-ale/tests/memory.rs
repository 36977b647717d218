//! The memory limit, with the metering allocator installed as this binary's global allocator
//! (as the server does): runs that hold too much fail with a limit error near the limit, runs
//! that allocate a lot but hold little succeed, and meters nest and start afresh per run.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::alloc::System;
use std::hint::black_box;

use argyll_ale::{
    LimitKind, Limits, MemoryMeter, MeteredAlloc, Phase, Program, eval_source, metering_installed,
};
use serde_json::{Map, Value as Json, json};

#[global_allocator]
static ALLOCATOR: MeteredAlloc<System> = MeteredAlloc(System);

const MIB: usize = 1024 * 1024;

/// `memory` bytes of memory; printed forms up to 64 MiB, so that `str` can build the large
/// strings these tests need; no deadline (unoptimised test builds are slow, and this is about
/// memory).
fn limits(memory: usize) -> Limits {
    Limits {
        max_memory_bytes: memory,
        max_output_bytes: 64 * MIB,
        timeout: None,
        ..Limits::default()
    }
}

fn inputs(value: Json) -> Map<String, Json> {
    value.as_object().cloned().unwrap_or_default()
}

/// `(text n)`: a string of 2ⁿ bytes, built by doubling.
const TEXT: &str = "(let-rec ([text (lambda (n) (if (= n 0) \"x\" (let [half (text (- n 1))] (str half half))))]) ";

/// Runs `body` (with `text` and the input `n` in scope) as a script under `limits`.
fn run(body: &str, n: i64, limits: Limits) -> Result<Map<String, Json>, argyll_ale::AleError> {
    let program = Program::compile(&format!("{TEXT}{body})"), &["n"]).expect("compiles");
    program.run_script(&inputs(json!({ "n": n })), limits)
}

#[test]
fn the_metering_allocator_is_installed() {
    assert!(metering_installed());
}

#[test]
fn keeping_many_32_mib_strings_fails_at_the_limit_instead_of_taking_gigabytes() {
    // The script: 48 distinct strings of 32 MiB kept in one vector would be 1.5 GiB.
    let outer = MemoryMeter::start();
    let error = run(
        "(let [big (text n)] (length (seq->vector (map (lambda (i) (str big i)) (range 48)))))",
        25,
        limits(64 * MIB),
    )
    .expect_err("over the memory limit");
    assert_eq!(error.phase, Phase::Limit, "{error}");
    assert_eq!(error.limit_kind(), Some(LimitKind::Memory));
    assert_eq!(error.message, "memory limit exceeded (64 MiB)");
    // The run stopped at its first step over the limit: beyond it by at most what one builtin
    // call allocates (a 32 MiB string, and the buffer it was printed into, grown to 64 MiB).
    let peak = outer.peak_bytes();
    assert!(peak > 64 * MIB, "the limit was reached: {peak}");
    assert!(peak < (64 + 3 * 33) * MIB, "peak {peak}");
    // Everything the run held was freed.
    assert!(outer.live_bytes() < MIB, "{}", outer.live_bytes());
}

#[test]
fn a_small_limit_stops_a_run_close_to_it() {
    let outer = MemoryMeter::start();
    let error = run(
        "(let [mib (text n)] (length (seq->vector (map (lambda (i) (str mib i)) (range 1000)))))",
        20,
        limits(16 * MIB),
    )
    .expect_err("1000 MiB kept");
    assert_eq!(error.message, "memory limit exceeded (16 MiB)");
    assert_eq!(error.phase, Phase::Limit);
    let peak = outer.peak_bytes();
    assert!(peak > 16 * MIB && peak < 20 * MIB, "peak {peak}");
}

#[test]
fn allocating_a_lot_while_holding_little_succeeds() {
    // 300 strings of 1 MiB, each dropped before the next: 300 MiB allocated in all, about
    // 2 MiB live at any time.
    let outer = MemoryMeter::start();
    let outputs = run(
        "(let [mib (text n)] ((lambda-rec sum (i total) (if (= i 300) total (sum (+ i 1) (+ total (length (str mib i)))))) 0 0))",
        20,
        limits(16 * MIB),
    )
    .expect("little is live at any time");
    let expected: usize = (0..300).map(|i: usize| MIB + i.to_string().len()).sum();
    assert_eq!(outputs["result"], expected);
    let peak = outer.peak_bytes();
    assert!(peak < 8 * MIB, "peak {peak}");
}

#[test]
fn every_kind_of_value_counts() {
    // Each script holds about `n` × 10⁴ values: n = 1 fits in 16 MiB (it takes under 5 MiB),
    // n = 100 does not.
    for (what, script) in [
        ("vectors", "(length (seq->vector (range (* n 10000))))"),
        ("lists", "(length (seq->list (range (* n 10000))))"),
        (
            "objects",
            "(length (seq->object (mapcat (lambda (i) [i i]) (range (* n 10000)))))",
        ),
        (
            "big integers",
            "(length (seq->vector (map (lambda (i) (* 1000000000000000000000 i)) (range (* n 10000)))))",
        ),
        (
            "closures",
            "(length (seq->vector (map (lambda (i) (lambda () i)) (range (* n 10000)))))",
        ),
        (
            "a lazy sequence held by its head",
            "(let [s (map (lambda (i) [i]) (range))] (length! (take (* n 10000) s)) (first s))",
        ),
    ] {
        let program = Program::compile(script, &["n"]).expect("compiles");
        let error = program
            .run_script(&inputs(json!({"n": 100})), limits(16 * MIB))
            .expect_err(what);
        assert_eq!(
            (error.phase, error.message.as_str()),
            (Phase::Limit, "memory limit exceeded (16 MiB)"),
            "{what}"
        );
        program
            .run_script(&inputs(json!({"n": 1})), limits(16 * MIB))
            .unwrap_or_else(|error| panic!("{what}, n = 1: {error}"));
    }
}

#[test]
fn the_json_result_counts() {
    // `[v v]` doubled 20 times: 20 small vectors as Ale values, 2²¹ JSON values written out.
    let outputs = run(
        "((lambda-rec double (k acc) (if (= k 0) acc (double (- k 1) [acc acc]))) n 1)",
        10,
        limits(16 * MIB),
    )
    .expect("2¹⁰ leaves fit");
    assert_eq!(outputs["result"][1][0][1][0][1][0][1][0][1][0], 1);
    let error = run(
        "((lambda-rec double (k acc) (if (= k 0) acc (double (- k 1) [acc acc]))) n 1)",
        20,
        limits(16 * MIB),
    )
    .expect_err("2²⁰ leaves do not");
    assert_eq!(error.message, "memory limit exceeded (16 MiB)");
}

#[test]
fn a_product_too_large_to_reserve_is_a_limit_error_not_an_abort() {
    // 10⁸ and 10¹⁰ combinations: the reservation either fails (a limit error rather than aborting the
    // process) or succeeds in virtual memory and is counted.
    for n in [10_000, 100_000] {
        let error = eval_source(
            &[],
            &format!("(length (cartesian-product (range {n}) (range {n})))"),
            limits(64 * MIB),
        )
        .expect_err("too many combinations");
        assert_eq!(error.message, "memory limit exceeded (64 MiB)", "{n}");
    }
}

#[test]
fn inputs_count() {
    let program = Program::compile("(length n)", &["n"]).expect("compiles");
    let big = inputs(json!({ "n": "x".repeat(8 * MIB) }));
    let error = program
        .run_script(&big, limits(4 * MIB))
        .expect_err("an 8 MiB input");
    assert_eq!(error.message, "memory limit exceeded (4 MiB)");
    let outputs = program.run_script(&big, limits(16 * MIB)).expect("fits");
    assert_eq!(outputs["result"], 8 * MIB);
}

#[test]
fn predicates_and_sources_have_the_limit_too() {
    let program = Program::compile(
        &format!("{TEXT}(let [big (text 20)] (length (seq->vector (map (lambda (i) (str big i)) (range n))))))"),
        &["n"],
    )
    .expect("compiles");
    let error = program
        .run_predicate(&inputs(json!({"n": 100})), limits(16 * MIB))
        .expect_err("100 MiB kept");
    assert_eq!(error.message, "memory limit exceeded (16 MiB)");
    assert!(
        program
            .run_predicate(&inputs(json!({"n": 4})), limits(16 * MIB))
            .expect("4 MiB kept")
    );

    let error = eval_source(&[], "(seq->vector (range 10000000))", limits(16 * MIB))
        .expect_err("10⁷ values");
    assert_eq!(error.message, "memory limit exceeded (16 MiB)");
    // A limit that is not a whole number of MiB is given in bytes.
    let error = eval_source(&[], "(seq->vector (range 10000000))", limits(1_000_000))
        .expect_err("10⁷ values");
    assert_eq!(error.message, "memory limit exceeded (1000000 bytes)");
}

#[test]
fn recover_and_defer_cannot_get_past_the_limit() {
    let error = eval_source(
        &[],
        "(recover (lambda () (seq->vector (range 10000000))) (lambda (e) :recovered))",
        limits(16 * MIB),
    )
    .expect_err("limit errors are not recoverable");
    assert_eq!(error.message, "memory limit exceeded (16 MiB)");
    let error = eval_source(
        &[],
        "(%defer (lambda () (seq->vector (range 10000000))) (lambda () (length (seq->vector (range 1000)))))",
        limits(16 * MIB),
    )
    .expect_err("the run fails whatever its cleanup does");
    assert_eq!(error.message, "memory limit exceeded (16 MiB)");
}

#[test]
fn results_kept_by_the_caller_do_not_count_against_later_runs() {
    // Each run returns a 4 MiB string (and needs about 12 MiB to build it: the halves, the
    // buffer it is printed into, the string, its JSON copy); the caller keeps every result
    // (40 MiB in all) while each run is held to 16 MiB.
    let program = Program::compile(&format!("{TEXT}(text n))"), &["n"]).expect("compiles");
    let kept: Vec<_> = (0..10)
        .map(|_| {
            program
                .run_script(&inputs(json!({"n": 22})), limits(16 * MIB))
                .expect("fits in 16 MiB")
        })
        .collect();
    assert!(
        kept.iter()
            .all(|outputs| outputs["result"].as_str().map(str::len) == Some(4 * MIB))
    );

    // A run that failed at the limit leaves nothing behind for the next.
    let error = run(
        "(let [mib (text n)] (seq->vector (map (lambda (i) (str mib i)) (range 1000))))",
        20,
        limits(16 * MIB),
    )
    .expect_err("1000 MiB");
    assert_eq!(error.message, "memory limit exceeded (16 MiB)");
    let outputs = run("(text n)", 22, limits(16 * MIB)).expect("fits in 16 MiB");
    assert_eq!(outputs["result"].as_str().map(str::len), Some(4 * MIB));
}

#[test]
fn meters_nest_and_restore_the_outer_count() {
    let outer = MemoryMeter::start();
    assert_eq!(outer.live_bytes(), 0);
    let one = black_box(vec![1u8; MIB]);
    assert_eq!(outer.live_bytes(), MIB);
    {
        let inner = MemoryMeter::start();
        assert_eq!(inner.live_bytes(), 0);
        let two = black_box(vec![2u8; 2 * MIB]);
        let dropped = black_box(vec![3u8; 4 * MIB]);
        drop(dropped);
        assert_eq!(inner.live_bytes(), 2 * MIB);
        assert_eq!(inner.peak_bytes(), 6 * MIB);
        assert_eq!(
            outer.live_bytes(),
            3 * MIB,
            "the outer meter counts the inner's bytes"
        );
        drop(inner);
        // `two` outlives the inner meter: still counted by the outer one, and freed in it.
        assert_eq!(outer.live_bytes(), 3 * MIB);
        drop(two);
    }
    assert_eq!(outer.live_bytes(), MIB);
    assert_eq!(
        outer.peak_bytes(),
        7 * MIB,
        "the inner peak raised the outer one"
    );

    // A run inside the meter: the result it returns stays counted, and the meter keeps counting
    // after the run's own meter ended.
    let outputs = run("(text n)", 21, limits(8 * MIB)).expect("2 MiB");
    let live = outer.live_bytes();
    assert!((3 * MIB..4 * MIB).contains(&live), "{live}");
    drop(outputs);
    assert!(outer.live_bytes() < 2 * MIB, "{}", outer.live_bytes());
    let three = black_box(vec![4u8; 3 * MIB]);
    assert!(outer.live_bytes() >= 4 * MIB, "{}", outer.live_bytes());
    drop((one, three));
    drop(outer);

    // The next outermost meter starts from zero.
    let fresh = MemoryMeter::start();
    assert_eq!((fresh.live_bytes(), fresh.peak_bytes()), (0, 0));
}

#[test]
fn meters_are_per_thread() {
    let meter = MemoryMeter::start();
    std::thread::spawn(|| black_box(vec![0u8; 8 * MIB]).len())
        .join()
        .expect("no panic");
    assert!(meter.live_bytes() < MIB, "{}", meter.live_bytes());
}
