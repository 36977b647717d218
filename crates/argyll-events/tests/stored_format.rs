//! The stored record and the envelope: shapes, versions and decoding errors.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argyll_events::{
    AggregateId, EngineEvent, Event, EventEnvelope, EventKind, FlowEvent, FlowFailed, PartsError,
    STORED_EVENT_FORMAT, StepHealthChanged, StoredEventError, WorkSucceeded, decode_stored,
    encode_stored,
};
use argyll_model::{Args, HealthStatus, Timestamp};
use serde_json::{Value, json};

fn at() -> Timestamp {
    Timestamp::parse("2026-11-26T19:39:39.5Z").expect("timestamp")
}

#[test]
fn stored_records_carry_version_timestamp_type_and_data_in_that_order() {
    let event = FlowEvent::from(FlowFailed {
        flow_id: "f".into(),
        error: "step a failed: boom".into(),
    });
    let text = encode_stored(&event, at()).expect("encodes");
    assert_eq!(
        text,
        r#"{"v":1,"timestamp":"2026-11-26T19:39:39.5Z","type":"flow_failed","data":{"flow_id":"f","error":"step a failed: boom"}}"#
    );
    assert_eq!(STORED_EVENT_FORMAT, 1);
    let (when, back): (Timestamp, FlowEvent) = decode_stored(&text).expect("decodes");
    assert_eq!((when, back), (at(), event));
}

#[test]
fn original_records_without_a_version_decode() {
    let text = r#"{"timestamp":"2026-11-26T19:39:39.516100088Z","type":"work_succeeded","data":{"flow_id":"f","step_id":"s","token":"t","outputs":null}}"#;
    let (_, event): (Timestamp, FlowEvent) = decode_stored(text).expect("decodes");
    assert_eq!(
        event,
        FlowEvent::WorkSucceeded(WorkSucceeded {
            flow_id: "f".into(),
            step_id: "s".into(),
            token: "t".into(),
            outputs: Args::new()
        })
    );
}

#[test]
fn newer_formats_unknown_types_and_garbage_are_errors() {
    let newer = r#"{"v":2,"timestamp":"2026-11-26T19:39:39Z","type":"flow_failed","data":{}}"#;
    assert_eq!(
        decode_stored::<FlowEvent>(newer),
        Err(StoredEventError::UnsupportedFormat {
            found: 2,
            supported: 1
        })
    );
    let unknown = r#"{"v":1,"timestamp":"2026-11-26T19:39:39Z","type":"flow_exploded","data":{}}"#;
    assert_eq!(
        decode_stored::<FlowEvent>(unknown),
        Err(StoredEventError::Event(PartsError::UnknownType(
            "flow_exploded".into()
        )))
    );
    let engine_type_in_flow_log =
        r#"{"v":1,"timestamp":"2026-11-26T19:39:39Z","type":"step_registered","data":{}}"#;
    assert!(matches!(
        decode_stored::<FlowEvent>(engine_type_in_flow_log),
        Err(StoredEventError::Event(_))
    ));
    let bad_payload =
        r#"{"v":1,"timestamp":"2026-11-26T19:39:39Z","type":"flow_failed","data":{"flow_id":3}}"#;
    assert!(matches!(
        decode_stored::<FlowEvent>(bad_payload),
        Err(StoredEventError::Event(PartsError::Payload { .. }))
    ));
    for garbage in [
        "",
        "null",
        "[]",
        "{",
        r#"{"type":"flow_failed"}"#,
        r#"{"v":1,"timestamp":"soon","type":"x","data":{}}"#,
    ] {
        assert!(
            matches!(
                decode_stored::<FlowEvent>(garbage),
                Err(StoredEventError::Malformed(_))
            ),
            "{garbage:?}"
        );
    }
}

#[test]
fn envelopes_have_the_websocket_shape_and_round_trip() {
    let envelope = EventEnvelope {
        aggregate_id: AggregateId::Engine,
        sequence: 7,
        timestamp: at(),
        event: Event::from(EngineEvent::from(StepHealthChanged {
            step_id: "s".into(),
            status: HealthStatus::Unhealthy,
            error: "HTTP 500 Internal Server Error".into(),
        })),
    };
    let encoded = serde_json::to_value(&envelope).expect("encodes");
    assert_eq!(
        encoded,
        json!({"timestamp": "2026-11-26T19:39:39.5Z", "sequence": 7, "type": "step_health_changed",
               "aggregate_id": ["engine"],
               "data": {"step_id": "s", "status": "unhealthy", "error": "HTTP 500 Internal Server Error"}})
    );
    let back: EventEnvelope = serde_json::from_value(encoded).expect("decodes");
    assert_eq!(back, envelope);

    let flow_envelope = EventEnvelope {
        aggregate_id: AggregateId::Flow("f".into()),
        sequence: 0,
        timestamp: at(),
        event: Event::Flow(FlowEvent::from(FlowFailed {
            flow_id: "f".into(),
            error: "e".into(),
        })),
    };
    let text = serde_json::to_string(&flow_envelope).expect("encodes");
    assert_eq!(
        serde_json::from_str::<EventEnvelope>(&text).expect("decodes"),
        flow_envelope
    );
}

#[test]
fn aggregate_ids_parse_strictly() {
    assert_eq!(
        AggregateId::from_parts(&["engine"]),
        Some(AggregateId::Engine)
    );
    assert_eq!(
        AggregateId::from_parts(&["flow", "a:b:c"]),
        Some(AggregateId::Flow("a:b:c".into()))
    );
    assert_eq!(AggregateId::from_parts(&["flow"]), None);
    assert_eq!(AggregateId::from_parts(&["flow", ""]), None);
    assert_eq!(AggregateId::from_parts(&["engine", "x"]), None);
    assert_eq!(AggregateId::from_parts::<&str>(&[]), None);
    assert!(serde_json::from_value::<AggregateId>(json!(["step", "x"])).is_err());
    assert_eq!(AggregateId::Flow("f".into()).to_string(), "flow:f");
}

#[test]
fn catalogs_list_the_original_event_names() {
    assert_eq!(
        <EngineEvent as EventKind>::TYPES,
        [
            "step_registered",
            "step_unregistered",
            "step_updated",
            "step_health_changed",
            "flow_activated",
            "flow_deactivated",
            "flow_digest_updated",
            "flow_archiving",
            "flow_archived"
        ]
    );
    assert_eq!(
        <FlowEvent as EventKind>::TYPES,
        [
            "flow_started",
            "flow_completed",
            "flow_failed",
            "step_started",
            "step_completed",
            "step_failed",
            "step_skipped",
            "attribute_set",
            "work_started",
            "work_succeeded",
            "work_failed",
            "work_not_completed",
            "retry_scheduled"
        ]
    );
    let tagged = serde_json::to_value(FlowEvent::from(FlowFailed {
        flow_id: "f".into(),
        error: "e".into(),
    }))
    .expect("encodes");
    assert_eq!(
        tagged,
        json!({"type": "flow_failed", "data": {"flow_id": "f", "error": "e"}})
    );
    let _: Value = tagged;
}
