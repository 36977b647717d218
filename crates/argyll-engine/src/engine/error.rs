//! [`EngineError`]: why an engine call failed, and how a refused flow transaction becomes one.

use argyll_events::AggregateId;
use argyll_model::StepValidationError;
use argyll_plan::{InitError, PlanError};
use argyll_store::StoreError;

use crate::aggregate::AggregateError;
use crate::catalog::CatalogError;
use crate::flow::{FlowCommandError, TxError};

/// Why an engine call failed. The server maps each kind to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The step definition is invalid.
    #[error(transparent)]
    InvalidStep(#[from] StepValidationError),
    /// A script or predicate does not compile.
    #[error("{0}")]
    Script(String),
    /// Refused by the catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The init values do not fit the plan.
    #[error(transparent)]
    Init(#[from] InitError),
    /// The flow id exists with other goals or init values.
    #[error("flow exists: {0}")]
    FlowExists(String),
    /// A flow start would make a step with more work items than `MAX_WORK_ITEMS`.
    #[error("{0}")]
    TooManyWorkItems(String),
    /// A flow start whose init and metadata alone exceed `FLOW_MAX_STATE_BYTES`.
    #[error("{0}")]
    StateTooLarge(String),
    /// A flow id or goal breaks a bound (too long, control characters).
    #[error("{0}")]
    InvalidRequest(String),
    /// No such flow.
    #[error("flow not found: {0}")]
    FlowNotFound(String),
    /// A reported work result was refused.
    #[error(transparent)]
    Work(#[from] FlowCommandError),
    /// The store failed or a state could not be rebuilt.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// The engine is misconfigured.
    #[error("{0}")]
    Setup(String),
}

impl EngineError {
    /// Whether the store could not be reached (worth retrying; the server answers 503).
    pub(super) fn is_unavailable(&self) -> bool {
        matches!(
            self,
            EngineError::Aggregate(AggregateError::Store(StoreError::Unavailable(_)))
        )
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        EngineError::Aggregate(AggregateError::Store(error))
    }
}

/// The engine error of a flow transaction that was refused or could not apply its events.
pub(super) fn tx_error(flow_id: &str, error: TxError) -> EngineError {
    match error {
        TxError::Refused(FlowCommandError::FlowNotFound) => {
            EngineError::FlowNotFound(flow_id.to_owned())
        }
        TxError::Refused(refused) => EngineError::Work(refused),
        TxError::Apply(apply) => EngineError::Aggregate(AggregateError::InvalidEvent {
            aggregate: AggregateId::Flow(flow_id.to_owned()),
            reason: apply.to_string(),
        }),
    }
}
