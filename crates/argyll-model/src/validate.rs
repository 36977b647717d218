//! Step validation with the original's rules, order and messages (`engine.md` §1.2–§1.3).
//!
//! The first failing rule wins. Where the original iterated a Go map (and so reported an
//! arbitrary attribute when several are bad), attributes are checked in name order, so the
//! reported attribute is always the first bad one by name.

use serde_json::Value;

use crate::step::{
    AttributeRole, AttributeSpec, AttributeType, BackoffType, ScriptLanguage, Step, StepDocument,
    StepType, WorkConfig,
};

/// Why a step definition was rejected. `Display` is the original's exact message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepValidationError {
    /// `id` is empty.
    #[error("step ID empty")]
    EmptyId,
    /// `name` is empty.
    #[error("step name empty")]
    EmptyName,
    /// `type` is not sync, async, script or flow.
    #[error("invalid step type: {0}")]
    InvalidStepType(String),
    /// A sync or async step without `http`.
    #[error("http required")]
    HttpRequired,
    /// `http` on a script or flow step.
    #[error("http not allowed for step type")]
    HttpNotAllowed,
    /// `http.endpoint` is empty.
    #[error("step endpoint empty")]
    EndpointEmpty,
    /// A script step without `script`.
    #[error("script required")]
    ScriptRequired,
    /// `script` on an HTTP or flow step.
    #[error("script not allowed for step type")]
    ScriptNotAllowed,
    /// `script.language` is empty.
    #[error("script language empty")]
    ScriptLanguageEmpty,
    /// `script.language` is neither ale nor lua.
    #[error("invalid script language: {0}")]
    InvalidScriptLanguage(String),
    /// `script.script` is empty.
    #[error("script empty")]
    ScriptEmpty,
    /// A flow step without `flow`.
    #[error("flow required")]
    FlowRequired,
    /// `flow` on an HTTP or script step.
    #[error("flow not allowed for step type")]
    FlowNotAllowed,
    /// `flow.goals` is empty.
    #[error("flow goals required")]
    FlowGoalsRequired,
    /// An `input_map` entry is empty or its key is not a required/optional input of the step.
    #[error("flow input map invalid")]
    FlowInputMapInvalid,
    /// An `output_map` entry is empty or its value is not an output of the step.
    #[error("flow output map invalid")]
    FlowOutputMapInvalid,
    /// An attribute has an empty name.
    #[error("argument name empty")]
    AttributeNameEmpty,
    /// An attribute's definition is `null`.
    #[error("attribute has nil definition")]
    AttributeUndefined,
    /// An attribute definition breaks a rule of §1.3.
    #[error(transparent)]
    Attribute(#[from] AttributeValidationError),
    /// `work_config.backoff_ms` is negative.
    #[error("backoff_ms cannot be negative")]
    NegativeBackoff,
    /// `work_config.max_backoff_ms` is set below `backoff_ms`.
    #[error("max_backoff_ms must be >= backoff_ms")]
    MaxBackoffBelowBackoff,
    /// A retry number is set but `backoff_type` is not.
    #[error("invalid retry config")]
    BackoffTypeMissing,
    /// `backoff_type` is not fixed, linear or exponential.
    #[error("invalid backoff type")]
    InvalidBackoffType,
    /// An id or name is longer than the limit (beyond the original's rules).
    #[error("{field} too long: {length} characters (the limit is {limit}, MAX_ID_LENGTH)")]
    TooLong {
        /// What it is (`step ID`, `step name`, `attribute name`, `flow goal`).
        field: &'static str,
        /// Its length in characters.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// An id or name contains a control character (NUL, newline, escape...).
    #[error("{field} contains a control character (U+{code:04X}) at position {position}")]
    ControlCharacter {
        /// What it is.
        field: &'static str,
        /// The character's code point.
        code: u32,
        /// Its position (0-based, in characters).
        position: usize,
    },
    /// A number outside the range the engine can honour.
    #[error("{field} out of range: {value} (expected {min} to {max})")]
    OutOfRange {
        /// The field (`work_config.parallelism`, `http.timeout`...).
        field: &'static str,
        /// The value given.
        value: i64,
        /// The smallest accepted value.
        min: i64,
        /// The largest accepted value.
        max: i64,
    },
    /// An endpoint or health check that is not an absolute URL the engine can call.
    #[error("{field} is not an absolute http(s) URL: {value:?}")]
    InvalidUrl {
        /// The field (`http.endpoint`, `http.health_check`).
        field: &'static str,
        /// The value given (cut to 200 characters).
        value: String,
    },
}

/// The bounds a step definition must stay within, beyond the original's rules (contract
/// decision 25). The engine takes them from its settings; [`StepLimits::default`] holds the
/// documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    /// Longest step id, step name, attribute name and flow goal, in characters
    /// (`MAX_ID_LENGTH`).
    pub max_id_length: usize,
    /// Largest `work_config.parallelism` (`MAX_WORK_ITEMS`: more could never run at once).
    pub max_parallelism: i64,
    /// Largest `http.timeout` in milliseconds.
    pub max_timeout_ms: i64,
}

/// Default of [`StepLimits::max_id_length`].
pub const DEFAULT_MAX_ID_LENGTH: usize = 256;
/// Largest `work_config.max_retries` (negative stays "unlimited").
pub const MAX_RETRIES: i64 = 1_000_000;
/// Largest `backoff_ms` and `max_backoff_ms`: a day.
pub const MAX_BACKOFF_MS: i64 = 86_400_000;

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits {
            max_id_length: DEFAULT_MAX_ID_LENGTH,
            max_parallelism: 100_000,
            max_timeout_ms: 86_400_000,
        }
    }
}

/// Why one attribute definition was rejected. `Display` is the original's exact message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeValidationError {
    /// The role is not required, optional, const or output.
    #[error("invalid attribute role: {role} for attribute \"{name}\"")]
    InvalidRole {
        /// The attribute.
        name: String,
        /// The rejected role.
        role: String,
    },
    /// A const attribute without a default.
    #[error("default value required for const attribute: const for attribute \"{name}\"")]
    ConstWithoutDefault {
        /// The attribute.
        name: String,
    },
    /// A default on a required or output attribute.
    #[error("default value requires an optional attribute: {role} for attribute \"{name}\"")]
    DefaultNotAllowed {
        /// The attribute.
        name: String,
        /// Its role.
        role: String,
    },
    /// `for_each` on an attribute whose type is not array, any or untyped.
    #[error(
        "for_each processing requires an array attribute type: type {attr_type} for attribute \"{name}\""
    )]
    ForEachNeedsArray {
        /// The attribute.
        name: String,
        /// Its declared type.
        attr_type: String,
    },
    /// `for_each` on an output.
    #[error("for_each processing requires an input attribute type: \"{name}\"")]
    ForEachOnOutput {
        /// The attribute.
        name: String,
    },
    /// The type is not one of the seven types.
    #[error("invalid attribute type: {attr_type} for attribute \"{name}\"")]
    InvalidType {
        /// The attribute.
        name: String,
        /// The rejected type.
        attr_type: String,
    },
    /// The default is not a JSON value of the declared type.
    #[error("invalid default value for type for attribute \"{name}\": {problem}")]
    InvalidDefault {
        /// The attribute.
        name: String,
        /// What is wrong with it.
        problem: DefaultValueProblem,
    },
}

/// What is wrong with a typed default value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DefaultValueProblem {
    /// Not JSON at all.
    #[error("must be valid JSON")]
    NotJson,
    /// Not a JSON string.
    #[error("must be a valid JSON string")]
    NotString,
    /// Not a JSON number.
    #[error("must be a valid number")]
    NotNumber,
    /// Not `true` or `false`.
    #[error("must be \"true\" or \"false\"")]
    NotBoolean,
    /// Not a JSON object.
    #[error("must be valid JSON object")]
    NotObject,
    /// Not a JSON array.
    #[error("must be valid JSON array")]
    NotArray,
    /// Not `null`.
    #[error("must be \"null\"")]
    NotNull,
}

impl Step {
    /// Checks the definition against every rule of §1.2–§1.3; the first failing rule wins.
    pub fn validate(&self) -> Result<(), StepValidationError> {
        validate_step(self, &Default::default())
    }

    /// [`Step::validate`], then the bounds of `limits` (lengths, printable ids, numeric ranges,
    /// callable URLs), which the original did not check: a step the original accepted but the
    /// engine could not honour is refused at registration with a message naming the field.
    pub fn validate_within(&self, limits: &StepLimits) -> Result<(), StepValidationError> {
        self.validate()?;
        check_bounds(self, limits)
    }
}

/// An id or name within `limit` characters (`MAX_ID_LENGTH`) and without control characters;
/// the error names `field`. Shared by registration and flow starts.
pub fn check_text(
    field: &'static str,
    text: &str,
    limit: usize,
) -> Result<(), StepValidationError> {
    // Most ids are short printable ASCII: decided from the bytes alone.
    if text.len() <= limit && text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    let length = text.chars().count();
    if length > limit {
        return Err(StepValidationError::TooLong {
            field,
            length,
            limit,
        });
    }
    if let Some((position, c)) = text.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(StepValidationError::ControlCharacter {
            field,
            code: u32::from(c),
            position,
        });
    }
    Ok(())
}

fn check_range(
    field: &'static str,
    value: i64,
    min: i64,
    max: i64,
) -> Result<(), StepValidationError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(StepValidationError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

/// An absolute `http://` or `https://` URL with a host, or an in-process `local://NAME`.
fn check_url(field: &'static str, text: &str) -> Result<(), StepValidationError> {
    let callable = url::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https" | "local")
            && url.host_str().is_some_and(|host| !host.is_empty())
    });
    if callable {
        Ok(())
    } else {
        Err(StepValidationError::InvalidUrl {
            field,
            value: text.chars().take(200).collect(),
        })
    }
}

fn check_bounds(step: &Step, limits: &StepLimits) -> Result<(), StepValidationError> {
    let max = limits.max_id_length;
    check_text("step ID", &step.id, max)?;
    check_text("step name", &step.name, max)?;
    for name in step.attributes.keys() {
        check_text("attribute name", name, max)?;
    }
    if let Some(http) = &step.http {
        check_url("http.endpoint", &http.endpoint)?;
        if !http.health_check.is_empty() {
            check_url("http.health_check", &http.health_check)?;
        }
        check_range("http.timeout", http.timeout, 0, limits.max_timeout_ms)?;
    }
    if let Some(flow) = &step.flow {
        for goal in &flow.goals {
            check_text("flow goal", goal, max)?;
        }
    }
    if let Some(config) = &step.work_config {
        check_range(
            "work_config.parallelism",
            config.parallelism,
            0,
            limits.max_parallelism,
        )?;
        if config.max_retries >= 0 {
            // Negative means unlimited, as in the original.
            check_range(
                "work_config.max_retries",
                config.max_retries,
                0,
                MAX_RETRIES,
            )?;
        }
        check_range(
            "work_config.backoff_ms",
            config.backoff_ms,
            0,
            MAX_BACKOFF_MS,
        )?;
        check_range(
            "work_config.max_backoff_ms",
            config.max_backoff_ms,
            0,
            MAX_BACKOFF_MS,
        )?;
    }
    Ok(())
}

impl StepDocument {
    /// Validates the decoded document (reporting `null` attribute definitions as the original
    /// does) and returns the step.
    pub fn validate(self) -> Result<Step, StepValidationError> {
        validate_step(&self.step, &self.undefined_attributes)?;
        Ok(self.step)
    }
}

fn validate_step(
    step: &Step,
    undefined_attributes: &std::collections::BTreeSet<String>,
) -> Result<(), StepValidationError> {
    if step.id.is_empty() {
        return Err(StepValidationError::EmptyId);
    }
    if step.name.is_empty() {
        return Err(StepValidationError::EmptyName);
    }
    match &step.step_type {
        StepType::Sync | StepType::Async => validate_http_step(step)?,
        StepType::Script => validate_script_step(step)?,
        StepType::Flow => validate_flow_step(step)?,
        StepType::Unrecognized(text) => {
            return Err(StepValidationError::InvalidStepType(text.clone()));
        }
    }
    validate_attributes(step, undefined_attributes)?;
    if let Some(work_config) = &step.work_config {
        validate_work_config(work_config)?;
    }
    Ok(())
}

fn validate_http_step(step: &Step) -> Result<(), StepValidationError> {
    let Some(http) = &step.http else {
        return Err(StepValidationError::HttpRequired);
    };
    if step.flow.is_some() {
        return Err(StepValidationError::FlowNotAllowed);
    }
    if step.script.is_some() {
        return Err(StepValidationError::ScriptNotAllowed);
    }
    if http.endpoint.is_empty() {
        return Err(StepValidationError::EndpointEmpty);
    }
    Ok(())
}

fn validate_script_step(step: &Step) -> Result<(), StepValidationError> {
    let Some(script) = &step.script else {
        return Err(StepValidationError::ScriptRequired);
    };
    if step.http.is_some() {
        return Err(StepValidationError::HttpNotAllowed);
    }
    if step.flow.is_some() {
        return Err(StepValidationError::FlowNotAllowed);
    }
    match &script.language {
        ScriptLanguage::Ale | ScriptLanguage::Lua => {}
        ScriptLanguage::Unrecognized(text) if text.is_empty() => {
            return Err(StepValidationError::ScriptLanguageEmpty);
        }
        ScriptLanguage::Unrecognized(text) => {
            return Err(StepValidationError::InvalidScriptLanguage(text.clone()));
        }
    }
    if script.script.is_empty() {
        return Err(StepValidationError::ScriptEmpty);
    }
    Ok(())
}

fn validate_flow_step(step: &Step) -> Result<(), StepValidationError> {
    let Some(flow) = &step.flow else {
        return Err(StepValidationError::FlowRequired);
    };
    if step.http.is_some() {
        return Err(StepValidationError::HttpNotAllowed);
    }
    if step.script.is_some() {
        return Err(StepValidationError::ScriptNotAllowed);
    }
    if flow.goals.is_empty() {
        return Err(StepValidationError::FlowGoalsRequired);
    }
    let input_map_valid = flow.input_map.iter().all(|(parent_input, child_name)| {
        !parent_input.is_empty()
            && !child_name.is_empty()
            && step
                .attributes
                .get(parent_input)
                .is_some_and(AttributeSpec::is_input)
    });
    if !input_map_valid {
        return Err(StepValidationError::FlowInputMapInvalid);
    }
    let output_map_valid = flow.output_map.iter().all(|(child_name, parent_output)| {
        !child_name.is_empty() && !parent_output.is_empty() && step.produces(parent_output)
    });
    if !output_map_valid {
        return Err(StepValidationError::FlowOutputMapInvalid);
    }
    Ok(())
}

fn validate_attributes(
    step: &Step,
    undefined_attributes: &std::collections::BTreeSet<String>,
) -> Result<(), StepValidationError> {
    // Walk defined and undefined names together in name order, so the first bad name is reported.
    let mut defined = step.attributes.iter().peekable();
    let mut undefined = undefined_attributes.iter().peekable();
    loop {
        let next_undefined_first = match (defined.peek(), undefined.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((defined_name, _)), Some(undefined_name)) => undefined_name < defined_name,
        };
        if next_undefined_first {
            if let Some(name) = undefined.next() {
                if name.is_empty() {
                    return Err(StepValidationError::AttributeNameEmpty);
                }
                return Err(StepValidationError::AttributeUndefined);
            }
        } else if let Some((name, spec)) = defined.next() {
            if name.is_empty() {
                return Err(StepValidationError::AttributeNameEmpty);
            }
            spec.validate(name)?;
        }
    }
}

impl AttributeSpec {
    /// Checks one attribute definition against §1.3; `name` is used in the messages.
    pub fn validate(&self, name: &str) -> Result<(), AttributeValidationError> {
        let name_owned = || name.to_owned();
        if !self.role.is_recognized() {
            return Err(AttributeValidationError::InvalidRole {
                name: name_owned(),
                role: self.role.to_string(),
            });
        }
        if self.role == AttributeRole::Const && self.default.is_empty() {
            return Err(AttributeValidationError::ConstWithoutDefault { name: name_owned() });
        }
        if !self.default.is_empty()
            && !matches!(self.role, AttributeRole::Optional | AttributeRole::Const)
        {
            return Err(AttributeValidationError::DefaultNotAllowed {
                name: name_owned(),
                role: self.role.to_string(),
            });
        }
        if self.for_each {
            if !matches!(
                self.attr_type,
                AttributeType::Array | AttributeType::Any | AttributeType::Untyped
            ) {
                return Err(AttributeValidationError::ForEachNeedsArray {
                    name: name_owned(),
                    attr_type: self.attr_type.to_string(),
                });
            }
            if self.role == AttributeRole::Output {
                return Err(AttributeValidationError::ForEachOnOutput { name: name_owned() });
            }
        }
        if !self.attr_type.is_recognized() {
            return Err(AttributeValidationError::InvalidType {
                name: name_owned(),
                attr_type: self.attr_type.to_string(),
            });
        }
        if !self.default.is_empty() && self.attr_type != AttributeType::Untyped {
            check_default(&self.default, &self.attr_type).map_err(|problem| {
                AttributeValidationError::InvalidDefault {
                    name: name_owned(),
                    problem,
                }
            })?;
        }
        Ok(())
    }
}

fn check_default(text: &str, attr_type: &AttributeType) -> Result<(), DefaultValueProblem> {
    let value: Value = serde_json::from_str(text).map_err(|_| DefaultValueProblem::NotJson)?;
    let problem = match attr_type {
        AttributeType::String => DefaultValueProblem::NotString,
        AttributeType::Number => DefaultValueProblem::NotNumber,
        AttributeType::Boolean => DefaultValueProblem::NotBoolean,
        AttributeType::Object => DefaultValueProblem::NotObject,
        AttributeType::Array => DefaultValueProblem::NotArray,
        AttributeType::Null => DefaultValueProblem::NotNull,
        AttributeType::Any | AttributeType::Untyped | AttributeType::Unrecognized(_) => {
            return Ok(());
        }
    };
    if attr_type.accepts(&value) {
        Ok(())
    } else {
        Err(problem)
    }
}

fn validate_work_config(config: &WorkConfig) -> Result<(), StepValidationError> {
    if config.backoff_ms < 0 {
        return Err(StepValidationError::NegativeBackoff);
    }
    if config.max_backoff_ms != 0 && config.max_backoff_ms < config.backoff_ms {
        return Err(StepValidationError::MaxBackoffBelowBackoff);
    }
    if config.has_retry_config() {
        match config.backoff_type {
            BackoffType::Unset => return Err(StepValidationError::BackoffTypeMissing),
            BackoffType::Unrecognized(_) => return Err(StepValidationError::InvalidBackoffType),
            BackoffType::Fixed | BackoffType::Linear | BackoffType::Exponential => {}
        }
    }
    Ok(())
}
