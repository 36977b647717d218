//! Without the metering allocator (an embedder that did not install it): runs work as before,
//! the memory limit is simply not enforced, and the crate says so.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argyll_ale::{Limits, MemoryMeter, Program, metering_installed};
use serde_json::json;

const MIB: usize = 1024 * 1024;

#[test]
fn without_the_metering_allocator_runs_work_and_the_memory_limit_is_not_enforced() {
    // Allocations have happened (the test harness, this test's thread): none went through a
    // metering allocator.
    let _warm = std::hint::black_box(vec![0u8; 1024]);
    assert!(!metering_installed());

    let program = Program::compile(
        "(let [s (seq->vector (range n))] {:n (length s) :last (last s)})",
        &["n"],
    )
    .expect("compiles");
    let tiny = Limits {
        max_memory_bytes: 1024,
        timeout: None,
        ..Limits::default()
    };
    let meter = MemoryMeter::start();
    let outputs = program
        .run_script(json!({"n": 100_000}).as_object().unwrap(), tiny)
        .expect("megabytes held under a 1 KiB limit: not enforced");
    assert_eq!(outputs["n"], 100_000);
    assert_eq!(outputs["last"], 99_999);
    // Nothing is counted either.
    let kept = std::hint::black_box(vec![1u8; MIB]);
    assert_eq!((meter.live_bytes(), meter.peak_bytes()), (0, 0));
    drop(kept);
}
