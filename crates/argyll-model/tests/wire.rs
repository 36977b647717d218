//! Wire compatibility: the original's JSON (recorded in `quickstart-original.md` and described in
//! `api.md` §1.2) decodes, and re-encodes to the same document.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argyll_model::{
    EngineState, FlowDigest, FlowState, FlowStatus, HealthStatus, Step, StepStatus, StepType,
    Timestamp, WorkStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The original writes some empty lists as `null`; we write `[]`, which its clients accept.
fn null_lists_as_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if item.is_null() && matches!(key.as_str(), "required" | "providers" | "consumers")
                {
                    *item = json!([]);
                } else {
                    null_lists_as_empty(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(null_lists_as_empty),
        _ => {}
    }
}

fn round_trip<T: Serialize + DeserializeOwned>(original: &str) -> (T, Value) {
    let decoded: T = serde_json::from_str(original).expect("original JSON decodes");
    let encoded = serde_json::to_value(&decoded).expect("encodes");
    let mut expected: Value = serde_json::from_str(original).expect("valid JSON");
    null_lists_as_empty(&mut expected);
    assert_eq!(encoded, expected, "re-encoding differs from the original");
    (decoded, encoded)
}

const QUICKSTART_STEP: &str = r#"{"script":{"language":"ale","script":"{:greeting name}"},"id":"hello-script","name":"Hello Script","type":"script","attributes":{"greeting":{"role":"output","type":"string"},"name":{"role":"required","type":"string"}}}"#;

const QUICKSTART_FLOW: &str = r#"{"created_at":"2026-11-26T19:39:39.515404148Z","completed_at":"2026-11-26T19:39:39.516184563Z","last_updated":"2026-11-26T19:39:39.516184563Z","plan":{"goals":["hello-script"],"required":null,"steps":{"hello-script":{"script":{"language":"ale","script":"{:greeting name}"},"id":"hello-script","name":"Hello Script","type":"script","attributes":{"greeting":{"role":"output","type":"string"},"name":{"role":"required","type":"string"}}}},"attributes":{"greeting":{"providers":["hello-script"],"consumers":null},"name":{"providers":null,"consumers":["hello-script"]}},"excluded":{}},"attributes":{"greeting":{"value":"Argyll","step":"hello-script"},"name":{"value":"Argyll"}},"executions":{"hello-script":{"started_at":"2026-11-26T19:39:39.515464931Z","completed_at":"2026-11-26T19:39:39.51617096Z","inputs":{"name":"Argyll"},"outputs":{"greeting":"Argyll"},"status":"completed","work_items":{"023c70e0-3e5c-489e-a340-b3e283a7b8d5":{"status":"succeeded","started_at":"2026-11-26T19:39:39.515513603Z","completed_at":"2026-11-26T19:39:39.516100088Z","inputs":{"name":"Argyll"},"outputs":{"greeting":"Argyll"},"next_retry_at":"0001-01-01T00:00:00Z"}}}},"id":"hello-flow","status":"completed"}"#;

const QUICKSTART_DIGEST: &str = r#"{"status":"completed","created_at":"2026-11-26T19:39:39.51575267Z","completed_at":"2026-11-26T19:39:39.517078778Z"}"#;

#[test]
fn quickstart_step_round_trips() {
    let (step, _) = round_trip::<Step>(QUICKSTART_STEP);
    assert_eq!(step.step_type, StepType::Script);
    assert_eq!(step.required_inputs().collect::<Vec<_>>(), ["name"]);
    assert_eq!(step.outputs().collect::<Vec<_>>(), ["greeting"]);
    assert_eq!(step.validate(), Ok(()));
}

#[test]
fn quickstart_flow_state_round_trips() {
    let (flow, _) = round_trip::<FlowState>(QUICKSTART_FLOW);
    assert_eq!(flow.status, FlowStatus::Completed);
    assert_eq!(flow.attribute("greeting"), Some(&json!("Argyll")));
    assert_eq!(
        flow.attributes["name"].step, None,
        "init values have no provenance"
    );
    let execution = &flow.executions["hello-script"];
    assert_eq!(execution.status, StepStatus::Completed);
    let item = execution.work_items.values().next().expect("one work item");
    assert_eq!(item.status, WorkStatus::Succeeded);
    assert!(item.next_retry_at.is_zero());
    assert_eq!(flow.plan.attributes.providers("greeting"), ["hello-script"]);
    assert!(flow.plan.attributes.providers("name").is_empty());
}

#[test]
fn quickstart_digest_round_trips() {
    let (digest, _) = round_trip::<FlowDigest>(QUICKSTART_DIGEST);
    assert_eq!(digest.status, FlowStatus::Completed);
}

#[test]
fn every_step_field_round_trips_with_the_original_omission_rules() {
    let full = json!({
        "id": "order-creator", "name": "Order Creator", "type": "flow",
        "attributes": {
            "items": {"role": "required", "type": "array", "for_each": true},
            "quantity": {"role": "optional", "type": "number", "default": "1"},
            "rate": {"role": "const", "type": "number", "default": "0.08"},
            "order": {"role": "output", "type": ""}
        },
        "labels": {"domain": "orders"},
        "predicate": {"language": "lua", "script": "return quantity > 0"},
        "flow": {"goals": ["child"], "input_map": {"items": "child_items"}, "output_map": {"child_order": "order"}},
        "work_config": {"max_retries": 3, "backoff_ms": 100, "max_backoff_ms": 5000,
                        "backoff_type": "exponential", "parallelism": 4},
        "memoizable": true
    });
    let step: Step = serde_json::from_value(full.clone()).expect("decodes");
    assert_eq!(serde_json::to_value(&step).expect("encodes"), full);

    let http = json!({"id": "s", "name": "S", "type": "sync", "attributes": {},
                      "http": {"endpoint": "http://h/run", "health_check": "http://h/health", "timeout": 2500}});
    let step: Step = serde_json::from_value(http.clone()).expect("decodes");
    assert_eq!(serde_json::to_value(&step).expect("encodes"), http);

    // Zero values are omitted, except `attributes`, `type` of an attribute and `http.timeout`.
    let minimal: Step = serde_json::from_value(json!({"id": "s", "name": "S", "type": "async",
        "attributes": {"x": {"role": "output"}}, "http": {"endpoint": "e"},
        "labels": {}, "memoizable": false, "work_config": {}}))
    .expect("decodes");
    assert_eq!(
        serde_json::to_value(&minimal).expect("encodes"),
        json!({"id": "s", "name": "S", "type": "async", "attributes": {"x": {"role": "output", "type": ""}},
               "http": {"endpoint": "e", "timeout": 0}, "work_config": {}})
    );
}

#[test]
fn nulls_decode_as_zero_values_like_go() {
    let step: Step = serde_json::from_value(json!({"id": "s", "name": null, "type": "sync",
        "attributes": null, "labels": null, "memoizable": null,
        "http": {"endpoint": "e", "timeout": null, "health_check": null},
        "work_config": {"max_retries": null, "backoff_type": null}}))
    .expect("decodes");
    assert!(step.name.is_empty() && step.attributes.is_empty() && step.labels.is_empty());
    assert_eq!(step.http.as_ref().map(|h| h.timeout), Some(0));
    let spec: argyll_model::AttributeSpec =
        serde_json::from_value(json!({"role": "output", "type": null})).expect("decodes");
    assert_eq!(spec.attr_type, argyll_model::AttributeType::Untyped);
}

#[test]
fn engine_state_round_trips() {
    let original = json!({
        "last_updated": "2026-11-26T19:39:39.5Z",
        "steps": {"a": {"id": "a", "name": "A", "type": "sync", "attributes": {"x": {"role": "output", "type": "string"}},
                        "http": {"endpoint": "http://a", "timeout": 0}}},
        "health": {"a": {"status": "unhealthy", "error": "HTTP 503 Service Unavailable"}, "gone": {"status": "unknown"}},
        "active": {"f1": {"started_at": "2026-11-26T19:39:39Z", "last_active": "2026-11-26T19:39:39Z"},
                   "f1:s:t": {"parent_flow_id": "f1", "started_at": "2026-11-26T19:39:40Z", "last_active": "2026-11-26T19:39:40Z"}},
        "deactivated": [{"flow_id": "f0", "deactivated_at": "2026-11-26T19:39:38Z"}],
        "archiving": {"old": "2026-11-26T19:00:00Z"},
        "flow_digests": {"f0": {"status": "failed", "created_at": "2026-11-26T19:39:37Z",
                                "completed_at": "2026-11-26T19:39:38Z", "error": "step a failed: boom"},
                         "f1": {"status": "active", "created_at": "2026-11-26T19:39:39Z", "completed_at": "0001-01-01T00:00:00Z"}},
        "attributes": {"x": {"providers": ["a"], "consumers": []}}
    });
    let (state, _) = round_trip::<EngineState>(&original.to_string());
    assert_eq!(state.health["a"].status, HealthStatus::Unhealthy);
    assert_eq!(state.active["f1:s:t"].parent_flow_id, "f1");
    assert!(state.flow_digests["f1"].completed_at.is_zero());
    assert_eq!(
        state.archiving["old"],
        Timestamp::parse("2026-11-26T19:00:00Z").expect("parses")
    );
}

#[test]
fn work_items_keep_their_order() {
    let tokens = ["z-token", "a-token", "m-token"];
    let items: serde_json::Map<String, Value> = tokens
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!({"status": "pending", "inputs": {}, "next_retry_at": "0001-01-01T00:00:00Z"}),
            )
        })
        .collect();
    // serde_json's Map sorts keys, so build the text by hand to keep the order.
    let body = tokens
        .iter()
        .map(|t| format!("\"{t}\":{}", items[*t]))
        .collect::<Vec<_>>()
        .join(",");
    let text = format!(r#"{{"status":"active","inputs":{{}},"work_items":{{{body}}}}}"#);
    let execution: argyll_model::ExecutionState = serde_json::from_str(&text).expect("decodes");
    assert_eq!(execution.work_items.keys().collect::<Vec<_>>(), tokens);
    let encoded = serde_json::to_string(&execution).expect("encodes");
    let positions: Vec<usize> = tokens.iter().filter_map(|t| encoded.find(t)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "encoded in creation order: {encoded}"
    );
}

#[test]
fn reported_work_transitions_follow_the_table() {
    use WorkStatus::*;
    let all = [Pending, Active, Succeeded, Failed, NotCompleted];
    let allowed = [
        (Pending, Active),
        (Active, Succeeded),
        (Active, Failed),
        (Active, NotCompleted),
        (NotCompleted, Active),
        (NotCompleted, Succeeded),
        (NotCompleted, Failed),
    ];
    for from in all {
        for to in all {
            assert_eq!(
                from.allows_reported_transition(to),
                allowed.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
    let error = Succeeded
        .check_reported_transition(Succeeded)
        .expect_err("terminal");
    assert_eq!(
        error.to_string(),
        "invalid work state transition: succeeded -> succeeded"
    );
    assert_eq!(
        Failed
            .check_reported_transition(Failed)
            .expect_err("terminal")
            .to_string(),
        "invalid work state transition: failed -> failed"
    );
}

#[test]
fn equality_for_idempotent_registration() {
    let registered: Step = serde_json::from_str(QUICKSTART_STEP).expect("decodes");
    // The same definition sent again, with fields in another order, explicit empty labels and
    // a null memoizable flag, is the same step.
    let again: Step = serde_json::from_value(json!({
        "type": "script", "name": "Hello Script", "id": "hello-script", "labels": {}, "memoizable": null,
        "script": {"script": "{:greeting name}", "language": "ale"},
        "attributes": {"name": {"type": "string", "role": "required"}, "greeting": {"role": "output", "type": "string"}}
    }))
    .expect("decodes");
    assert_eq!(again, registered);
    let mut relabelled = registered.clone();
    relabelled.labels.insert("team".into(), "x".into());
    assert_ne!(relabelled, registered, "labels take part in equality");
    let mut untyped = registered.clone();
    untyped
        .attributes
        .get_mut("name")
        .expect("attribute")
        .attr_type = argyll_model::AttributeType::Untyped;
    assert_ne!(
        untyped, registered,
        "\"\" and \"string\" are different types"
    );
    let mut with_predicate = registered.clone();
    with_predicate.predicate = Some(argyll_model::ScriptConfig::new(
        argyll_model::ScriptLanguage::Ale,
        "true",
    ));
    assert_ne!(with_predicate, registered);
}
