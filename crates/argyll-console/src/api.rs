//! The console's reads of the public HTTP API: typed, time-limited, and read only up to a
//! size limit (a page never holds more than that in memory for one answer).

use std::collections::BTreeMap;

use argyll_model::{ExecutionPlan, FlowState, HealthState, Step};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::ConsoleConfig;

/// The largest API answer a page reads.
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Why the console could not read what a page shows.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API could not be reached or did not answer in time.
    #[error("the API at {url} could not be read: {reason}")]
    Unreachable {
        /// The URL read.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The API answered with an error status.
    #[error("the API answered {status} to {url}: {message}")]
    Status {
        /// The URL read.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error message of the answer (or its start).
        message: String,
    },
    /// The answer was larger than the console reads.
    #[error("the API's answer to {url} is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge {
        /// The URL read.
        url: String,
    },
    /// The answer was not the JSON expected.
    #[error("the API's answer to {url} is not what the console expects: {reason}")]
    Unexpected {
        /// The URL read.
        url: String,
        /// The decoding error.
        reason: String,
    },
}

impl ApiError {
    /// What the API said (its error message), or why it could not be read.
    pub fn message(&self) -> String {
        match self {
            ApiError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The HTTP status of the API's answer, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `GET /engine/step`.
#[derive(Debug, Deserialize)]
struct StepList {
    #[serde(default)]
    steps: Option<Vec<Step>>,
}

/// `GET /engine/health`.
#[derive(Debug, Deserialize)]
struct HealthList {
    #[serde(default)]
    health: Option<BTreeMap<String, HealthState>>,
}

/// `GET /engine/info`: what the engine page shows about the instance.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct EngineInfo {
    /// The server's version.
    #[serde(default)]
    pub version: String,
    /// The store in use (`local`, `memory`, `redis`).
    #[serde(default)]
    pub store: String,
    /// The instance's id.
    #[serde(default)]
    pub instance_id: String,
    /// The longest id (child flow ids longer than this are hashed).
    #[serde(default)]
    pub max_id_length: usize,
}

/// One flow of `GET /engine/flow`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct FlowSummary {
    /// The flow's id.
    pub id: String,
    /// Its digest.
    pub digest: Digest,
}

/// A flow's digest as the list gives it.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Digest {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub created_at: Option<argyll_model::Timestamp>,
    #[serde(default)]
    pub completed_at: Option<argyll_model::Timestamp>,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub goals: Vec<String>,
}

/// A page of `GET /engine/flow`.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct FlowList {
    #[serde(default)]
    pub flows: Vec<FlowSummary>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// What the flows page asks `GET /engine/flow` for.
#[derive(Clone, Debug, Default)]
pub(crate) struct FlowFilter {
    /// `active`, `completed`, `failed`, or all when empty.
    pub status: String,
    /// Only ids starting with this.
    pub prefix: String,
    /// The page after this cursor.
    pub cursor: String,
    /// Flows per page.
    pub limit: usize,
}

/// A page of `GET /engine/flow/{id}/events`.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct EventPage {
    /// The events as the API gives them (envelopes).
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
    /// Whether they were read from the archive.
    #[serde(default)]
    pub archived: bool,
    /// The first sequence of the next page, when there is one.
    #[serde(default)]
    pub next_from: Option<u64>,
}

/// A client of the public API.
#[derive(Debug)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    /// The API's id length limit, read once: it is the instance's configuration.
    max_id_length: std::sync::OnceLock<usize>,
}

impl Api {
    pub(crate) fn new(config: &ConsoleConfig) -> Api {
        Api {
            // Loopback reads must not go through an HTTP proxy from the environment.
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(config.api_timeout)
                .build()
                .unwrap_or_default(),
            base: config.api_url.trim_end_matches('/').to_owned(),
            max_id_length: std::sync::OnceLock::new(),
        }
    }

    /// Every registered step, sorted by id.
    pub(crate) async fn steps(&self) -> Result<Vec<Step>, ApiError> {
        let mut steps = self
            .get::<StepList>("/engine/step")
            .await?
            .steps
            .unwrap_or_default();
        steps.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(steps)
    }

    /// Health by step id.
    pub(crate) async fn health(&self) -> Result<BTreeMap<String, HealthState>, ApiError> {
        Ok(self
            .get::<HealthList>("/engine/health")
            .await?
            .health
            .unwrap_or_default())
    }

    /// The instance's version and store.
    pub(crate) async fn info(&self) -> Result<EngineInfo, ApiError> {
        self.get("/engine/info").await
    }

    /// A page of flows, newest first.
    pub(crate) async fn flows(&self, filter: &FlowFilter) -> Result<FlowList, ApiError> {
        let mut path = format!("/engine/flow?sort=recent&limit={}", filter.limit.max(1));
        for (name, value) in [
            ("status", &filter.status),
            ("prefix", &filter.prefix),
            ("cursor", &filter.cursor),
        ] {
            if !value.is_empty() {
                path.push_str(&format!("&{name}={}", query_value(value)));
            }
        }
        self.get(&path).await
    }

    /// A flow's state; `None` when the API does not know it (404).
    pub(crate) async fn flow(&self, id: &str) -> Result<Option<FlowState>, ApiError> {
        self.get_if_found(&format!("/engine/flow/{}", path_segment(id)))
            .await
    }

    /// One registered step; `None` when there is none with that id.
    pub(crate) async fn step(&self, id: &str) -> Result<Option<Step>, ApiError> {
        self.get_if_found(&format!("/engine/step/{}", path_segment(id)))
            .await
    }

    /// The longest id the API accepts (child flow ids beyond it are hashed), read once.
    pub(crate) async fn max_id_length(&self) -> Result<usize, ApiError> {
        if let Some(&length) = self.max_id_length.get() {
            return Ok(length);
        }
        let length = self.info().await?.max_id_length;
        Ok(*self.max_id_length.get_or_init(|| length))
    }

    /// The plan for `goals` (`POST /engine/plan`).
    pub(crate) async fn plan(&self, goals: &[String]) -> Result<ExecutionPlan, ApiError> {
        self.send(
            self.client
                .post(format!("{}/engine/plan", self.base))
                .json(&serde_json::json!({ "goals": goals })),
            "/engine/plan",
        )
        .await
    }

    /// Up to `limit` of a flow's events from sequence `from`.
    pub(crate) async fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<EventPage, ApiError> {
        self.get(&format!(
            "/engine/flow/{}/events?from={from}&limit={limit}",
            path_segment(id)
        ))
        .await
    }

    /// `GET path`, with a 404 answer as `None`.
    async fn get_if_found<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ApiError> {
        match self.get(path).await {
            Ok(value) => Ok(Some(value)),
            Err(ApiError::Status { status: 404, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.send(self.client.get(format!("{}{path}", self.base)), path)
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: reqwest::Error| ApiError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ApiError::TooLarge { url });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(ApiError::Status {
                url,
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::Unexpected {
            url,
            reason: e.to_string(),
        })
    }
}

/// `text` as one URL path segment (percent-encoded: ids may hold `/`, `?`, `#`, spaces...).
pub(crate) fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b':') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `text` as a query parameter value (percent-encoded).
pub(crate) fn query_value(text: &str) -> String {
    path_segment(text).replace(':', "%3A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_as_one_path_segment() {
        assert_eq!(path_segment("plain-id_1.x~"), "plain-id_1.x~");
        assert_eq!(path_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(path_segment("parent:step:token"), "parent:step:token");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
