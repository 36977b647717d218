//! The cross-instance event feed: a Redis stream of committed envelopes, read by every store
//! instance with `XREAD BLOCK` from the last id it saw and fanned out locally.

use std::sync::Arc;
use std::time::Duration;

use argyll_events::EventEnvelope;
use argyll_model::BackoffType;
use argyll_retry::RetryPolicy;
use argyll_store::StoreError;
use fred::prelude::{Builder, Client, ClientLike};
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::RedisConfig;

/// Publishing a committed batch: two more tries, 50 ms then 100 ms apart.
const PUBLISH_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 2,
    backoff_ms: 50,
    max_backoff_ms: 0,
    backoff_type: BackoffType::Linear,
    jitter: 0.0,
};

/// Reading the stream again after a failed read (the client reconnects meanwhile).
const READ_RETRY: RetryPolicy = RetryPolicy {
    max_retries: -1,
    backoff_ms: 200,
    max_backoff_ms: 0,
    backoff_type: BackoffType::Fixed,
    jitter: 0.0,
};

/// Local subscribers may fall this far behind before they see `Lagged`.
const LOCAL_CAPACITY: usize = 16_384;
pub(crate) struct Feed {
    key: String,
    length: i64,
    sender: broadcast::Sender<Arc<EventEnvelope>>,
    reader: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn xadd() -> CustomCommand {
    CustomCommand::new("XADD", ClusterHash::FirstKey, false)
}

impl Feed {
    /// Starts reading the stream at `key` from its current end, on a dedicated connection.
    pub(crate) async fn start(
        builder: Builder,
        config: &RedisConfig,
        key: String,
    ) -> Result<Self, StoreError> {
        let client = builder.build().map_err(crate::errors::store_error)?;
        let addr = config.display_addr();
        match tokio::time::timeout(config.connect_timeout, client.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to Redis at {addr}: {error}"
                )));
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to Redis at {addr}: timed out"
                )));
            }
        }
        let last: Value = client
            .custom(
                CustomCommand::new("XREVRANGE", ClusterHash::FirstKey, false),
                vec![
                    Value::from(key.as_str()),
                    Value::from("+"),
                    Value::from("-"),
                    Value::from("COUNT"),
                    Value::from(1),
                ],
            )
            .await
            .map_err(crate::errors::store_error)?;
        let start = crate::array(last)
            .into_iter()
            .next()
            .and_then(|entry| crate::array(entry).into_iter().next())
            .and_then(Value::into_string)
            .unwrap_or_else(|| "0-0".to_owned());
        let (sender, _) = broadcast::channel(LOCAL_CAPACITY);
        let reader = tokio::spawn(read_loop(client, key.clone(), start, sender.clone()));
        Ok(Feed {
            key,
            length: i64::try_from(config.feed_length.max(1)).unwrap_or(i64::MAX),
            sender,
            reader,
        })
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The approximate length the stream is trimmed to.
    pub(crate) fn length(&self) -> i64 {
        self.length
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<EventEnvelope>> {
        self.sender.subscribe()
    }

    /// Adds one batch of committed envelopes to the stream. The append is already durable, so
    /// a failure here is retried and then logged: subscribers would miss the batch.
    pub(crate) async fn publish(&self, client: &Client, envelopes: &[Arc<EventEnvelope>]) {
        let large = crate::bulky::large_events(envelopes.iter().map(|envelope| &envelope.event));
        let json = match crate::bulky::run(large, || batch_json(envelopes)) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(%error, "event feed: cannot encode a batch");
                return;
            }
        };
        let args = vec![
            Value::from(self.key.as_str()),
            Value::from("MAXLEN"),
            Value::from("~"),
            Value::from(self.length),
            Value::from("*"),
            Value::from("e"),
            Value::from(json),
        ];
        let mut retries = 0;
        loop {
            match client.custom::<Value, Value>(xadd(), args.clone()).await {
                Ok(_) => return,
                Err(_) if PUBLISH_RETRY.should_retry(retries) => {
                    let pause = PUBLISH_RETRY.delay_millis(retries);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    retries += 1;
                }
                Err(error) => {
                    tracing::error!(%error, "event feed: committed events not published");
                    return;
                }
            }
        }
    }
}

/// One feed entry: the batch of envelopes one append committed.
pub(crate) fn batch_json(envelopes: &[Arc<EventEnvelope>]) -> Result<String, StoreError> {
    let batch: Vec<&EventEnvelope> = envelopes.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&batch).map_err(crate::corrupt)
}

async fn read_loop(
    client: Client,
    key: String,
    mut last_id: String,
    sender: broadcast::Sender<Arc<EventEnvelope>>,
) {
    loop {
        let args = vec![
            Value::from("BLOCK"),
            Value::from(1000),
            Value::from("COUNT"),
            Value::from(256),
            Value::from("STREAMS"),
            Value::from(key.as_str()),
            Value::from(last_id.as_str()),
        ];
        let reply = client
            .custom::<Value, Value>(
                CustomCommand::new("XREAD", ClusterHash::Offset(5), true),
                args,
            )
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                tracing::debug!(%error, "event feed: read failed; retrying");
                tokio::time::sleep(Duration::from_millis(READ_RETRY.delay_millis(0))).await;
                continue;
            }
        };
        for (id, batch) in stream_entries(reply) {
            last_id = id;
            let decoded = crate::bulky::run(crate::bulky::large_text(1, batch.len()), || {
                serde_json::from_str::<Vec<EventEnvelope>>(&batch)
            });
            match decoded {
                Ok(envelopes) => {
                    for envelope in envelopes {
                        // No subscribers is fine: nobody is listening right now.
                        let _ = sender.send(Arc::new(envelope));
                    }
                }
                Err(error) => tracing::error!(%error, %last_id, "event feed: undecodable entry"),
            }
        }
    }
}

/// `(id, batch json)` of every entry in an `XREAD` reply (null when the block timed out).
fn stream_entries(reply: Value) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for stream in crate::array(reply) {
        let mut parts = crate::array(stream).into_iter();
        let _key = parts.next();
        for entry in parts.next().map(crate::array).unwrap_or_default() {
            let mut fields = crate::array(entry).into_iter();
            let Some(id) = fields.next().and_then(Value::into_string) else {
                continue;
            };
            let values: Vec<Value> = fields.next().map(crate::array).unwrap_or_default();
            let batch = values
                .chunks(2)
                .find(|pair| pair.first().and_then(Value::as_str).as_deref() == Some("e"))
                .and_then(|pair| pair.get(1))
                .and_then(|value| value.as_str().map(|s| s.to_string()));
            if let Some(batch) = batch {
                entries.push((id, batch));
            }
        }
    }
    entries
}
