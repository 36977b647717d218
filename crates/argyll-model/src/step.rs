//! Step definitions as registered by clients and snapshotted into plans.
//!
//! The JSON shape is the original engine's (`engine.md` §1.1): field names, omission rules and
//! the "default is JSON text in a string" convention are kept so that existing clients and UIs
//! work unchanged. Decoding is lenient (missing or `null` fields take their zero value, unknown
//! enum strings are kept) so that [`crate::validate`] can report the original's exact messages.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::wire::{is_false, is_zero, nullable, wire_enum};
use crate::{AttributeName, StepId};

wire_enum! {
    /// How a step is executed.
    pub enum StepType {
        /// An HTTP call whose response carries the outputs.
        Sync = "sync",
        /// An HTTP call acknowledged at once and completed later through the webhook.
        Async = "async",
        /// An Ale or Lua script run inside the engine.
        Script = "script",
        /// A child flow started with the step's inputs.
        Flow = "flow",
    }
}

wire_enum! {
    /// What an attribute is to a step.
    pub enum AttributeRole {
        /// An input the step cannot start without.
        Required = "required",
        /// An input passed when available, else its default, else omitted.
        Optional = "optional",
        /// An input whose value is always its default, whatever the flow holds.
        Const = "const",
        /// A value the step produces.
        Output = "output",
    }
}

wire_enum! {
    /// The declared JSON type of an attribute.
    pub enum AttributeType {
        /// No declared type (the field is empty or absent); accepts anything.
        Untyped = "",
        /// A JSON string.
        String = "string",
        /// A JSON number.
        Number = "number",
        /// `true` or `false`.
        Boolean = "boolean",
        /// A JSON object.
        Object = "object",
        /// A JSON array.
        Array = "array",
        /// JSON `null`.
        Null = "null",
        /// Any JSON value.
        Any = "any",
    }
}

wire_enum! {
    /// The language of a script or predicate.
    pub enum ScriptLanguage {
        /// Ale, the engine's small Lisp.
        Ale = "ale",
        /// Lua 5.2, the version of the original's go-lua.
        Lua = "lua",
    }
}

wire_enum! {
    /// How retry delays grow.
    pub enum BackoffType {
        /// Not set (only valid when no retry field is set).
        Unset = "",
        /// The same delay every time.
        Fixed = "fixed",
        /// `backoff_ms · (n + 1)` before retry `n`.
        Linear = "linear",
        /// `backoff_ms · 2ⁿ` before retry `n`.
        Exponential = "exponential",
    }
}

impl AttributeType {
    /// Whether `value` is of this declared type (`any` and untyped accept everything).
    pub fn accepts(&self, value: &Value) -> bool {
        match self {
            AttributeType::Untyped | AttributeType::Any | AttributeType::Unrecognized(_) => true,
            AttributeType::String => value.is_string(),
            AttributeType::Number => value.is_number(),
            AttributeType::Boolean => value.is_boolean(),
            AttributeType::Object => value.is_object(),
            AttributeType::Array => value.is_array(),
            AttributeType::Null => value.is_null(),
        }
    }
}

/// The JSON type name of a value, in the vocabulary of [`AttributeType`].
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One attribute a step declares.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttributeSpec {
    /// What the attribute is to the step.
    #[serde(default, deserialize_with = "nullable")]
    pub role: AttributeRole,
    /// The declared type; always serialised, `""` when untyped.
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub attr_type: AttributeType,
    /// The default value as JSON text (e.g. `"\"fixed\""`, `"42"`); empty when none.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub default: String,
    /// Expand the step into one work item per element when the value is an array.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub for_each: bool,
}

impl AttributeSpec {
    /// A spec with the given role and type and no default.
    pub fn new(role: AttributeRole, attr_type: AttributeType) -> Self {
        AttributeSpec {
            role,
            attr_type,
            default: String::new(),
            for_each: false,
        }
    }

    /// A required input of the given type.
    pub fn required(attr_type: AttributeType) -> Self {
        Self::new(AttributeRole::Required, attr_type)
    }

    /// An optional input of the given type with an optional default (JSON text).
    pub fn optional(attr_type: AttributeType, default: Option<&str>) -> Self {
        let mut spec = Self::new(AttributeRole::Optional, attr_type);
        spec.default = default.unwrap_or_default().to_owned();
        spec
    }

    /// A const input whose value is always `default` (JSON text).
    pub fn constant(attr_type: AttributeType, default: &str) -> Self {
        let mut spec = Self::new(AttributeRole::Const, attr_type);
        spec.default = default.to_owned();
        spec
    }

    /// An output of the given type.
    pub fn output(attr_type: AttributeType) -> Self {
        Self::new(AttributeRole::Output, attr_type)
    }

    /// This spec with `for_each` set.
    pub fn for_each(mut self) -> Self {
        self.for_each = true;
        self
    }

    /// Required or optional: an input in the attribute dependency graph.
    pub fn is_input(&self) -> bool {
        matches!(self.role, AttributeRole::Required | AttributeRole::Optional)
    }

    /// Required, optional or const: a value passed to the step at run time.
    pub fn is_runtime_input(&self) -> bool {
        self.is_input() || self.role == AttributeRole::Const
    }

    /// Whether the step needs this attribute before it can start.
    pub fn is_required(&self) -> bool {
        self.role == AttributeRole::Required
    }

    /// Whether the step produces this attribute.
    pub fn is_output(&self) -> bool {
        self.role == AttributeRole::Output
    }

    /// The default parsed as JSON; `None` when there is no default.
    ///
    /// An unparsable default (only possible on an untyped attribute, which validation does not
    /// check) yields `null`, as the original's lenient decoding does.
    pub fn default_value(&self) -> Option<Value> {
        if self.default.is_empty() {
            None
        } else {
            Some(serde_json::from_str(&self.default).unwrap_or(Value::Null))
        }
    }
}

/// HTTP settings of a sync or async step.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpConfig {
    /// The URL the engine POSTs work items to.
    #[serde(default, deserialize_with = "nullable")]
    pub endpoint: String,
    /// A URL polled with GET to learn the step's health; empty when none.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub health_check: String,
    /// Per-call timeout in milliseconds; 0 means the engine's step timeout. Always serialised.
    #[serde(default, deserialize_with = "nullable")]
    pub timeout: i64,
}

/// A script body (for script steps) or predicate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScriptConfig {
    /// The script language.
    #[serde(default, deserialize_with = "nullable")]
    pub language: ScriptLanguage,
    /// The source text.
    #[serde(default, deserialize_with = "nullable")]
    pub script: String,
}

impl ScriptConfig {
    /// A script in the given language.
    pub fn new(language: ScriptLanguage, script: impl Into<String>) -> Self {
        ScriptConfig {
            language,
            script: script.into(),
        }
    }
}

/// Settings of a flow step (a step that runs a child flow).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowConfig {
    /// Goal steps of the child flow.
    #[serde(default, deserialize_with = "nullable")]
    pub goals: Vec<StepId>,
    /// Parent input attribute name → child attribute name.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub input_map: BTreeMap<AttributeName, AttributeName>,
    /// Child attribute name → parent output attribute name.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub output_map: BTreeMap<AttributeName, AttributeName>,
}

/// Retry and parallelism settings of a step.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkConfig {
    /// Retries after the first attempt; 0 none, negative unlimited.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub max_retries: i64,
    /// Base delay in milliseconds.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub backoff_ms: i64,
    /// Delay cap in milliseconds; 0 means no cap.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub max_backoff_ms: i64,
    /// How delays grow.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BackoffType::is_unset"
    )]
    pub backoff_type: BackoffType,
    /// Work items allowed to be active at once; 0 or less means 1.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub parallelism: i64,
}

impl BackoffType {
    fn is_unset(&self) -> bool {
        *self == BackoffType::Unset
    }
}

impl WorkConfig {
    /// Whether any of the retry numbers is set (the original's "has retry config").
    pub fn has_retry_config(&self) -> bool {
        self.max_retries != 0 || self.backoff_ms != 0 || self.max_backoff_ms != 0
    }

    /// The effective number of work items that may run at once (at least 1).
    pub fn effective_parallelism(&self) -> usize {
        usize::try_from(self.parallelism).unwrap_or(0).max(1)
    }
}

/// A registered step: what it needs, what it produces and how it runs.
///
/// Equality is the original's (§1.5): every field takes part, labels included; the functional
/// hash used for memoization ([`Step::hash_key`]) leaves out id, name and labels.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Step {
    /// Unique id in the registry.
    #[serde(default, deserialize_with = "nullable")]
    pub id: StepId,
    /// Display name.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// How the step runs.
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub step_type: StepType,
    /// Declared attributes by name; always serialised (`{}` when none).
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: BTreeMap<AttributeName, AttributeSpec>,
    /// Free-form metadata; not part of the functional hash.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// A condition evaluated once with the step's inputs; false skips the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<ScriptConfig>,
    /// HTTP settings (sync and async steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    /// Script settings (script steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptConfig>,
    /// Child-flow settings (flow steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowConfig>,
    /// Retry and parallelism settings; absent means the engine's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_config: Option<WorkConfig>,
    /// Cache results by (functional definition, inputs).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub memoizable: bool,
}

impl Step {
    /// A step with the given id, name and type and nothing else.
    pub fn new(id: impl Into<StepId>, name: impl Into<String>, step_type: StepType) -> Self {
        Step {
            id: id.into(),
            name: name.into(),
            step_type,
            ..Step::default()
        }
    }

    /// A sync HTTP step posting to `endpoint`.
    pub fn sync(id: impl Into<StepId>, endpoint: impl Into<String>) -> Self {
        let id = id.into();
        let mut step = Step::new(id.clone(), id, StepType::Sync);
        step.http = Some(HttpConfig {
            endpoint: endpoint.into(),
            ..HttpConfig::default()
        });
        step
    }

    /// A script step.
    pub fn script(
        id: impl Into<StepId>,
        language: ScriptLanguage,
        source: impl Into<String>,
    ) -> Self {
        let id = id.into();
        let mut step = Step::new(id.clone(), id, StepType::Script);
        step.script = Some(ScriptConfig::new(language, source));
        step
    }

    /// This step with one more attribute.
    pub fn with_attribute(mut self, name: impl Into<AttributeName>, spec: AttributeSpec) -> Self {
        self.attributes.insert(name.into(), spec);
        self
    }

    /// Names and specs of the graph inputs (required and optional), in name order.
    pub fn inputs(&self) -> impl Iterator<Item = (&AttributeName, &AttributeSpec)> {
        self.attributes.iter().filter(|(_, spec)| spec.is_input())
    }

    /// Names of the required inputs, in name order.
    pub fn required_inputs(&self) -> impl Iterator<Item = &AttributeName> {
        self.attributes
            .iter()
            .filter(|(_, spec)| spec.is_required())
            .map(|(name, _)| name)
    }

    /// Names of the outputs, in name order.
    pub fn outputs(&self) -> impl Iterator<Item = &AttributeName> {
        self.attributes
            .iter()
            .filter(|(_, spec)| spec.is_output())
            .map(|(name, _)| name)
    }

    /// Names and specs of everything passed at run time (required, optional, const), in name order.
    pub fn runtime_inputs(&self) -> impl Iterator<Item = (&AttributeName, &AttributeSpec)> {
        self.attributes
            .iter()
            .filter(|(_, spec)| spec.is_runtime_input())
    }

    /// Names of the attributes flagged `for_each`, in name order.
    pub fn for_each_attributes(&self) -> impl Iterator<Item = &AttributeName> {
        self.attributes
            .iter()
            .filter(|(_, spec)| spec.for_each)
            .map(|(name, _)| name)
    }

    /// Whether the step declares `name` as an output.
    pub fn produces(&self, name: &str) -> bool {
        self.attributes
            .get(name)
            .is_some_and(AttributeSpec::is_output)
    }
}

/// A step as decoded from a request body, before validation.
///
/// The original accepts `"attributes": {"x": null}` and rejects it in validation with
/// `attribute has nil definition`; a [`Step`] cannot hold a missing spec, so the document keeps
/// the names of such attributes beside the step until [`StepDocument::validate`] reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepDocument {
    /// The step, without the attributes whose definition was `null`.
    pub step: Step,
    /// Names of attributes whose definition was `null`.
    pub undefined_attributes: BTreeSet<AttributeName>,
}

impl From<Step> for StepDocument {
    fn from(step: Step) -> Self {
        StepDocument {
            step,
            undefined_attributes: BTreeSet::new(),
        }
    }
}

impl<'de> Deserialize<'de> for StepDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = Value::deserialize(deserializer)?;
        let mut undefined_attributes = BTreeSet::new();
        if let Some(Value::Object(attributes)) = value.get_mut("attributes") {
            attributes.retain(|name, spec| {
                if spec.is_null() {
                    undefined_attributes.insert(name.clone());
                    false
                } else {
                    true
                }
            });
        }
        let step = Step::deserialize(value).map_err(serde::de::Error::custom)?;
        Ok(StepDocument {
            step,
            undefined_attributes,
        })
    }
}
