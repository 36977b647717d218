//! `GET /engine/ws`: the event stream of `api.md` §4. Events come from the store's feed, so a
//! client on any instance sees the events of every instance (decision 21).
//!
//! The engine aggregate no longer records `flow_activated` / `flow_deactivated` (flows are
//! indexed beside their logs), but the original's web UI reloads its flow list on them: they
//! are derived here from each flow's `flow_started` and terminal event and sent to
//! engine-aggregate subscribers (decision 26), from every instance's feed like the rest.
//!
//! Bounds (decision 25): at most `max_clients` connections (`WS_MAX_CLIENTS`; one more gets
//! 503); each client has its own queue of `send_queue` messages, written by a task of its own
//! with a deadline per message, so a slow reader holds up nobody — when its queue is full it
//! is disconnected with a close frame saying why; small socket buffers (client messages are
//! tiny) keep an idle client to a few kilobytes; a client that stops answering pings is
//! dropped.

use std::collections::BTreeSet;
use std::time::Duration;

use argyll_events::{AggregateId, Event, EventEnvelope, FlowEvent};
use argyll_store::Store;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::{ApiError, AppState};

/// Client messages are small subscription requests; anything larger closes the connection.
const MAX_CLIENT_MESSAGE: usize = 4096;
/// How long writing one message to a client may take (the original's write deadline).
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// How often the server pings; a client silent (no message, no pong) for three of these is
/// gone.
const PING_EVERY: Duration = Duration::from_secs(30);

/// Bounds on WebSocket clients.
#[derive(Clone, Copy, Debug)]
pub struct WsLimits {
    /// Connections at once (`WS_MAX_CLIENTS`).
    pub max_clients: usize,
    /// Messages waiting to be written to one client before it is disconnected as too slow
    /// (`WS_SEND_QUEUE`).
    pub send_queue: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_clients: 1000,
            send_queue: 1024,
        }
    }
}

pub(crate) async fn upgrade<S: Store>(
    State(app): State<AppState<S>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let max = app.config.websocket.max_clients;
    let Ok(permit) = app.ws_clients.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many WebSocket clients: at most {max} at once (WS_MAX_CLIENTS)"),
        )
        .into_response();
    };
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(MAX_CLIENT_MESSAGE)
        .write_buffer_size(0)
        .on_upgrade(move |socket| stream(app, socket, permit))
}

/// Why the server closes a connection.
fn closing(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Writes the queued messages to the client, each within [`WRITE_DEADLINE`]; on `close`, sends
/// that close frame and ends. Ends when the client cannot keep up or is gone.
async fn write_queued(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Message>,
    mut close: oneshot::Receiver<Message>,
) {
    loop {
        let message = tokio::select! {
            biased;
            frame = &mut close => {
                if let Ok(frame) = frame {
                    let _ = tokio::time::timeout(WRITE_DEADLINE, sink.send(frame)).await;
                }
                return;
            }
            message = queue.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        match tokio::time::timeout(WRITE_DEADLINE, sink.send(message)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
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

/// One client: reads its subscriptions, filters the feed for it, and queues what it should
/// get for its writer task. Everything it holds is released when it returns.
async fn stream<S: Store>(app: AppState<S>, socket: WebSocket, _client: OwnedSemaphorePermit) {
    let send_queue = app.config.websocket.send_queue.max(1);
    let (sink, mut incoming) = socket.split();
    let (queue, queued) = mpsc::channel(send_queue);
    let (close, close_requested) = oneshot::channel();
    let writer = tokio::spawn(write_queued(sink, queued, close_requested));
    let mut feed = app.engine.store().subscribe();
    let mut shutting_down = app.closing.clone();
    let mut filter = Filter::default();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut silent_pings = 0u32;
    // Queues a message; false (and the connection closes) when the client is too slow.
    let push = |message: Message| match queue.try_send(message) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(closing(
            close_code::POLICY,
            &format!("client too slow: more than {send_queue} messages waiting (WS_SEND_QUEUE)"),
        )),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Message::Close(None)),
    };
    let reason = loop {
        let outcome = tokio::select! {
            _ = shutting_down.changed() => Err(closing(close_code::AWAY, "server shutting down")),
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    silent_pings = 0;
                    match subscribe(&app, &mut filter, text.as_str()).await {
                        Some(reply) => push(Message::Text(reply.into())),
                        None => Ok(()),
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {
                    silent_pings = 0;
                    Ok(())
                }
            },
            _ = ping.tick() => {
                silent_pings += 1;
                if silent_pings > 3 {
                    Err(closing(close_code::POLICY, "no answer to pings"))
                } else {
                    push(Message::Ping(Default::default()))
                }
            }
            event = feed.recv() => match event {
                Ok(envelope) => {
                    let mut pushed = Ok(());
                    if filter.matches(&envelope)
                        && let Some(text) = wire_event(&envelope)
                    {
                        pushed = push(Message::Text(text.into()));
                    }
                    if pushed.is_ok()
                        && let Some((kind, data)) = engine_notice(&envelope)
                        && filter.matches_engine_notice(kind)
                        && let Some(text) = wire_notice(&envelope, kind, data, filter.from_sequence)
                    {
                        pushed = push(Message::Text(text.into()));
                    }
                    pushed
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "websocket client fell behind the event feed; disconnected");
                    Err(closing(close_code::POLICY, "client fell behind the event feed"))
                }
                Err(RecvError::Closed) => Err(Message::Close(None)),
            },
        };
        if let Err(reason) = outcome {
            break Some(reason);
        }
    };
    if let Some(reason) = reason {
        let _ = close.send(reason);
    }
    drop(queue);
    let _ = writer.await;
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
