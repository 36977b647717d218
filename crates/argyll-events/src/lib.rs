//! # argyll-events
//!
//! Argyll is event-sourced: every change to the step catalog or to a flow is an immutable event,
//! and state is what the events add up to. This crate owns that vocabulary and arithmetic:
//!
//! * the **catalog** of events ([`EngineEvent`] for the engine aggregate, [`FlowEvent`] for each
//!   flow) with payloads field-for-field compatible with the original engine's, so WebSocket
//!   clients written for it keep working;
//! * **envelopes** ([`EventEnvelope`], [`AggregateId`]) as the event feed and WebSocket carry them;
//! * the **stored format** ([`encode_stored`], [`decode_stored`]), versioned so that logs written
//!   today replay after an upgrade;
//! * pure **reducers** ([`Projection`]) that fold events into [`argyll_model::EngineState`] and
//!   `Option<`[`argyll_model::FlowState`]`>`; they are total — an event that does not fit the
//!   state is an [`ApplyError`], never a panic.
//!
//! **Must not depend on**: anything but `argyll-model`; no I/O, no clock (timestamps come with
//! the events), no async runtime. Deciding *which* events to raise is the engine's job; storing
//! them is the store's.
//!
//! ```
//! use argyll_events::{FlowEvent, FlowStarted, Projection, decode_stored, encode_stored};
//! use argyll_model::{Args, ExecutionPlan, FlowState, FlowStatus, Timestamp};
//!
//! let started = FlowEvent::from(FlowStarted {
//!     plan: ExecutionPlan::default().into(),
//!     init: Args::new(),
//!     metadata: Default::default(),
//!     flow_id: "f1".into(),
//! });
//! let stored = encode_stored(&started, Timestamp::from_unix_millis(1_000)).unwrap();
//! let (at, event): (Timestamp, FlowEvent) = decode_stored(&stored).unwrap();
//!
//! let mut flow: Option<FlowState> = None;
//! flow.apply(&event, at).unwrap();
//! assert_eq!(flow.map(|f| f.status), Some(FlowStatus::Active));
//! ```

mod apply;
mod catalog;
mod envelope;
mod stored;

pub use apply::{ApplyError, Projection, ReplayError, apply_to_started, replay};
pub use catalog::{
    AttributeSet, EngineEvent, EventKind, FlowActivated, FlowArchived, FlowArchiving,
    FlowCompleted, FlowDeactivated, FlowDigestUpdated, FlowEvent, FlowFailed, FlowStarted,
    PartsError, RetryScheduled, StepCompleted, StepFailed, StepHealthChanged, StepRegistered,
    StepSkipped, StepStarted, StepUnregistered, StepUpdated, WorkFailed, WorkNotCompleted,
    WorkStarted, WorkSucceeded,
};
pub use envelope::{AggregateId, Event, EventEnvelope, decode_event};
pub use stored::{STORED_EVENT_FORMAT, StoredEventError, decode_stored, encode_stored};
