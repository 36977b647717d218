//! Decoding and validation over arbitrary input never panic, and valid steps round-trip (proptest).

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argyll_model::{
    AttributeRole, AttributeSpec, AttributeType, BackoffType, FlowConfig, HttpConfig, ScriptConfig,
    ScriptLanguage, Step, StepDocument, StepType, WorkConfig, sanitize_flow_id,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![
            Just("sync"),
            Just("script"),
            Just("flow"),
            Just("required"),
            Just("output"),
            Just("ale"),
            Just("")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("name".to_owned()),
                    Just("type".to_owned()),
                    Just("attributes".to_owned()),
                    Just("http".to_owned()),
                    Just("script".to_owned()),
                    Just("flow".to_owned()),
                    Just("work_config".to_owned()),
                    Just("role".to_owned()),
                    Just("default".to_owned()),
                    Just("for_each".to_owned()),
                    Just("goals".to_owned()),
                    "[a-z]{1,4}",
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn attribute_spec() -> impl Strategy<Value = AttributeSpec> {
    let role = prop_oneof![
        Just(AttributeRole::Required),
        Just(AttributeRole::Optional),
        Just(AttributeRole::Const),
        Just(AttributeRole::Output)
    ];
    let attr_type = prop_oneof![
        Just(AttributeType::Untyped),
        Just(AttributeType::String),
        Just(AttributeType::Number),
        Just(AttributeType::Array),
        Just(AttributeType::Any)
    ];
    (
        role,
        attr_type,
        prop_oneof![
            Just(String::new()),
            Just("1".to_owned()),
            Just("\"x\"".to_owned())
        ],
        any::<bool>(),
    )
        .prop_map(|(role, attr_type, default, for_each)| AttributeSpec {
            role,
            attr_type,
            default,
            for_each,
        })
}

fn step() -> impl Strategy<Value = Step> {
    (
        "[a-z][a-z0-9-]{0,8}",
        prop_oneof![
            Just(StepType::Sync),
            Just(StepType::Async),
            Just(StepType::Script),
            Just(StepType::Flow)
        ],
        proptest::collection::btree_map("[a-z]{1,5}", attribute_spec(), 0..5),
        proptest::collection::btree_map("[a-z]{1,3}", "[a-z]{0,3}", 0..2),
        any::<bool>(),
        proptest::option::of((0i64..5, 0i64..500, 0i64..5000, 0i64..4)),
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(id, step_type, attributes, labels, memoizable, work, (predicate, health))| {
                let mut step = Step::new(id.clone(), format!("Step {id}"), step_type.clone());
                step.attributes = attributes;
                step.labels = labels;
                step.memoizable = memoizable;
                match step_type {
                    StepType::Sync | StepType::Async => {
                        step.http = Some(HttpConfig {
                            endpoint: format!("http://svc/{id}"),
                            health_check: if health {
                                "http://svc/health".into()
                            } else {
                                String::new()
                            },
                            timeout: 1500,
                        });
                    }
                    StepType::Script => {
                        step.script = Some(ScriptConfig::new(ScriptLanguage::Lua, "return {}"))
                    }
                    _ => {
                        step.flow = Some(FlowConfig {
                            goals: vec!["child".into()],
                            ..FlowConfig::default()
                        })
                    }
                }
                if predicate {
                    step.predicate = Some(ScriptConfig::new(ScriptLanguage::Ale, "true"));
                }
                step.work_config = work.map(
                    |(max_retries, backoff_ms, max_backoff_ms, parallelism)| WorkConfig {
                        max_retries,
                        backoff_ms,
                        max_backoff_ms,
                        backoff_type: BackoffType::Linear,
                        parallelism,
                    },
                );
                step
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_json_never_panics_decoding_or_validation(value in json_value()) {
        if let Ok(document) = serde_json::from_value::<StepDocument>(value.clone()) {
            let _ = document.validate();
        }
        if let Ok(step) = serde_json::from_value::<Step>(value) {
            let _ = step.validate();
            let _ = step.hash_key();
        }
    }

    #[test]
    fn steps_round_trip_through_json(step in step()) {
        let text = serde_json::to_string(&step).expect("encodes");
        let back: Step = serde_json::from_str(&text).expect("decodes");
        prop_assert_eq!(&back, &step);
        prop_assert_eq!(back.hash_key(), step.hash_key());
        let document: StepDocument = serde_json::from_str(&text).expect("decodes as a document");
        prop_assert_eq!(document.validate().ok(), step.validate().ok().map(|()| step.clone()));
    }

    #[test]
    fn sanitised_flow_ids_are_stable_and_clean(raw in ".{0,24}") {
        if let Ok(id) = sanitize_flow_id(&raw) {
            prop_assert!(!id.is_empty() && !id.starts_with('-') && !id.ends_with('-'));
            prop_assert!(id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.+-".contains(c)));
            prop_assert_eq!(sanitize_flow_id(&id), Ok(id.clone()), "sanitising is idempotent");
        }
    }
}
