//! How values are written in the store's keyspaces: events in the versioned stored-event
//! format of `argyll-events` (the format Redis holds too), the rest as small JSON or fixed-width
//! binary records. Decoding never panics: a record that does not decode is
//! [`StoreError::Corrupt`], naming what it was.

use std::sync::Arc;

use argyll_events::{AggregateId, EngineEvent, Event, FlowEvent, decode_stored, encode_stored};
use argyll_model::Timestamp;
use argyll_store::{FlowIndexEntry, FlowOutcome, FlowPhase, Lease, Snapshot, StoreError, Timer};
use serde::{Deserialize, Serialize};

use crate::keys::{sortable_time, time_of_sortable};

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

/// One event in the stored format.
pub(crate) fn encode_event(timestamp: Timestamp, event: &Event) -> Result<String, StoreError> {
    match event {
        Event::Engine(event) => encode_stored(event.as_ref(), timestamp),
        Event::Flow(event) => encode_stored(event, timestamp),
    }
    .map_err(|error| corrupt("cannot encode an event", error))
}

/// One stored event of `aggregate`.
pub(crate) fn decode_event(
    aggregate: &AggregateId,
    record: &[u8],
) -> Result<(Timestamp, Event), StoreError> {
    let text = std::str::from_utf8(record)
        .map_err(|error| corrupt(&format!("event of {aggregate}"), error))?;
    match aggregate {
        AggregateId::Engine => decode_stored::<EngineEvent>(text)
            .map(|(at, event)| (at, Event::Engine(Box::new(event)))),
        AggregateId::Flow(_) => {
            decode_stored::<FlowEvent>(text).map(|(at, event)| (at, Event::Flow(event)))
        }
    }
    .map_err(|error| corrupt(&format!("event of {aggregate}"), error))
}

/// A snapshot: its sequence (8 bytes, big-endian) then the state's JSON.
pub(crate) fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + snapshot.state_json.len());
    value.extend_from_slice(&snapshot.sequence.to_be_bytes());
    value.extend_from_slice(snapshot.state_json.as_bytes());
    value
}

/// The sequence a stored snapshot was taken at.
pub(crate) fn snapshot_sequence(value: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = value
        .get(..8)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| corrupt("snapshot", "shorter than its sequence"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A stored snapshot.
pub(crate) fn decode_snapshot(value: &[u8]) -> Result<Snapshot, StoreError> {
    let sequence = snapshot_sequence(value)?;
    let json = std::str::from_utf8(value.get(8..).unwrap_or_default())
        .map_err(|error| corrupt("snapshot", error))?;
    Ok(Snapshot {
        sequence,
        state_json: Arc::from(json),
    })
}

/// An index entry as stored (the flow id is its key).
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    outcome: u8,
    phase: u8,
    created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Absent in entries written before goals were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    goals: Vec<String>,
}

fn outcome_code(outcome: FlowOutcome) -> u8 {
    match outcome {
        FlowOutcome::Active => 0,
        FlowOutcome::Completed => 1,
        FlowOutcome::Failed => 2,
    }
}

fn phase_code(phase: FlowPhase) -> u8 {
    match phase {
        FlowPhase::Active => 0,
        FlowPhase::Deactivated => 1,
        FlowPhase::Archiving => 2,
        FlowPhase::Archived => 3,
    }
}

/// An index entry's value.
pub(crate) fn encode_entry(entry: &FlowIndexEntry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredEntry {
        parent: entry.parent_flow_id.clone(),
        outcome: outcome_code(entry.outcome),
        phase: phase_code(entry.phase),
        created_at: entry.created_at,
        completed_at: entry.completed_at,
        error: entry.error.clone(),
        goals: entry.goals.clone(),
    })
    .map_err(|error| corrupt("cannot encode an index entry", error))
}

/// The index entry of `flow_id` from its value.
pub(crate) fn decode_entry(flow_id: &str, value: &[u8]) -> Result<FlowIndexEntry, StoreError> {
    let what = || format!("index entry of flow {flow_id}");
    let stored: StoredEntry =
        serde_json::from_slice(value).map_err(|error| corrupt(&what(), error))?;
    let outcome = match stored.outcome {
        0 => FlowOutcome::Active,
        1 => FlowOutcome::Completed,
        2 => FlowOutcome::Failed,
        other => return Err(corrupt(&what(), format!("unknown outcome {other}"))),
    };
    let phase = match stored.phase {
        0 => FlowPhase::Active,
        1 => FlowPhase::Deactivated,
        2 => FlowPhase::Archiving,
        3 => FlowPhase::Archived,
        other => return Err(corrupt(&what(), format!("unknown phase {other}"))),
    };
    Ok(FlowIndexEntry {
        flow_id: flow_id.to_owned(),
        goals: stored.goals,
        parent_flow_id: stored.parent,
        outcome,
        phase,
        created_at: stored.created_at,
        completed_at: stored.completed_at,
        error: stored.error,
    })
}

fn split_time(value: &[u8], what: &str) -> Result<(Timestamp, Vec<u8>), StoreError> {
    let time: [u8; 8] = value
        .get(..8)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| corrupt(what, "shorter than its time"))?;
    Ok((
        time_of_sortable(time),
        value.get(8..).unwrap_or_default().to_vec(),
    ))
}

fn with_time(at: Timestamp, rest: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + rest.len());
    value.extend_from_slice(&sortable_time(at));
    value.extend_from_slice(rest);
    value
}

/// A lease's value: its expiry then its owner.
pub(crate) fn encode_lease(lease: &Lease) -> Vec<u8> {
    with_time(lease.expires_at, lease.owner.as_bytes())
}

/// The lease under `key`.
pub(crate) fn decode_lease(key: &[u8], value: &[u8]) -> Result<Lease, StoreError> {
    let key = String::from_utf8(key.to_vec()).map_err(|error| corrupt("lease key", error))?;
    let (expires_at, owner) = split_time(value, "lease")?;
    let owner = String::from_utf8(owner).map_err(|error| corrupt("lease owner", error))?;
    Ok(Lease {
        key,
        owner,
        expires_at,
    })
}

/// A timer's value: its due time then its payload.
pub(crate) fn encode_timer(timer: &Timer) -> Vec<u8> {
    with_time(timer.due, timer.payload.as_bytes())
}

/// The timer under `key`.
pub(crate) fn decode_timer(key: &[u8], value: &[u8]) -> Result<Timer, StoreError> {
    let key = String::from_utf8(key.to_vec()).map_err(|error| corrupt("timer key", error))?;
    let (due, payload) = split_time(value, "timer")?;
    let payload = String::from_utf8(payload).map_err(|error| corrupt("timer payload", error))?;
    Ok(Timer {
        key,
        due,
        payload: payload.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let entry = FlowIndexEntry {
            flow_id: "f".into(),
            goals: vec!["g1".into(), "g2".into()],
            parent_flow_id: Some("p".into()),
            outcome: FlowOutcome::Failed,
            phase: FlowPhase::Archiving,
            created_at: Timestamp::from_unix_millis(5),
            completed_at: Some(Timestamp::from_unix_millis(9)),
            error: Some("boom".into()),
        };
        assert_eq!(
            decode_entry("f", &encode_entry(&entry).unwrap()).unwrap(),
            entry
        );
        let lease = Lease {
            key: "work:f".into(),
            owner: "me".into(),
            expires_at: Timestamp::from_unix_millis(7),
        };
        assert_eq!(
            decode_lease(lease.key.as_bytes(), &encode_lease(&lease)).unwrap(),
            lease
        );
        let timer = Timer {
            key: "t".into(),
            due: Timestamp::from_unix_millis(3),
            payload: "{}".into(),
        };
        assert_eq!(
            decode_timer(timer.key.as_bytes(), &encode_timer(&timer)).unwrap(),
            timer
        );
        let snapshot = Snapshot {
            sequence: 4,
            state_json: "{\"a\":1}".into(),
        };
        assert_eq!(
            decode_snapshot(&encode_snapshot(&snapshot)).unwrap(),
            snapshot
        );
    }

    #[test]
    fn damaged_records_are_corrupt_not_a_panic() {
        assert!(matches!(
            decode_entry("f", b"{not json"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_entry("f", br#"{"outcome":9,"phase":0,"created_at":"2024-01-01T00:00:00Z"}"#),
            Err(StoreError::Corrupt(message)) if message.contains("unknown outcome 9")
        ));
        assert!(matches!(
            decode_lease(b"k", b"123"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(decode_snapshot(b"1"), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            decode_event(&AggregateId::Flow("f".into()), b"\xff\xfe"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
