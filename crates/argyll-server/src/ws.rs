//! `GET /engine/ws`: the event stream of `api.md` §4. Events come from the store's feed, so a
//! client on any instance sees the events of every instance (decision 21).
//!
//! The engine aggregate no longer records `flow_activated` / `flow_deactivated` (flows are
//! indexed beside their logs), but the original's web UI reloads its flow list on them: they
//! are derived here from each flow's `flow_started` and terminal event and sent to
//! engine-aggregate subscribers (decision 26), from every instance's feed like the rest.

use std::collections::BTreeSet;

use argyll_events::{AggregateId, Event, EventEnvelope, FlowEvent};
use argyll_store::Store;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;

/// Client messages are small subscription requests; anything larger closes the connection.
const MAX_CLIENT_MESSAGE: usize = 4096;

pub(crate) async fn upgrade<S: Store>(
    State(app): State<AppState<S>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| stream(app, socket))
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<SubscribeData>,
}

#[derive(Deserialize, Default)]
struct SubscribeData {
    #[serde(default)]
    aggregate_id: Option<Vec<String>>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
}

/// One connection's filter: aggregate AND types; neither matches nothing.
#[derive(Default)]
struct Filter {
    aggregate: Option<AggregateId>,
    types: Option<BTreeSet<String>>,
    /// Events of the subscribed aggregate below this sequence are already in the snapshot.
    from_sequence: u64,
}

impl Filter {
    /// Whether a notice of the engine aggregate (not a stored event, so never stale) passes.
    fn matches_engine_notice(&self, event_type: &str) -> bool {
        if self.aggregate.is_none() && self.types.is_none() {
            return false;
        }
        self.aggregate
            .as_ref()
            .is_none_or(|aggregate| *aggregate == AggregateId::Engine)
            && self
                .types
                .as_ref()
                .is_none_or(|types| types.contains(event_type))
    }

    fn matches(&self, envelope: &EventEnvelope) -> bool {
        if self.aggregate.is_none() && self.types.is_none() {
            return false;
        }
        if let Some(aggregate) = &self.aggregate
            && (&envelope.aggregate_id != aggregate || envelope.sequence < self.from_sequence)
        {
            return false;
        }
        self.types
            .as_ref()
            .is_none_or(|types| types.contains(envelope.event.event_type()))
    }
}

/// The original's engine-aggregate notice for a flow event: `flow_activated` `{flow_id,
/// parent_flow_id?}` when a flow starts, `flow_deactivated` `{flow_id}` when it ends.
fn engine_notice(envelope: &EventEnvelope) -> Option<(&'static str, Value)> {
    let Event::Flow(event) = &envelope.event else {
        return None;
    };
    match event {
        FlowEvent::FlowStarted(started) => {
            let mut data = serde_json::Map::new();
            data.insert("flow_id".into(), Value::from(started.flow_id.as_str()));
            if let Some(parent) = started
                .metadata
                .get("parent_flow_id")
                .and_then(Value::as_str)
                .filter(|parent| !parent.is_empty())
            {
                data.insert("parent_flow_id".into(), Value::from(parent));
            }
            Some(("flow_activated", Value::Object(data)))
        }
        FlowEvent::FlowCompleted(_) | FlowEvent::FlowFailed(_) => {
            Some(("flow_deactivated", json!({"flow_id": event.flow_id()})))
        }
        _ => None,
    }
}

/// A notice in the shape of a stored event of the engine aggregate. Its `sequence` is the one
/// the connection's snapshot gave (no engine event was stored for it).
fn wire_notice(envelope: &EventEnvelope, kind: &str, data: Value, sequence: u64) -> Option<String> {
    let message = json!({
        "type": kind,
        "data": data,
        "id": AggregateId::Engine,
        "timestamp": envelope.timestamp.unix_millis().unwrap_or(0),
        "sequence": sequence,
    });
    serde_json::to_string(&message).ok()
}

fn wire_event(envelope: &EventEnvelope) -> Option<String> {
    let stored = serde_json::to_value(envelope).ok()?;
    let message = json!({
        "type": envelope.event.event_type(),
        "data": stored.get("data").cloned().unwrap_or(Value::Null),
        "id": envelope.aggregate_id,
        "timestamp": envelope.timestamp.unix_millis().unwrap_or(0),
        "sequence": envelope.sequence,
    });
    serde_json::to_string(&message).ok()
}

async fn stream<S: Store>(app: AppState<S>, mut socket: WebSocket) {
    let mut feed = app.engine.store().subscribe();
    let mut closing = app.closing.clone();
    let mut filter = Filter::default();
    loop {
        tokio::select! {
            _ = closing.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = subscribe(&app, &mut filter, text.as_str()).await
                        && socket.send(Message::Text(reply.into())).await.is_err()
                    {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            event = feed.recv() => match event {
                Ok(envelope) => {
                    if filter.matches(&envelope)
                        && let Some(text) = wire_event(&envelope)
                        && socket.send(Message::Text(text.into())).await.is_err()
                    {
                        return;
                    }
                    if let Some((kind, data)) = engine_notice(&envelope)
                        && filter.matches_engine_notice(kind)
                        && let Some(text) = wire_notice(&envelope, kind, data, filter.from_sequence)
                        && socket.send(Message::Text(text.into())).await.is_err()
                    {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "websocket client fell behind the event feed");
                }
                Err(RecvError::Closed) => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
        }
    }
}

/// Installs a subscription; returns the `subscribed` snapshot message when an aggregate was
/// named and exists. Unparsable or unknown messages are ignored, as in the original.
async fn subscribe<S: Store>(app: &AppState<S>, filter: &mut Filter, text: &str) -> Option<String> {
    let message: ClientMessage = serde_json::from_str(text).ok()?;
    if message.kind != "subscribe" {
        return None;
    }
    let data = message.data.unwrap_or_default();
    let aggregate = data
        .aggregate_id
        .filter(|parts| !parts.is_empty())
        .and_then(|parts| AggregateId::from_parts(&parts));
    filter.aggregate = aggregate.clone();
    filter.types = data.event_types.map(|types| types.into_iter().collect());
    let aggregate = aggregate?;
    let (state, sequence) = match &aggregate {
        AggregateId::Engine => {
            let catalog = app.engine.catalog().await.ok()?;
            let state = app.engine.engine_state().await.ok()?;
            (serde_json::to_value(state).ok()?, catalog.next_sequence)
        }
        AggregateId::Flow(flow_id) => {
            let current = app.engine.flow_with_sequence(flow_id).await.ok()?;
            let state = current.state?;
            (serde_json::to_value(state).ok()?, current.next_sequence)
        }
    };
    filter.from_sequence = sequence;
    let reply = json!({
        "type": "subscribed",
        "id": aggregate,
        "data": state,
        "sequence": sequence,
    });
    serde_json::to_string(&reply).ok()
}
