//! Every validation message of `engine.md` §1.2–§1.3, decoded from JSON as the API receives it.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argyll_model::{Step, StepDocument, StepValidationError};
use serde_json::{Value, json};

/// Decodes `body` like the server does and returns the validation message, or "ok".
fn verdict(body: Value) -> String {
    let document: StepDocument = serde_json::from_value(body).expect("decodes");
    match document.validate() {
        Ok(_) => "ok".to_owned(),
        Err(error) => error.to_string(),
    }
}

fn sync_step() -> Value {
    json!({"id": "s", "name": "S", "type": "sync", "http": {"endpoint": "http://h/x"}})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn with_attrs(attrs: Value) -> Value {
    with(sync_step(), "attributes", attrs)
}

fn with_work(config: Value) -> Value {
    with(sync_step(), "work_config", config)
}

#[test]
fn identity_and_type_rules() {
    assert_eq!(
        verdict(json!({"name": "n", "type": "sync"})),
        "step ID empty"
    );
    assert_eq!(
        verdict(json!({"id": "s", "type": "sync"})),
        "step name empty"
    );
    assert_eq!(
        verdict(json!({"id": "s", "name": "n"})),
        "invalid step type: "
    );
    assert_eq!(
        verdict(json!({"id": "s", "name": "n", "type": "bogus"})),
        "invalid step type: bogus"
    );
    assert_eq!(verdict(sync_step()), "ok");
}

#[test]
fn http_step_rules_in_order() {
    let bare = json!({"id": "s", "name": "n", "type": "async"});
    assert_eq!(verdict(bare.clone()), "http required");
    let http = with(bare, "http", json!({"endpoint": ""}));
    assert_eq!(
        verdict(with(http.clone(), "flow", json!({"goals": ["g"]}))),
        "flow not allowed for step type"
    );
    assert_eq!(
        verdict(with(
            http.clone(),
            "script",
            json!({"language": "ale", "script": "1"})
        )),
        "script not allowed for step type"
    );
    assert_eq!(verdict(http), "step endpoint empty");
}

#[test]
fn script_step_rules_in_order() {
    let bare = json!({"id": "s", "name": "n", "type": "script"});
    assert_eq!(verdict(bare.clone()), "script required");
    let scripted = with(bare, "script", json!({"language": "", "script": ""}));
    assert_eq!(
        verdict(with(scripted.clone(), "http", json!({"endpoint": "e"}))),
        "http not allowed for step type"
    );
    assert_eq!(
        verdict(with(scripted.clone(), "flow", json!({"goals": ["g"]}))),
        "flow not allowed for step type"
    );
    assert_eq!(verdict(scripted.clone()), "script language empty");
    assert_eq!(
        verdict(with(
            scripted.clone(),
            "script",
            json!({"language": "cobol", "script": "x"})
        )),
        "invalid script language: cobol"
    );
    assert_eq!(
        verdict(with(
            scripted.clone(),
            "script",
            json!({"language": "lua", "script": ""})
        )),
        "script empty"
    );
    assert_eq!(
        verdict(with(
            scripted,
            "script",
            json!({"language": "ale", "script": "1"})
        )),
        "ok"
    );
}

#[test]
fn flow_step_rules_in_order() {
    let bare = json!({"id": "s", "name": "n", "type": "flow",
        "attributes": {"in": {"role": "required"}, "opt": {"role": "optional"}, "out": {"role": "output"}}});
    assert_eq!(verdict(bare.clone()), "flow required");
    let flow = |config: Value| with(bare.clone(), "flow", config);
    assert_eq!(
        verdict(with(
            flow(json!({"goals": ["g"]})),
            "http",
            json!({"endpoint": "e"})
        )),
        "http not allowed for step type"
    );
    assert_eq!(
        verdict(with(
            flow(json!({"goals": ["g"]})),
            "script",
            json!({"language": "ale", "script": "1"})
        )),
        "script not allowed for step type"
    );
    assert_eq!(verdict(flow(json!({"goals": []}))), "flow goals required");
    assert_eq!(verdict(flow(json!({}))), "flow goals required");
    for bad_input in [
        json!({"": "x"}),
        json!({"in": ""}),
        json!({"out": "x"}),
        json!({"ghost": "x"}),
    ] {
        assert_eq!(
            verdict(flow(json!({"goals": ["g"], "input_map": bad_input}))),
            "flow input map invalid"
        );
    }
    for bad_output in [
        json!({"": "out"}),
        json!({"x": ""}),
        json!({"x": "in"}),
        json!({"x": "ghost"}),
    ] {
        assert_eq!(
            verdict(flow(json!({"goals": ["g"], "output_map": bad_output}))),
            "flow output map invalid"
        );
    }
    let valid = flow(
        json!({"goals": ["g"], "input_map": {"in": "child_in", "opt": "o"},
                            "output_map": {"child_out": "out"}}),
    );
    assert_eq!(verdict(valid), "ok");
}

#[test]
fn attribute_names_and_null_definitions() {
    assert_eq!(
        verdict(with_attrs(json!({"": {"role": "required"}}))),
        "argument name empty"
    );
    assert_eq!(
        verdict(with_attrs(json!({"": null}))),
        "argument name empty"
    );
    assert_eq!(
        verdict(with_attrs(json!({"x": null}))),
        "attribute has nil definition"
    );
    assert_eq!(
        verdict(with_attrs(Value::Null)),
        "ok",
        "null attributes become {{}}"
    );
}

#[test]
fn the_first_bad_attribute_by_name_is_reported() {
    let attrs = json!({
        "zeta": {"role": "nope"},
        "beta": {"role": "required", "type": "strange"},
        "alpha": {"role": "required"},
        "gamma": null,
    });
    assert_eq!(
        verdict(with_attrs(attrs.clone())),
        "invalid attribute type: strange for attribute \"beta\""
    );
    let mut without_beta = attrs;
    without_beta.as_object_mut().map(|map| map.remove("beta"));
    assert_eq!(
        verdict(with_attrs(without_beta)),
        "attribute has nil definition"
    );
}

#[test]
fn attribute_rules_in_order() {
    let cases = [
        (
            json!({"role": ""}),
            "invalid attribute role:  for attribute \"a\"",
        ),
        (
            json!({"role": "input"}),
            "invalid attribute role: input for attribute \"a\"",
        ),
        (
            json!({"role": "const"}),
            "default value required for const attribute: const for attribute \"a\"",
        ),
        (
            json!({"role": "required", "default": "1"}),
            "default value requires an optional attribute: required for attribute \"a\"",
        ),
        (
            json!({"role": "output", "default": "1"}),
            "default value requires an optional attribute: output for attribute \"a\"",
        ),
        (
            json!({"role": "required", "type": "string", "for_each": true}),
            "for_each processing requires an array attribute type: type string for attribute \"a\"",
        ),
        (
            json!({"role": "output", "type": "array", "for_each": true}),
            "for_each processing requires an input attribute type: \"a\"",
        ),
        (
            json!({"role": "required", "type": "text"}),
            "invalid attribute type: text for attribute \"a\"",
        ),
    ];
    for (spec, message) in cases {
        assert_eq!(
            verdict(with_attrs(json!({"a": spec}))),
            message,
            "spec {spec}"
        );
    }
}

#[test]
fn for_each_allowed_shapes() {
    for spec in [
        json!({"role": "required", "type": "array", "for_each": true}),
        json!({"role": "required", "type": "any", "for_each": true}),
        json!({"role": "optional", "for_each": true}),
        json!({"role": "const", "type": "array", "default": "[1,2]", "for_each": true}),
    ] {
        assert_eq!(verdict(with_attrs(json!({"a": spec}))), "ok", "spec {spec}");
    }
}

#[test]
fn typed_default_values() {
    let prefix = "invalid default value for type for attribute \"a\": ";
    let cases = [
        ("string", "fixed", Some("must be valid JSON")),
        ("string", "42", Some("must be a valid JSON string")),
        ("string", "\"fixed\"", None),
        ("number", "not-a-number", Some("must be valid JSON")),
        ("number", "\"7\"", Some("must be a valid number")),
        ("number", "4.5e3", None),
        ("boolean", "yes", Some("must be valid JSON")),
        ("boolean", "1", Some("must be \"true\" or \"false\"")),
        ("boolean", "false", None),
        ("object", "[1]", Some("must be valid JSON object")),
        ("object", "{\"key\": \"v\"}", None),
        ("array", "{}", Some("must be valid JSON array")),
        ("array", "[]", None),
        ("null", "nil", Some("must be valid JSON")),
        ("null", "0", Some("must be \"null\"")),
        ("null", "null", None),
        ("any", "not json", Some("must be valid JSON")),
        ("any", "{\"deep\": [1, {\"x\": null}]}", None),
        ("", "not json at all", None),
    ];
    for (attr_type, default, problem) in cases {
        let body =
            with_attrs(json!({"a": {"role": "optional", "type": attr_type, "default": default}}));
        let expected = problem.map_or("ok".to_owned(), |p| format!("{prefix}{p}"));
        assert_eq!(
            verdict(body),
            expected,
            "type {attr_type:?} default {default:?}"
        );
    }
}

#[test]
fn work_config_rules_in_order() {
    assert_eq!(
        verdict(with_work(
            json!({"backoff_ms": -5, "backoff_type": "fixed"})
        )),
        "backoff_ms cannot be negative"
    );
    assert_eq!(
        verdict(with_work(
            json!({"backoff_ms": 100, "max_backoff_ms": 50, "backoff_type": "fixed"})
        )),
        "max_backoff_ms must be >= backoff_ms"
    );
    assert_eq!(
        verdict(with_work(json!({"max_retries": 3}))),
        "invalid retry config"
    );
    assert_eq!(
        verdict(with_work(json!({"max_backoff_ms": 10}))),
        "invalid retry config"
    );
    assert_eq!(
        verdict(with_work(
            json!({"max_retries": 2, "backoff_ms": 10, "backoff_type": "random"})
        )),
        "invalid backoff type"
    );
    // Not checked by the original, and kept that way: negative retries mean unlimited,
    // parallelism ≤ 0 means 1, and a backoff type alone is not a retry config.
    assert_eq!(
        verdict(with_work(
            json!({"max_retries": -1, "backoff_ms": 10, "backoff_type": "linear"})
        )),
        "ok"
    );
    assert_eq!(verdict(with_work(json!({"parallelism": -3}))), "ok");
    assert_eq!(verdict(with_work(json!({"backoff_type": "bogus"}))), "ok");
    assert_eq!(
        verdict(with_work(
            json!({"max_retries": 3, "backoff_ms": 100, "max_backoff_ms": 0, "backoff_type": "exponential"})
        )),
        "ok",
        "max_backoff_ms 0 means no cap"
    );
}

#[test]
fn validation_precedence_is_type_config_then_attributes_then_work_config() {
    let body = json!({"id": "s", "name": "n", "type": "sync", "http": {"endpoint": "http://h"},
        "attributes": {"a": {"role": "bad"}}, "work_config": {"backoff_ms": -1}});
    assert_eq!(
        verdict(body.clone()),
        "invalid attribute role: bad for attribute \"a\""
    );
    assert_eq!(verdict(with(body, "http", Value::Null)), "http required");
}

#[test]
fn typed_steps_validate_without_a_document() {
    let step: Step =
        serde_json::from_value(with_attrs(json!({"x": {"role": "output"}}))).expect("decodes");
    assert_eq!(step.validate(), Ok(()));
    let mut broken = step;
    broken.name.clear();
    assert_eq!(broken.validate(), Err(StepValidationError::EmptyName));
}

#[test]
fn wrong_json_types_are_decode_errors() {
    assert!(serde_json::from_value::<StepDocument>(json!({"id": 7})).is_err());
    assert!(
        serde_json::from_value::<StepDocument>(json!({"work_config": {"max_retries": 1.5}}))
            .is_err()
    );
    assert!(serde_json::from_value::<StepDocument>(json!([1, 2])).is_err());
}

/// Issue 14, item 14: beyond the original's rules, `validate_within` bounds what the engine
/// could not honour — with a message naming the field and the limit.
fn bounded(body: Value) -> String {
    let document: StepDocument = serde_json::from_value(body).expect("decodes");
    let step = match document.validate() {
        Ok(step) => step,
        Err(error) => return error.to_string(),
    };
    match step.validate_within(&argyll_model::StepLimits::default()) {
        Ok(()) => "ok".to_owned(),
        Err(error) => error.to_string(),
    }
}

#[test]
fn ids_names_and_attribute_names_are_bounded_and_printable() {
    assert_eq!(bounded(sync_step()), "ok");
    assert_eq!(
        bounded(with(sync_step(), "id", json!("x".repeat(1 << 20)))),
        "step ID too long: 1048576 characters (the limit is 256, MAX_ID_LENGTH)"
    );
    assert_eq!(
        bounded(with(sync_step(), "id", json!("é".repeat(256)))),
        "ok"
    );
    assert_eq!(
        bounded(with(sync_step(), "id", json!("a\u{0}b"))),
        "step ID contains a control character (U+0000) at position 1"
    );
    assert_eq!(
        bounded(with(sync_step(), "name", json!("line\nbreak"))),
        "step name contains a control character (U+000A) at position 4"
    );
    assert_eq!(
        bounded(with_attrs(json!({"y".repeat(300): {"role": "output"}}))),
        "attribute name too long: 300 characters (the limit is 256, MAX_ID_LENGTH)"
    );
    assert_eq!(
        bounded(with_attrs(json!({"a\u{1b}": {"role": "output"}}))),
        "attribute name contains a control character (U+001B) at position 1"
    );
}

#[test]
fn numbers_are_within_the_ranges_the_engine_honours() {
    assert_eq!(
        bounded(with_work(json!({"parallelism": -100}))),
        "work_config.parallelism out of range: -100 (expected 0 to 100000)"
    );
    assert_eq!(
        bounded(with_work(json!({"parallelism": 1_000_000_000_000_i64}))),
        "work_config.parallelism out of range: 1000000000000 (expected 0 to 100000)"
    );
    assert_eq!(bounded(with_work(json!({"parallelism": 100}))), "ok");
    assert_eq!(
        bounded(with_work(
            json!({"max_retries": 1_000_000_000_000_000_000_i64, "backoff_type": "fixed"})
        )),
        "work_config.max_retries out of range: 1000000000000000000 (expected 0 to 1000000)"
    );
    // Negative max_retries keeps the original's meaning: unlimited.
    assert_eq!(
        bounded(with_work(
            json!({"max_retries": -1, "backoff_type": "fixed"})
        )),
        "ok"
    );
    assert_eq!(
        bounded(with_work(
            json!({"backoff_ms": 100_000_000_000_i64, "backoff_type": "fixed"})
        )),
        "work_config.backoff_ms out of range: 100000000000 (expected 0 to 86400000)"
    );
    let timeout = |ms: i64| {
        bounded(with(
            sync_step(),
            "http",
            json!({"endpoint": "http://h/x", "timeout": ms}),
        ))
    };
    assert_eq!(
        timeout(-1),
        "http.timeout out of range: -1 (expected 0 to 86400000)"
    );
    assert_eq!(timeout(0), "ok");
    assert_eq!(timeout(30_000), "ok");
}

#[test]
fn endpoints_are_absolute_http_urls() {
    let endpoint = |url: &str| bounded(with(sync_step(), "http", json!({"endpoint": url})));
    for good in [
        "http://h/x",
        "https://example.com:8443/a?b=c",
        "http://127.0.0.1:9/",
        "local://handler",
    ] {
        assert_eq!(endpoint(good), "ok", "{good}");
    }
    for bad in [
        "not a url",
        "/relative/path",
        "ftp://h/x",
        "http://",
        "mailto:a@b",
    ] {
        assert_eq!(
            endpoint(bad),
            format!("http.endpoint is not an absolute http(s) URL: {bad:?}"),
            "{bad}"
        );
    }
    assert_eq!(
        bounded(with(
            sync_step(),
            "http",
            json!({"endpoint": "http://h/x", "health_check": "health"})
        )),
        "http.health_check is not an absolute http(s) URL: \"health\""
    );
    // The original's own rule still comes first.
    assert_eq!(
        bounded(with(sync_step(), "http", json!({"endpoint": ""}))),
        "step endpoint empty"
    );
}
