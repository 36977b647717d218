//! Serialising and parsing large batches off the async workers' hands.
//!
//! A fan-out's `step_started` carries every work item, and its aggregated outputs are as long:
//! tens of megabytes of JSON for 100,000 items. Encoding or decoding that on an async worker
//! thread stalls every other task queued on it (`GET /health` took hundreds of milliseconds on
//! two cores). Large batches are therefore handled under `block_in_place`, which hands the
//! worker's other tasks to another thread while this one is busy. Small batches — nearly all —
//! are handled inline: moving them would cost more than it saves.

use argyll_events::{Event, FlowEvent};
use serde_json::Value;

/// Elements above which a work-item map or a JSON array/object counts as large.
const LARGE: usize = 512;
/// Events above which a batch counts as large.
const MANY_EVENTS: usize = 1024;
/// Bytes above which a text to decode counts as large.
const LARGE_TEXT: usize = 256 * 1024;

/// Runs `work` where it does not hold up other async tasks when `large`.
pub(crate) fn run<T>(large: bool, work: impl FnOnce() -> T) -> T {
    // The runtime is asked only when the work is large: this is on a hot path.
    let multi_threaded = || {
        tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        })
    };
    if large && multi_threaded() {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

fn large_value(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.len() > LARGE,
        Value::Object(fields) => fields.len() > LARGE,
        Value::String(text) => text.len() > LARGE_TEXT,
        _ => false,
    }
}

fn large_args<'a>(args: impl IntoIterator<Item = &'a Value>) -> bool {
    args.into_iter().any(large_value)
}

/// Whether encoding `events` is worth moving off the worker: many events, or one with a large
/// payload (looked at one level deep, which is cheap).
pub(crate) fn large_events<'a>(events: impl ExactSizeIterator<Item = &'a Event>) -> bool {
    if events.len() > MANY_EVENTS {
        return true;
    }
    events.into_iter().any(|event| match event {
        Event::Engine(_) => false,
        Event::Flow(event) => match event {
            FlowEvent::FlowStarted(started) => large_args(started.init.values()),
            FlowEvent::StepStarted(started) => {
                started.work_items.len() > LARGE || large_args(started.inputs.values())
            }
            FlowEvent::StepCompleted(completed) => large_args(completed.outputs.values()),
            FlowEvent::FlowCompleted(completed) => large_args(completed.result.values()),
            FlowEvent::AttributeSet(set) => large_value(&set.value),
            FlowEvent::WorkSucceeded(succeeded) => large_args(succeeded.outputs.values()),
            _ => false,
        },
    })
}

/// Whether decoding texts of `bytes` in all (`count` of them) is worth moving off the worker.
pub(crate) fn large_text(count: usize, bytes: usize) -> bool {
    count > MANY_EVENTS || bytes > LARGE_TEXT
}
