//! Child flows: a flow step's work item starts a child flow (idempotently, within
//! `FLOW_MAX_DEPTH`), and a settled child completes or fails its parent's item (`engine.md`
//! §5.12). The link from child to parent is a [`ParentLink`] kept in the child's metadata.

use argyll_model::{Args, FlowState, FlowStatus, Step};
use argyll_store::Store;
use serde_json::{Map, Value};

use super::start::WhenExists;
use super::work_key::WorkKey;
use super::{Engine, EngineError, StartFlow, WorkReport};
use crate::flow::{FlowCommandError, is_settled};
use crate::runner::WorkRequest;

/// Metadata key of a child flow's nesting depth (1 for a child of a client's flow).
const FLOW_DEPTH: &str = "flow_depth";
/// Metadata keys of the parent work item (as the original named them).
const PARENT_FLOW_ID: &str = "parent_flow_id";
const PARENT_STEP_ID: &str = "parent_step_id";
const PARENT_TOKEN: &str = "parent_work_item_token";

/// The parent work item a child flow reports to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ParentLink(pub(super) WorkKey);

impl ParentLink {
    /// The link in a child flow's metadata; `None` for a flow a client started.
    pub(super) fn of(child: &FlowState) -> Option<ParentLink> {
        let text = |key: &str| {
            child
                .metadata
                .get(key)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        Some(ParentLink(WorkKey::new(
            text(PARENT_FLOW_ID)?,
            text(PARENT_STEP_ID)?,
            text(PARENT_TOKEN)?,
        )))
    }

    /// The parent flow named in `metadata` (the index lists it even without the rest).
    pub(super) fn parent_flow_id(metadata: &Map<String, Value>) -> Option<String> {
        metadata
            .get(PARENT_FLOW_ID)
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
    }

    fn write_to(&self, metadata: &mut Map<String, Value>) {
        let ParentLink(item) = self;
        metadata.insert(PARENT_FLOW_ID.into(), item.flow_id.clone().into());
        metadata.insert(PARENT_STEP_ID.into(), item.step_id.clone().into());
        metadata.insert(PARENT_TOKEN.into(), item.token.clone().into());
    }
}

impl<S: Store> Engine<S> {
    /// Starts the child flow of a flow step's work item (or finds it started).
    pub(super) async fn start_child(&self, work: &WorkRequest) -> Result<(), String> {
        let Some(config) = work.step.flow.as_ref() else {
            return Err("flow step without flow config".into());
        };
        let mut init = Args::new();
        for (name, value) in &work.inputs {
            let child_name = config.input_map.get(name).unwrap_or(name);
            init.insert(child_name.clone(), value.clone());
        }
        // Nesting depth: 0 for a flow started by a client, one more for each child level.
        let depth = work
            .metadata
            .get(FLOW_DEPTH)
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .saturating_add(1);
        let max_depth = self.inner.config.flow_max_depth;
        if depth > u64::try_from(max_depth).unwrap_or(u64::MAX) {
            return Err(format!(
                "child flow depth limit reached: flows nest at most {max_depth} levels deep (FLOW_MAX_DEPTH)"
            ));
        }
        let mut metadata = work.metadata.clone();
        ParentLink(WorkKey::new(&work.flow_id, &work.step.id, &work.token)).write_to(&mut metadata);
        metadata.insert(FLOW_DEPTH.into(), depth.into());
        let request = StartFlow {
            flow_id: argyll_model::child_flow_id(
                &work.flow_id,
                &work.step.id,
                &work.token,
                self.inner.config.max_id_length,
            ),
            goals: config.goals.clone(),
            init,
            metadata,
        };
        let plan = self
            .shared_plan(&request.goals, &request.init)
            .await
            .map_err(|e| e.to_string())?;
        // Starting is idempotent: a re-dispatched item finds its child already there, and a
        // child that already settled reports to the parent again.
        let (started, state) = self
            .create_flow(&request, plan, WhenExists::Accept)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(child) = state
            .state
            .as_ref()
            .filter(|child| !started.created && is_settled(child))
        {
            self.notify_parent(child).await;
        }
        Ok(())
    }

    /// A settled child flow completes or fails its parent's work item. Boxed: recording the
    /// parent's result commits another flow transaction, whose after-commit may notify a
    /// grandparent, and a recursive future needs a known type.
    pub(super) fn notify_parent<'a>(
        &'a self,
        child: &'a FlowState,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let Some(ParentLink(item)) = ParentLink::of(child) else {
                return;
            };
            let (parent_id, step_id, token) = (&item.flow_id, &item.step_id, &item.token);
            let report = match self.flow(parent_id).await {
                Ok(Some(parent)) => match parent.plan.steps.get(step_id) {
                    Some(step) => child_report(child, step),
                    None => return,
                },
                _ => return,
            };
            let result = self
                .retrying_store(|| {
                    self.flow_command(parent_id, |tx| match &report {
                        WorkReport::Succeeded(outputs) => {
                            tx.complete_work(step_id, token, outputs.clone())
                        }
                        WorkReport::Failed(error) | WorkReport::Retry(error) => {
                            tx.fail_work(step_id, token, error)
                        }
                    })
                })
                .await;
            match result {
                Ok(()) => self.unpark(&item).await,
                // The item already finished (a report repeated after a re-dispatch).
                Err(EngineError::Work(FlowCommandError::InvalidTransition(_))) => {}
                Err(error) => {
                    tracing::error!(flow_id = %parent_id, %step_id, %error, "child flow result not recorded");
                }
            }
        })
    }
}
/// The parent work item's result from a settled child (`engine.md` §5.12).
fn child_report(child: &FlowState, parent_step: &Step) -> WorkReport {
    if child.status != FlowStatus::Completed {
        let error = if child.error.is_empty() {
            "child flow failed".to_owned()
        } else {
            child.error.clone()
        };
        return WorkReport::Failed(error);
    }
    let declared: Vec<&String> = parent_step.outputs().collect();
    let mut outputs = Args::new();
    if let Some(config) = &parent_step.flow {
        for (child_name, parent_name) in &config.output_map {
            if !declared.contains(&parent_name) {
                continue;
            }
            match child.attribute(child_name) {
                Some(value) => {
                    outputs.insert(parent_name.clone(), value.clone());
                }
                None => return WorkReport::Failed(format!("flow output missing: {child_name}")),
            }
        }
    }
    for name in declared {
        if !outputs.contains_key(name)
            && let Some(value) = child.attribute(name)
        {
            outputs.insert(name.clone(), value.clone());
        }
    }
    WorkReport::Succeeded(outputs)
}
