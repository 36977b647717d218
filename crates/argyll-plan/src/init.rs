//! Checks of a flow's init values against its plan, made before the flow starts.

use std::fmt;

use argyll_model::{
    Args, AttributeName, AttributeRole, AttributeType, ExecutionPlan, json_type_name,
};

/// Why init values cannot start a flow with this plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// Attributes the plan needs from init are absent (the original's message and format).
    #[error("required inputs not provided: [{}]", .missing.join(" "))]
    MissingRequired {
        /// The absent names, sorted.
        missing: Vec<AttributeName>,
    },
    /// Values whose JSON type differs from the declared type (contract decision 13).
    #[error(
        "init values do not match the declared attribute types: {}",
        .mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    TypeMismatch {
        /// One entry per offending attribute, sorted by name.
        mismatches: Vec<InitTypeMismatch>,
    },
}

/// One init value of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitTypeMismatch {
    /// The attribute.
    pub attribute: AttributeName,
    /// Its declared type.
    pub expected: AttributeType,
    /// The JSON type of the value given.
    pub actual: &'static str,
}

impl fmt::Display for InitTypeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attribute \"{}\" must be {} but is {}",
            self.attribute, self.expected, self.actual
        )
    }
}

/// Every check a flow start makes on its init values, in the original's order: required inputs
/// present first, then declared types.
pub fn validate_init(plan: &ExecutionPlan, init: &Args) -> Result<(), InitError> {
    check_required_inputs(plan, init)?;
    check_init_types(plan, init)
}

/// Fails when an attribute of `plan.required` is not a key of `init` (a `null` value counts as
/// given).
pub fn check_required_inputs(plan: &ExecutionPlan, init: &Args) -> Result<(), InitError> {
    let mut missing: Vec<AttributeName> = plan
        .required
        .iter()
        .filter(|name| !init.contains_key(*name))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    missing.dedup();
    Err(InitError::MissingRequired { missing })
}

/// Fails when an init value's JSON type differs from the type a plan step declares for that
/// attribute. `any` and untyped declarations accept everything; `const` declarations are not
/// checked, because a const input never takes its value from the flow.
pub fn check_init_types(plan: &ExecutionPlan, init: &Args) -> Result<(), InitError> {
    let mut mismatches = Vec::new();
    for (name, value) in init {
        let declared = plan
            .steps
            .values()
            .filter_map(|step| step.attributes.get(name))
            .filter(|spec| spec.role != AttributeRole::Const)
            .find(|spec| !spec.attr_type.accepts(value));
        if let Some(spec) = declared {
            mismatches.push(InitTypeMismatch {
                attribute: name.clone(),
                expected: spec.attr_type.clone(),
                actual: json_type_name(value),
            });
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(InitError::TypeMismatch { mismatches })
    }
}
