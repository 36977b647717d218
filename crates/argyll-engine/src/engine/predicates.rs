//! Predicates that need more than the quick budget (decision 11, once per step): evaluated on
//! the blocking pool under their full limits, outside the flow transaction that found the step
//! ready, then recorded by a command of their own. The step waits, pending, meanwhile; an
//! evaluation already running here is not started twice.

use std::collections::HashSet;

use argyll_model::{Args, FlowState};
use argyll_store::Store;
use parking_lot::Mutex;

use super::Engine;
use super::services::predicate_failure;
use crate::runner::script_arg_names;

/// The (flow, step) predicates being evaluated by this instance.
#[derive(Default)]
pub(super) struct SlowPredicates {
    running: Mutex<HashSet<(String, String)>>,
}

impl<S: Store> Engine<S> {
    /// Evaluates the predicate of `step_id` in `flow` in the background and records the
    /// verdict.
    pub(super) fn evaluate_predicate_later(&self, flow: &FlowState, step_id: String, inputs: Args) {
        let Some(step) = flow.plan.steps.get(&step_id).cloned() else {
            return;
        };
        let Some(predicate) = step.predicate.clone() else {
            return;
        };
        let key = (flow.id.clone(), step_id);
        if !self
            .inner
            .slow_predicates
            .running
            .lock()
            .insert(key.clone())
        {
            return;
        }
        self.spawn_tracked(|engine| async move {
            let scripts = engine.inner.services.scripts.clone();
            let verdict = scripts
                .evaluate_predicate(
                    predicate.language.as_str(),
                    &predicate.script,
                    &script_arg_names(&step),
                    inputs,
                )
                .await
                .map_err(predicate_failure);
            let (flow_id, step_id) = (&key.0, &key.1);
            let recorded = engine
                .retrying_store(|| {
                    engine.flow_command(flow_id, |tx| tx.decide_predicate(step_id, verdict.clone()))
                })
                .await;
            if let Err(error) = recorded {
                tracing::error!(%flow_id, %step_id, %error, "predicate verdict not recorded");
            }
            engine.inner.slow_predicates.running.lock().remove(&key);
        });
    }
}
