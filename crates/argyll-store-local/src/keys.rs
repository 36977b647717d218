//! How the store's data is keyed in its keyspaces. Every key is built here, so the layout of a
//! data directory is readable in one place (and versioned by [`crate::FORMAT_VERSION`]).
//!
//! * `events`: aggregate prefix ++ sequence (u64, big-endian) → one stored event (JSON, the
//!   versioned format of `argyll-events`). One log is one key range, in sequence order.
//! * `snapshots`: aggregate prefix → sequence (u64, big-endian) ++ state JSON.
//! * `index`: flow id → index entry (JSON).
//! * `phases`: phase byte ++ flow id → nothing (the phase sets, sorted by flow id).
//! * `deactivated`: completion time (sortable, big-endian) ++ flow id → nothing (newest last).
//! * `created` (format 2): creation time (sortable, big-endian) ++ flow id → nothing: every
//!   indexed flow, oldest first (the time orders of a listing; written and removed in the batch
//!   of the entry).
//! * `leases`: lease key → owner and expiry; `timers`: timer key → due time and payload.
//!
//! The format version is not a key: it is the data directory's `FORMAT` file.
//!
//! The aggregate prefix is the kind (`e` engine, `f` flow) and, for a flow, the id's length
//! (u32, big-endian) and bytes: no prefix is the start of another's, whatever bytes ids hold.

use argyll_events::AggregateId;
use argyll_model::Timestamp;
use argyll_store::FlowPhase;

/// The prefix of every key of `aggregate`'s log (and its snapshot key).
pub(crate) fn aggregate_prefix(aggregate: &AggregateId) -> Vec<u8> {
    match aggregate {
        AggregateId::Engine => vec![b'e'],
        AggregateId::Flow(id) => {
            let mut key = Vec::with_capacity(1 + 4 + id.len() + 8);
            key.push(b'f');
            // Ids are bounded far below 4 GiB by the engine; saturate rather than wrap.
            let len = u32::try_from(id.len()).unwrap_or(u32::MAX);
            key.extend_from_slice(&len.to_be_bytes());
            key.extend_from_slice(id.as_bytes());
            key
        }
    }
}

/// The key of event `sequence` of the log whose prefix is `prefix`.
pub(crate) fn event_key(prefix: &[u8], sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// The sequence at the end of an event key (`None` for a key too short to hold one).
pub(crate) fn sequence_of(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    let bytes: [u8; 8] = key.get(start..)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The byte a phase set is keyed by.
pub(crate) fn phase_byte(phase: FlowPhase) -> u8 {
    match phase {
        FlowPhase::Active => b'a',
        FlowPhase::Deactivated => b'd',
        FlowPhase::Archiving => b'g',
        FlowPhase::Archived => b'r',
    }
}

/// The key of `flow_id` in `phase`'s set.
pub(crate) fn phase_key(phase: FlowPhase, flow_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + flow_id.len());
    key.push(phase_byte(phase));
    key.extend_from_slice(flow_id.as_bytes());
    key
}

/// A timestamp as 8 bytes that sort as the instants do (the unset zero first).
pub(crate) fn sortable_time(at: Timestamp) -> [u8; 8] {
    sortable_nanos(argyll_store::nanos_of(at))
}

/// Nanoseconds (`i64::MIN` for the unset time) as 8 bytes that sort as the numbers do.
fn sortable_nanos(nanos: i64) -> [u8; 8] {
    // Flipping the sign bit maps i64 order onto unsigned byte order.
    (u64::from_ne_bytes(nanos.to_ne_bytes()) ^ (1 << 63)).to_be_bytes()
}

/// The instant of [`sortable_time`]'s bytes.
pub(crate) fn time_of_sortable(bytes: [u8; 8]) -> Timestamp {
    let nanos = i64::from_ne_bytes((u64::from_be_bytes(bytes) ^ (1 << 63)).to_ne_bytes());
    if nanos == i64::MIN {
        Timestamp::ZERO
    } else {
        Timestamp::from_unix_nanos(nanos)
    }
}

/// The key of a deactivated flow in the by-completion order.
pub(crate) fn deactivated_key(completed_at: Timestamp, flow_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + flow_id.len());
    key.extend_from_slice(&sortable_time(completed_at));
    key.extend_from_slice(flow_id.as_bytes());
    key
}

/// The flow id of a [`deactivated_key`] (or a [`created_key`]).
pub(crate) fn flow_of_deactivated_key(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(8..)?).ok()
}

/// The key of a flow in the by-creation order, from its creation time in nanoseconds (as
/// [`argyll_store::nanos_of`] and a [`argyll_store::TimeCursor`] give it).
pub(crate) fn created_key(created_nanos: i64, flow_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + flow_id.len());
    key.extend_from_slice(&sortable_nanos(created_nanos));
    key.extend_from_slice(flow_id.as_bytes());
    key
}

/// The key of an entry in the by-creation order.
pub(crate) fn created_key_of(entry: &argyll_store::FlowIndexEntry) -> Vec<u8> {
    created_key(argyll_store::nanos_of(entry.created_at), &entry.flow_id)
}

/// The flow id of a [`created_key`].
pub(crate) fn flow_of_created_key(key: &[u8]) -> Option<&str> {
    flow_of_deactivated_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flow_prefix_starts_another_flows_prefix() {
        let short = aggregate_prefix(&AggregateId::Flow("ab".into()));
        let long = aggregate_prefix(&AggregateId::Flow("abc".into()));
        assert!(!long.starts_with(&short));
        assert!(!short.starts_with(&aggregate_prefix(&AggregateId::Engine)));
        // An id whose bytes look like another's length and sequence stays apart too.
        let tricky = aggregate_prefix(&AggregateId::Flow("ab\0\0\0\0".into()));
        assert!(!tricky.starts_with(&short));
    }

    #[test]
    fn event_keys_sort_by_sequence_and_give_it_back() {
        let prefix = aggregate_prefix(&AggregateId::Flow("f".into()));
        let keys: Vec<Vec<u8>> = [0u64, 1, 255, 256, u64::MAX]
            .iter()
            .map(|s| event_key(&prefix, *s))
            .collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(sequence_of(&keys[3]), Some(256));
        assert_eq!(sequence_of(b"short"), None);
    }

    #[test]
    fn sortable_times_sort_as_instants_and_round_trip() {
        let instants = [
            Timestamp::ZERO,
            Timestamp::from_unix_millis(-5),
            Timestamp::from_unix_millis(0),
            Timestamp::from_unix_millis(1_700_000_000_000),
        ];
        for pair in instants.windows(2) {
            assert!(sortable_time(pair[0]) < sortable_time(pair[1]));
        }
        for at in instants {
            assert_eq!(time_of_sortable(sortable_time(at)), at);
        }
        let key = deactivated_key(instants[3], "flow-1");
        assert_eq!(flow_of_deactivated_key(&key), Some("flow-1"));
    }

    #[test]
    fn created_keys_sort_by_time_then_id() {
        let keys = [
            created_key(i64::MIN, "z"),
            created_key(-5, "a"),
            created_key(7, "a"),
            created_key(7, "a1"),
            created_key(7, "b"),
            created_key(8, "a"),
        ];
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(flow_of_created_key(&keys[3]), Some("a1"));
        assert_eq!(
            created_key(argyll_store::nanos_of(Timestamp::ZERO), "z"),
            keys[0],
            "the unset time sorts first"
        );
    }
}
