//! The planner scenarios of `engine.md` §10.2 and the acceptance suite's plan preview.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;

use argyll_model::{Args, AttributeGraph, AttributeSpec, AttributeType, ExecutionPlan, Step};
use argyll_plan::{InitError, PlanError, plan, validate_init};
use serde_json::{Value, json};

#[derive(Default)]
struct Catalog {
    steps: BTreeMap<String, Step>,
    graph: AttributeGraph,
}

impl Catalog {
    /// Registers a step: `req`/`opt` inputs and `out` outputs, all untyped.
    fn step(&mut self, id: &str, req: &[&str], opt: &[&str], out: &[&str]) -> &mut Self {
        let mut step = Step::sync(id, format!("http://svc/{id}"));
        for name in req {
            step = step.with_attribute(*name, AttributeSpec::required(AttributeType::Untyped));
        }
        for name in opt {
            step =
                step.with_attribute(*name, AttributeSpec::optional(AttributeType::Untyped, None));
        }
        for name in out {
            step = step.with_attribute(*name, AttributeSpec::output(AttributeType::Untyped));
        }
        self.add(step)
    }

    fn add(&mut self, step: Step) -> &mut Self {
        self.graph.replace_step(&step);
        self.steps.insert(step.id.clone(), step);
        self
    }

    fn plan(&self, goals: &[&str], init: Value) -> Result<ExecutionPlan, PlanError> {
        let goals: Vec<String> = goals.iter().map(|g| (*g).to_owned()).collect();
        plan(&self.steps, &self.graph, &goals, &args(init))
    }

    fn ok(&self, goals: &[&str], init: Value) -> ExecutionPlan {
        self.plan(goals, init).expect("plan")
    }
}

fn args(value: Value) -> Args {
    match value {
        Value::Object(map) => map,
        _ => Args::new(),
    }
}

fn step_ids(plan: &ExecutionPlan) -> Vec<&str> {
    plan.steps.keys().map(String::as_str).collect()
}

#[test]
fn goals_must_be_given_and_registered() {
    let mut catalog = Catalog::default();
    catalog.step("known", &[], &[], &["x"]);
    assert_eq!(catalog.plan(&[], json!({})), Err(PlanError::NoGoals));
    assert_eq!(
        PlanError::NoGoals.to_string(),
        "at least one goal step is required"
    );
    let error = catalog
        .plan(&["ghost", "known", "phantom"], json!({}))
        .expect_err("unknown goals");
    assert_eq!(error.to_string(), "step not found: [ghost phantom]");
}

#[test]
fn single_provider_goal() {
    let mut catalog = Catalog::default();
    catalog.step("goal", &[], &[], &["result"]);
    let plan = catalog.ok(&["goal"], json!({}));
    assert_eq!(step_ids(&plan), ["goal"]);
    assert!(plan.required.is_empty());
    assert_eq!(plan.goals, ["goal"]);
}

#[test]
fn goal_with_required_input_in_init() {
    let mut catalog = Catalog::default();
    catalog.step("goal", &["input"], &[], &["result"]);
    let plan = catalog.ok(&["goal"], json!({"input": 1}));
    assert_eq!(step_ids(&plan), ["goal"]);
    assert!(plan.required.is_empty());
    assert!(plan.attributes.providers("input").is_empty());
    assert_eq!(plan.attributes.consumers("input"), ["goal"]);
}

#[test]
fn init_excludes_the_provider_it_makes_redundant() {
    let mut catalog = Catalog::default();
    catalog
        .step("provider", &["seed"], &[], &["data"])
        .step("goal", &["data"], &[], &["result"]);
    let plan = catalog.ok(&["goal"], json!({"data": "given"}));
    assert_eq!(step_ids(&plan), ["goal"]);
    assert_eq!(
        plan.excluded.satisfied.get("provider"),
        Some(&vec!["data".to_owned()])
    );
    assert!(plan.excluded.missing.is_empty());
}

#[test]
fn unprovided_required_inputs_become_required() {
    let mut catalog = Catalog::default();
    catalog.step("goal", &["input", "nonexistent"], &[], &["result"]);
    let plan = catalog.ok(&["goal"], json!({}));
    assert_eq!(step_ids(&plan), ["goal"]);
    assert_eq!(plan.required, ["input", "nonexistent"]);
}

#[test]
fn chain_is_planned_whole() {
    let mut catalog = Catalog::default();
    catalog
        .step("collector", &["processed"], &[], &["final"])
        .step("processor", &["resolved"], &[], &["processed"])
        .step("resolver", &[], &[], &["resolved"]);
    let plan = catalog.ok(&["collector"], json!({}));
    assert_eq!(step_ids(&plan), ["collector", "processor", "resolver"]);
    assert!(plan.required.is_empty());
    assert_eq!(plan.attributes.providers("resolved"), ["resolver"]);
    assert_eq!(plan.attributes.consumers("resolved"), ["processor"]);
}

#[test]
fn independent_goals_and_satisfied_goal() {
    let mut catalog = Catalog::default();
    catalog
        .step("a", &[], &[], &["x"])
        .step("b", &[], &[], &["y"]);
    assert_eq!(step_ids(&catalog.ok(&["a", "b"], json!({}))), ["a", "b"]);
    let empty = catalog.ok(&["a"], json!({"x": null}));
    assert!(
        empty.steps.is_empty(),
        "a goal whose outputs are in init is not run"
    );
    assert_eq!(empty.goals, ["a"]);
    assert_eq!(
        empty.excluded.satisfied.get("a"),
        Some(&vec!["x".to_owned()]),
        "the goal is reported as satisfied by init"
    );
}

#[test]
fn complex_graph() {
    let mut catalog = Catalog::default();
    catalog
        .step("resolver1", &[], &[], &["r1"])
        .step("resolver2", &[], &[], &["r2"])
        .step("processor1", &["r1", "r2"], &[], &["p1"])
        .step("processor2", &["p1"], &[], &["p2"])
        .step("unrelated", &["r1"], &[], &["u"]);
    let plan = catalog.ok(&["processor2"], json!({}));
    assert_eq!(
        step_ids(&plan),
        ["processor1", "processor2", "resolver1", "resolver2"]
    );
    assert!(
        plan.attributes.get("u").is_none(),
        "unrelated steps never appear"
    );
}

#[test]
fn optional_inputs_pull_in_their_providers() {
    let mut catalog = Catalog::default();
    catalog.step("provider", &[], &[], &["hint"]).step(
        "goal",
        &[],
        &["hint", "nobody"],
        &["result"],
    );
    let plan = catalog.ok(&["goal"], json!({}));
    assert_eq!(step_ids(&plan), ["goal", "provider"]);
    assert!(
        plan.required.is_empty(),
        "optional inputs are never required"
    );
    assert!(
        plan.attributes.get("nobody").is_none(),
        "an unprovided optional input has no edges"
    );

    let mut alone = Catalog::default();
    alone.step("goal", &[], &["hint"], &["result"]);
    assert_eq!(step_ids(&alone.ok(&["goal"], json!({}))), ["goal"]);
}

#[test]
fn providers_with_init() {
    let mut catalog = Catalog::default();
    catalog
        .step("p1", &["product_id"], &[], &["product_info"])
        .step("p2", &[], &[], &["product_info"])
        .step("consumer", &["product_info"], &[], &["done"]);
    let with_id = catalog.ok(&["consumer"], json!({"product_id": "x"}));
    assert_eq!(step_ids(&with_id), ["consumer", "p1", "p2"]);
    assert_eq!(with_id.attributes.providers("product_info"), ["p1", "p2"]);
    assert!(with_id.excluded.satisfied.is_empty() && with_id.excluded.missing.is_empty());
    let without = catalog.ok(&["consumer"], json!({}));
    assert_eq!(step_ids(&without), ["consumer", "p2"]);
    assert!(without.excluded.satisfied.is_empty() && without.excluded.missing.is_empty());
}

#[test]
fn mixed_required_and_optional_providers() {
    let mut catalog = Catalog::default();
    catalog
        .step("needed", &[], &[], &["a"])
        .step("nice", &[], &[], &["b"])
        .step("goal", &["a"], &["b"], &["result"]);
    let plan = catalog.ok(&["goal"], json!({}));
    assert_eq!(step_ids(&plan), ["goal", "needed", "nice"]);
    assert!(plan.required.is_empty());
}

#[test]
fn provider_blocked_by_missing_input_leaves_the_input_required() {
    let mut catalog = Catalog::default();
    catalog
        .step("p", &["seed"], &[], &["data"])
        .step("g", &["data", "other"], &[], &["res"]);
    // The acceptance suite's plan preview, all three cases.
    let given = catalog.ok(&["g"], json!({"data": "given"}));
    assert_eq!(step_ids(&given), ["g"]);
    assert_eq!(given.required, ["other"]);
    assert_eq!(
        given.excluded.satisfied.get("p"),
        Some(&vec!["data".to_owned()])
    );
    assert_eq!(given.attributes.providers("res"), ["g"]);
    let seeded = catalog.ok(&["g"], json!({"seed": 1}));
    assert_eq!(step_ids(&seeded), ["g", "p"]);
    assert_eq!(seeded.required, ["other"]);
    assert_eq!(seeded.attributes.providers("data"), ["p"]);
    assert_eq!(seeded.attributes.consumers("data"), ["g"]);
    let bare = catalog.ok(&["g"], json!({}));
    assert_eq!(bare.required, ["data", "other"]);
    assert_eq!(step_ids(&bare), ["g"]);
}

#[test]
fn cycles_in_a_hand_built_catalog_do_not_loop() {
    let mut catalog = Catalog::default();
    catalog
        .step("a", &["y"], &[], &["x"])
        .step("b", &["x"], &[], &["y"])
        .step("g", &["x"], &[], &["z"]);
    let plan = catalog.ok(&["g"], json!({}));
    assert_eq!(
        step_ids(&plan),
        ["g"],
        "an unsatisfiable cycle surfaces as a required input"
    );
    assert_eq!(plan.required, ["x"]);
    let seeded = catalog.ok(&["g"], json!({"y": 1}));
    assert_eq!(step_ids(&seeded), ["a", "g"]);
}

#[test]
fn goals_feeding_goals_are_both_planned() {
    let mut catalog = Catalog::default();
    catalog
        .step("first", &[], &[], &["x"])
        .step("second", &["x"], &[], &["y"]);
    let plan = catalog.ok(&["first", "second"], json!({}));
    assert_eq!(step_ids(&plan), ["first", "second"]);
    assert_eq!(plan.attributes.consumers("x"), ["second"]);
}

#[test]
fn plan_serialises_in_the_wire_shape() {
    let mut catalog = Catalog::default();
    catalog.step("g", &["in"], &[], &["out"]);
    let plan = catalog.ok(&["g"], json!({"in": 1}));
    let encoded = serde_json::to_value(&plan).expect("encodes");
    assert_eq!(encoded["goals"], json!(["g"]));
    assert_eq!(encoded["required"], json!([]));
    assert_eq!(encoded["excluded"], json!({}));
    assert_eq!(
        encoded["attributes"],
        json!({"in": {"providers": [], "consumers": ["g"]},
                                            "out": {"providers": ["g"], "consumers": []}})
    );
    assert_eq!(encoded["steps"]["g"]["id"], json!("g"));
}

// ---------------------------------------------------------------- init checks

fn typed_catalog() -> Catalog {
    let mut catalog = Catalog::default();
    catalog.add(
        Step::sync("g", "http://svc/g")
            .with_attribute("amount", AttributeSpec::required(AttributeType::Number))
            .with_attribute("who", AttributeSpec::required(AttributeType::String))
            .with_attribute("tags", AttributeSpec::optional(AttributeType::Array, None))
            .with_attribute(
                "anything",
                AttributeSpec::optional(AttributeType::Any, None),
            )
            .with_attribute(
                "rate",
                AttributeSpec::constant(AttributeType::Number, "0.5"),
            )
            .with_attribute("res", AttributeSpec::output(AttributeType::Object)),
    );
    catalog
}

#[test]
fn required_inputs_must_be_given() {
    let catalog = typed_catalog();
    let plan = catalog.ok(&["g"], json!({}));
    let error = validate_init(&plan, &args(json!({"who": "x"}))).expect_err("missing amount");
    assert_eq!(
        error,
        InitError::MissingRequired {
            missing: vec!["amount".into()]
        }
    );
    assert_eq!(error.to_string(), "required inputs not provided: [amount]");
    let both = validate_init(&plan, &Args::new()).expect_err("both missing");
    assert_eq!(
        both.to_string(),
        "required inputs not provided: [amount who]"
    );
    assert!(
        validate_init(&plan, &args(json!({"amount": null, "who": "x"}))).is_err(),
        "null is a value, but not a number"
    );
}

#[test]
fn init_values_are_type_checked_and_each_bad_attribute_is_named() {
    let catalog = typed_catalog();
    let plan = catalog.ok(&["g"], json!({}));
    let init = args(
        json!({"amount": "12", "who": 7, "tags": ["a"], "anything": {"k": 1},
                           "rate": "ignored", "extra": "accepted"}),
    );
    let error = validate_init(&plan, &init).expect_err("type mismatch");
    let InitError::TypeMismatch { mismatches } = &error else {
        panic!("{error:?}")
    };
    let named: Vec<&str> = mismatches.iter().map(|m| m.attribute.as_str()).collect();
    assert_eq!(named, ["amount", "who"]);
    assert_eq!(
        error.to_string(),
        "init values do not match the declared attribute types: attribute \"amount\" must be number \
         but is string; attribute \"who\" must be string but is number"
    );
    let good = args(json!({"amount": 12.5, "who": "x", "tags": [], "res": {}}));
    assert_eq!(validate_init(&plan, &good), Ok(()));
}

#[test]
fn missing_inputs_are_reported_before_types() {
    let catalog = typed_catalog();
    let plan = catalog.ok(&["g"], json!({}));
    let error = validate_init(&plan, &args(json!({"amount": "x"}))).expect_err("invalid");
    assert!(matches!(error, InitError::MissingRequired { .. }));
}

#[test]
fn a_goal_satisfied_by_init_plans_nothing_for_its_inputs() {
    // The original walked the inputs of such a goal and planned their providers (or demanded
    // their values in init) although nothing consumed them.
    let mut catalog = Catalog::default();
    catalog
        .step("p", &[], &[], &["x"])
        .step("g", &["x", "z"], &[], &["y"]);
    let plan = catalog.ok(&["g"], json!({"y": 1}));
    assert!(plan.steps.is_empty());
    assert!(
        plan.required.is_empty(),
        "nothing needs z: {:?}",
        plan.required
    );
}
