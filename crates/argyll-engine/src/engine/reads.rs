//! Reading flows: one flow's state (never older than the store's, decision 21) and pages of
//! the flow index.

use argyll_events::AggregateId;
use argyll_model::FlowState;
use argyll_store::{FlowPage, FlowQuery, Store};

use super::{Engine, EngineError};
use crate::aggregate::{Current, load_current};

impl<S: Store> Engine<S> {
    /// A flow's current state (never older than the store's).
    pub async fn flow(&self, flow_id: &str) -> Result<Option<FlowState>, EngineError> {
        Ok(self.flow_with_sequence(flow_id).await?.state)
    }

    /// A flow's state and the sequence its next event gets (the WebSocket snapshot).
    pub async fn flow_with_sequence(
        &self,
        flow_id: &str,
    ) -> Result<Current<Option<FlowState>>, EngineError> {
        Ok(load_current(
            &self.inner.store,
            self.inner.flows.as_ref(),
            &AggregateId::Flow(flow_id.to_owned()),
        )
        .await?)
    }

    /// A page of the flow index.
    pub async fn list_flows(&self, query: &FlowQuery) -> Result<FlowPage, EngineError> {
        Ok(self.inner.store.list_flows(query).await?)
    }
}
