//! The stored event format: how one event is written to an event log.
//!
//! A stored event is one JSON object, `{"v":1,"timestamp":…,"type":…,"data":…}`. The sequence
//! number and aggregate id are not stored in it: they are the event's position and the log's key.
//!
//! **Versioning.** `v` names the format of the record *and of its payload*. Today's format is
//! [`STORED_EVENT_FORMAT`]. A record without `v` is the original Go engine's format
//! (`{"timestamp","type","data"}`), whose payloads are today's payloads, so it decodes as well.
//! A change that alters what an existing payload means must bump the format and teach
//! [`decode_stored`] to upgrade older records; the fixture test `tests/fixtures.rs` replays logs
//! written in every supported format so that forgetting this fails CI. Records from a newer
//! format than this build knows are rejected with [`StoredEventError::UnsupportedFormat`] rather
//! than misread (a rolling upgrade must update readers before writers).

use argyll_model::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::catalog::{EventKind, PartsError};
use crate::envelope::DataOf;

/// The format version written by this build.
pub const STORED_EVENT_FORMAT: u32 = 1;

/// Why a stored event could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredEventError {
    /// The record is not a JSON object of the stored shape.
    #[error("malformed stored event: {0}")]
    Malformed(String),
    /// The record was written by a newer format than this build reads.
    #[error("stored event format {found} is newer than the supported format {supported}")]
    UnsupportedFormat {
        /// The record's format.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The type or payload is not in the catalog.
    #[error(transparent)]
    Event(#[from] PartsError),
    /// The payload could not be serialised.
    #[error("cannot encode event: {0}")]
    Encode(String),
}

#[derive(Serialize)]
#[serde(bound = "")]
struct StoredRef<'a, E: EventKind> {
    v: u32,
    timestamp: Timestamp,
    #[serde(rename = "type")]
    event_type: &'a str,
    data: DataOf<'a, E>,
}

#[derive(Deserialize)]
struct StoredRecord<'a> {
    #[serde(default)]
    v: u32,
    timestamp: Timestamp,
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Encodes an event raised at `timestamp` in today's stored format.
pub fn encode_stored<E: EventKind>(
    event: &E,
    timestamp: Timestamp,
) -> Result<String, StoredEventError> {
    // The payload is written in place: no intermediate text to validate and copy.
    serde_json::to_string(&StoredRef {
        v: STORED_EVENT_FORMAT,
        timestamp,
        event_type: event.event_type(),
        data: DataOf(event),
    })
    .map_err(|error| StoredEventError::Encode(error.to_string()))
}

/// Decodes a stored event of any supported format into today's event and its timestamp.
pub fn decode_stored<E: EventKind>(text: &str) -> Result<(Timestamp, E), StoredEventError> {
    let record: StoredRecord<'_> = serde_json::from_str(text)
        .map_err(|error| StoredEventError::Malformed(error.to_string()))?;
    match record.v {
        // 0: the original engine's records (no `v`); 1: today's. Same payloads in both.
        0 | 1 => {
            let event = E::from_parts(&record.event_type, record.data.get())?;
            Ok((record.timestamp, event))
        }
        found => Err(StoredEventError::UnsupportedFormat {
            found,
            supported: STORED_EVENT_FORMAT,
        }),
    }
}
