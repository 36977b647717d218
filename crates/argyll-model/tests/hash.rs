//! Memoization hashes (`engine.md` §1.5, §5.16).

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argyll_model::{
    Args, AttributeSpec, AttributeType, FlowConfig, HttpConfig, Step, StepType, args_hash,
    canonical_json, memo_key,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn args(value: Value) -> Args {
    match value {
        Value::Object(map) => map,
        _ => Args::new(),
    }
}

fn http_step() -> Step {
    Step::sync("step-a", "http://svc/a")
        .with_attribute("in", AttributeSpec::required(AttributeType::String))
        .with_attribute("out", AttributeSpec::output(AttributeType::String))
}

#[test]
fn empty_args_hash_the_empty_string() {
    assert_eq!(
        args_hash(&Args::new()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn args_hash_ignores_key_order_and_number_spelling() {
    let text_a = r#"{"b": {"y": 1, "x": [1, 2.0]}, "a": "s"}"#;
    let text_b = r#"{"a": "s", "b": {"x": [1.0, 2], "y": 1.0}}"#;
    let a: Args = serde_json::from_str(text_a).expect("json");
    let b: Args = serde_json::from_str(text_b).expect("json");
    assert_eq!(args_hash(&a), args_hash(&b));
    assert_ne!(
        args_hash(&a),
        args_hash(&args(json!({"a": "s", "b": {"x": [1, 3], "y": 1}})))
    );
    assert_ne!(
        args_hash(&args(json!({"a": 1}))),
        args_hash(&args(json!({"a": "1"})))
    );
}

#[test]
fn step_hash_ignores_identity_and_labels_but_not_behaviour() {
    let base = http_step();
    let mut renamed = base.clone();
    renamed.id = "another-id".into();
    renamed.name = "Another".into();
    renamed.labels.insert("team".into(), "x".into());
    assert_eq!(base.hash_key(), renamed.hash_key());
    assert_ne!(base, renamed, "equality still sees id, name and labels");

    let mut moved = base.clone();
    moved.http = Some(HttpConfig {
        endpoint: "http://svc/b".into(),
        ..HttpConfig::default()
    });
    assert_ne!(base.hash_key(), moved.hash_key());

    let mut memo = base.clone();
    memo.memoizable = true;
    assert_ne!(base.hash_key(), memo.hash_key());

    let retyped = base
        .clone()
        .with_attribute("in", AttributeSpec::required(AttributeType::Any));
    assert_ne!(base.hash_key(), retyped.hash_key());
}

#[test]
fn flow_maps_hash_independently_of_insertion_order() {
    let mut first = Step::new("f", "F", StepType::Flow);
    let mut config = FlowConfig {
        goals: vec!["g".into()],
        ..FlowConfig::default()
    };
    config.input_map.insert("b".into(), "y".into());
    config.input_map.insert("a".into(), "x".into());
    first.flow = Some(config);
    let mut second = Step::new("f", "F", StepType::Flow);
    let mut config = FlowConfig {
        goals: vec!["g".into()],
        ..FlowConfig::default()
    };
    config.input_map.insert("a".into(), "x".into());
    config.input_map.insert("b".into(), "y".into());
    second.flow = Some(config);
    assert_eq!(first.hash_key(), second.hash_key());
}

#[test]
fn memo_key_joins_both_hashes() {
    let step = http_step();
    let inputs = args(json!({"in": "v"}));
    assert_eq!(
        memo_key(&step, &inputs),
        format!("{}:{}", step.hash_key(), args_hash(&inputs))
    );
    assert_eq!(step.hash_key().len(), 64);
}

#[test]
fn canonical_json_sorts_keys_at_every_depth() {
    let value: Value =
        serde_json::from_str(r#"{"b":[{"d":1.0,"c":null}],"a":true,"big":1e300,"f":0.5}"#)
            .expect("json");
    assert_eq!(
        canonical_json(&value),
        r#"{"a":true,"b":[{"c":null,"d":1}],"big":1e+300,"f":0.5}"#
    );
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z]{0,6}".prop_map(Value::String),
    ]
}

proptest! {
    /// Guards against `serde_json/preserve_order` being switched on by feature unification:
    /// the hash must not depend on the order in which inputs were inserted.
    #[test]
    fn args_hash_is_independent_of_insertion_order(
        pairs in proptest::collection::btree_map("[a-e]{1,3}", json_leaf(), 0..8)
    ) {
        let forward: Args = pairs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let backward: Args = pairs.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(args_hash(&forward), args_hash(&backward));
        let nested_forward = args(json!({"outer": Value::Object(forward)}));
        let nested_backward = args(json!({"outer": Value::Object(backward)}));
        prop_assert_eq!(args_hash(&nested_forward), args_hash(&nested_backward));
    }
}
