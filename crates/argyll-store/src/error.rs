//! Store errors.

use argyll_events::AggregateId;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// An append expected another next sequence: someone else appended first.
    #[error("version conflict on {aggregate}: expected sequence {expected}, actual {actual}")]
    Conflict {
        /// The aggregate.
        aggregate: AggregateId,
        /// The sequence the caller expected.
        expected: u64,
        /// The aggregate's actual next sequence.
        actual: u64,
    },
    /// A snapshot claims events the log does not have.
    #[error(
        "invalid snapshot for {aggregate}: sequence {sequence} is beyond the log ({next_sequence} events)"
    )]
    InvalidSnapshot {
        /// The aggregate.
        aggregate: AggregateId,
        /// The snapshot's sequence.
        sequence: u64,
        /// The log's next sequence.
        next_sequence: u64,
    },
    /// An event that does not belong to the aggregate it is appended to.
    #[error("event {event_type} cannot be appended to {aggregate}")]
    WrongAggregate {
        /// The aggregate.
        aggregate: AggregateId,
        /// The event's type.
        event_type: &'static str,
    },
    /// The backend could not be reached (connection, I/O, timeout, a server loading or
    /// failing over); retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the command (a script error, a key of the wrong type, a protocol
    /// error): retrying the same command does not help.
    #[error("store refused the command: {0}")]
    Refused(String),
    /// The store is configured wrongly (a malformed address or database number).
    #[error("store misconfigured: {0}")]
    Misconfigured(String),
    /// A listing's cursor is not one the store gave out for that order (a caller's mistake:
    /// the server answers 400).
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// The check every adapter makes before an append: each event belongs to the aggregate's kind
/// (engine events to the engine aggregate, flow events to a flow).
pub fn check_events_belong(
    aggregate: &argyll_events::AggregateId,
    events: &[(argyll_model::Timestamp, argyll_events::Event)],
) -> Result<(), StoreError> {
    use argyll_events::{AggregateId, Event};
    let misplaced = events.iter().find(|(_, event)| {
        !matches!(
            (aggregate, event),
            (AggregateId::Engine, Event::Engine(_)) | (AggregateId::Flow(_), Event::Flow(_))
        )
    });
    match misplaced {
        Some((_, event)) => Err(StoreError::WrongAggregate {
            aggregate: aggregate.clone(),
            event_type: event.event_type(),
        }),
        None => Ok(()),
    }
}
