//! `GET /engine/ws`: the event stream of `api.md` §4. Events come from the store's feed, so a
//! client on any instance sees the events of every instance (decision 21).

use std::collections::BTreeSet;

use argyll_events::{AggregateId, EventEnvelope};
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
