//! The console's reads of the public HTTP API: typed, time-limited, and read only up to a
//! size limit (a page never holds more than that in memory for one answer).

use std::collections::BTreeMap;

use argyll_model::{HealthState, Step};
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
}

/// A client of the public API.
#[derive(Debug)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(config: &ConsoleConfig) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(config.api_timeout)
                .build()
                .unwrap_or_default(),
            base: config.api_url.trim_end_matches('/').to_owned(),
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

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: reqwest::Error| ApiError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let mut response = self.client.get(&url).send().await.map_err(unreachable)?;
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
