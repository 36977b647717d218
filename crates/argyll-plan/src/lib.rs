//! # argyll-plan
//!
//! The planner: given the registered steps, a flow's goals and its init values, it finds the
//! minimal set of steps that reaches the goals by walking backwards through the attribute graph
//! (`engine.md` §4), and checks init values against the plan (required inputs present, declared
//! types respected).
//!
//! **Owns**: plan computation and the start-time checks of init values.
//!
//! **Must not depend on**: anything but `argyll-model`; no I/O, no clock, no randomness. The same
//! catalog, goals and init always give the same plan, whatever order the steps were registered
//! in: provider and consumer lists, `required` and the `excluded` lists are sorted by id/name.
//!
//! ```
//! use argyll_model::{Args, AttributeGraph, AttributeSpec, AttributeType, Step};
//! use std::collections::BTreeMap;
//!
//! let fetch = Step::sync("fetch", "http://svc/fetch")
//!     .with_attribute("user", AttributeSpec::output(AttributeType::Object));
//! let greet = Step::sync("greet", "http://svc/greet")
//!     .with_attribute("user", AttributeSpec::required(AttributeType::Object))
//!     .with_attribute("greeting", AttributeSpec::output(AttributeType::String));
//! let steps: BTreeMap<_, _> = [fetch, greet].into_iter().map(|s| (s.id.clone(), s)).collect();
//! let graph = AttributeGraph::from_steps(steps.values());
//!
//! let plan = argyll_plan::plan(&steps, &graph, &["greet".to_owned()], &Args::new()).unwrap();
//! assert_eq!(plan.steps.keys().collect::<Vec<_>>(), ["fetch", "greet"]);
//! assert!(plan.required.is_empty());
//! ```

mod init;
mod planner;

pub use init::{
    InitError, InitTypeMismatch, check_init_types, check_required_inputs, validate_init,
};
pub use planner::{PlanError, plan};
