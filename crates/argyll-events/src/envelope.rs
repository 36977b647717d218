//! Aggregate ids and event envelopes as clients see them (`engine.md` §3.1, `api.md` §4.4).

use std::fmt;

use argyll_model::{FlowId, Timestamp};
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::catalog::{EngineEvent, EventKind, FlowEvent, PartsError};

/// The aggregate an event belongs to: the engine singleton or one flow.
///
/// On the wire it is a list of parts: `["engine"]` or `["flow", "<flow id>"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateId {
    /// The engine aggregate (catalog, health, flow index).
    Engine,
    /// One flow.
    Flow(FlowId),
}

impl AggregateId {
    /// The wire parts.
    pub fn parts(&self) -> Vec<&str> {
        match self {
            AggregateId::Engine => vec!["engine"],
            AggregateId::Flow(id) => vec!["flow", id],
        }
    }

    /// Parses wire parts; anything but `["engine"]` or `["flow", id]` (non-empty id) is `None`.
    pub fn from_parts<S: AsRef<str>>(parts: &[S]) -> Option<Self> {
        match parts {
            [kind] if kind.as_ref() == "engine" => Some(AggregateId::Engine),
            [kind, id] if kind.as_ref() == "flow" && !id.as_ref().is_empty() => {
                Some(AggregateId::Flow(id.as_ref().to_owned()))
            }
            _ => None,
        }
    }
}

impl fmt::Display for AggregateId {
    /// The parts joined by `:` (the original's store key form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateId::Engine => f.write_str("engine"),
            AggregateId::Flow(id) => write!(f, "flow:{id}"),
        }
    }
}

impl Serialize for AggregateId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.parts().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AggregateId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let parts = Vec::<String>::deserialize(deserializer)?;
        AggregateId::from_parts(&parts)
            .ok_or_else(|| D::Error::custom(format!("invalid aggregate id: {parts:?}")))
    }
}

/// An event of either aggregate kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An engine-aggregate event, boxed: engine events (a registration carries a whole step)
    /// are rare and large, flow events are many and small, and every event is as large as the
    /// largest variant.
    Engine(Box<EngineEvent>),
    /// A flow-aggregate event.
    Flow(FlowEvent),
}

impl Event {
    /// The event's type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Engine(event) => event.event_type(),
            Event::Flow(event) => event.event_type(),
        }
    }
}

/// An event's payload alone, serialised in place (no intermediate JSON text).
pub(crate) struct DataOf<'a, E>(pub(crate) &'a E);

impl<E: EventKind> Serialize for DataOf<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_data(serializer)
    }
}

impl Serialize for DataOf<'_, Event> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Event::Engine(event) => event.serialize_data(serializer),
            Event::Flow(event) => event.serialize_data(serializer),
        }
    }
}

impl From<EngineEvent> for Event {
    fn from(event: EngineEvent) -> Self {
        Event::Engine(Box::new(event))
    }
}

impl From<FlowEvent> for Event {
    fn from(event: FlowEvent) -> Self {
        Event::Flow(event)
    }
}

/// A committed event with its position: what the event feed and WebSocket clients receive.
///
/// JSON: `{"timestamp","sequence","type","aggregate_id","data"}`; `sequence` counts from 0 per
/// aggregate without gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    /// The aggregate.
    pub aggregate_id: AggregateId,
    /// Position within the aggregate (0-based, dense).
    pub sequence: u64,
    /// When the event was raised.
    pub timestamp: Timestamp,
    /// The event.
    pub event: Event,
}

impl Serialize for EventEnvelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        map.serialize_entry("sequence", &self.sequence)?;
        map.serialize_entry("type", self.event.event_type())?;
        map.serialize_entry("aggregate_id", &self.aggregate_id)?;
        map.serialize_entry("data", &DataOf(&self.event))?;
        map.end()
    }
}

#[derive(Deserialize)]
struct RawEnvelope {
    timestamp: Timestamp,
    sequence: u64,
    #[serde(rename = "type")]
    event_type: String,
    aggregate_id: AggregateId,
    data: Box<RawValue>,
}

impl<'de> Deserialize<'de> for EventEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawEnvelope::deserialize(deserializer)?;
        let event = decode_event(&raw.aggregate_id, &raw.event_type, raw.data.get())
            .map_err(D::Error::custom)?;
        Ok(EventEnvelope {
            aggregate_id: raw.aggregate_id,
            sequence: raw.sequence,
            timestamp: raw.timestamp,
            event,
        })
    }
}

/// Rebuilds an event of the given aggregate from its type name and payload JSON.
pub fn decode_event(
    aggregate_id: &AggregateId,
    event_type: &str,
    data: &str,
) -> Result<Event, PartsError> {
    match aggregate_id {
        AggregateId::Engine => EngineEvent::from_parts(event_type, data).map(Event::from),
        AggregateId::Flow(_) => FlowEvent::from_parts(event_type, data).map(Event::Flow),
    }
}
