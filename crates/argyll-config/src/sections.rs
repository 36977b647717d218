//! The settings, one serde struct per section, each with its defaults in one place (its
//! `Default`). Field names are the settings' names in lower case — the environment variables
//! and the keys of `argyll.toml` — and each field parses its value with the adapter of its kind.

use std::time::Duration;

use argyll_model::BackoffType;
use serde::Deserialize;

use crate::values::de;

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Normal operation.
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// The name, as tracing filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line.
    Json,
}

/// The HTTP API and its bounds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Listen address (`ENGINE_HOST`).
    #[serde(rename = "engine_host", deserialize_with = "de::text")]
    pub host: String,
    /// Listen port (`ENGINE_PORT`).
    #[serde(rename = "engine_port", deserialize_with = "de::port")]
    pub port: u16,
    /// Base of webhook URLs (`WEBHOOK_BASE_URL`; `None`: `http://localhost:<port>`).
    #[serde(rename = "webhook_base_url", deserialize_with = "de::some_text")]
    pub webhook_base_url: Option<String>,
    /// Largest request body (`ENGINE_MAX_REQUEST_BYTES`).
    #[serde(rename = "engine_max_request_bytes", deserialize_with = "de::count")]
    pub max_request_bytes: usize,
    /// Graceful shutdown limit (`ENGINE_SHUTDOWN_TIMEOUT`).
    #[serde(rename = "engine_shutdown_timeout", deserialize_with = "de::duration")]
    pub shutdown_timeout: Duration,
    /// Connections served at once (`ENGINE_MAX_CONNECTIONS`; `None`: half the open-file
    /// limit).
    #[serde(rename = "engine_max_connections", deserialize_with = "de::some_count")]
    pub max_connections: Option<usize>,
    /// Time for request headers and idle keep-alive connections (`ENGINE_HEADER_TIMEOUT`).
    #[serde(
        rename = "engine_header_timeout",
        deserialize_with = "de::positive_duration"
    )]
    pub header_timeout: Duration,
    /// Time for a request body (`ENGINE_BODY_TIMEOUT`).
    #[serde(
        rename = "engine_body_timeout",
        deserialize_with = "de::positive_duration"
    )]
    pub body_timeout: Duration,
    /// WebSocket clients at once (`WS_MAX_CLIENTS`).
    #[serde(rename = "ws_max_clients", deserialize_with = "de::count")]
    pub ws_max_clients: usize,
    /// Events queued per WebSocket client (`WS_SEND_QUEUE`).
    #[serde(rename = "ws_send_queue", deserialize_with = "de::count")]
    pub ws_send_queue: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            host: "0.0.0.0".into(),
            port: 8080,
            webhook_base_url: None,
            max_request_bytes: 10 << 20,
            shutdown_timeout: Duration::from_secs(10),
            max_connections: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            ws_max_clients: 1000,
            ws_send_queue: 1024,
        }
    }
}

impl ServerSettings {
    /// The base of webhook URLs: as set, or `http://localhost:<port>`.
    pub fn webhook_base_url(&self) -> String {
        self.webhook_base_url
            .clone()
            .unwrap_or_else(|| format!("http://localhost:{}", self.port))
    }
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// Verbosity (`ENGINE_LOGGING_LEVEL`).
    #[serde(rename = "engine_logging_level", deserialize_with = "de::log_level")]
    pub level: LogLevel,
    /// Format (`ENGINE_LOG_FORMAT`).
    #[serde(rename = "engine_log_format", deserialize_with = "de::log_format")]
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: LogLevel::Info,
            format: LogFormat::Human,
        }
    }
}

/// The engine: steps, flows, caches, leases, scripts and their bounds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// Default HTTP step timeout (`STEP_TIMEOUT`).
    #[serde(rename = "step_timeout", deserialize_with = "de::step_timeout")]
    pub step_timeout: Duration,
    /// Largest step response (`STEP_MAX_RESPONSE_BYTES`).
    #[serde(rename = "step_max_response_bytes", deserialize_with = "de::count")]
    pub step_max_response_bytes: usize,
    /// Largest flow state (`FLOW_MAX_STATE_BYTES`).
    #[serde(rename = "flow_max_state_bytes", deserialize_with = "de::count")]
    pub flow_max_state_bytes: usize,
    /// Name in work leases (`ENGINE_INSTANCE_ID`; `None`: random).
    #[serde(rename = "engine_instance_id", deserialize_with = "de::some_text")]
    pub instance_id: Option<String>,
    /// Lease on in-flight work (`WORK_LEASE_TIMEOUT`).
    #[serde(
        rename = "work_lease_timeout",
        deserialize_with = "de::positive_duration"
    )]
    pub work_lease_timeout: Duration,
    /// Memoization cache entries (`MEMO_CACHE_SIZE`).
    #[serde(rename = "memo_cache_size", deserialize_with = "de::count")]
    pub memo_cache_size: usize,
    /// Cached flow states (`FLOW_CACHE_SIZE`).
    #[serde(rename = "flow_cache_size", deserialize_with = "de::count")]
    pub flow_cache_size: usize,
    /// Bytes of cached flow states (`FLOW_CACHE_MAX_BYTES`).
    #[serde(rename = "flow_cache_max_bytes", deserialize_with = "de::count")]
    pub flow_cache_max_bytes: usize,
    /// Script memory limit in bytes (`SCRIPT_MEMORY_LIMIT_MB`).
    #[serde(rename = "script_memory_limit_mb", deserialize_with = "de::megabytes")]
    pub script_memory_bytes: usize,
    /// Script step limit (`SCRIPT_STEP_LIMIT`).
    #[serde(rename = "script_step_limit", deserialize_with = "de::steps")]
    pub script_step_limit: u64,
    /// Script time limit (`SCRIPT_TIMEOUT`).
    #[serde(rename = "script_timeout", deserialize_with = "de::positive_duration")]
    pub script_timeout: Duration,
    /// Longest id or name (`MAX_ID_LENGTH`).
    #[serde(rename = "max_id_length", deserialize_with = "de::count")]
    pub max_id_length: usize,
    /// Deepest child-flow nesting (`FLOW_MAX_DEPTH`).
    #[serde(rename = "flow_max_depth", deserialize_with = "de::count")]
    pub flow_max_depth: usize,
    /// Finished flows shown by `GET /engine` (`ENGINE_STATE_MAX_FLOWS`).
    #[serde(rename = "engine_state_max_flows", deserialize_with = "de::whole")]
    pub engine_state_max_flows: usize,
    /// Most work items per step (`MAX_WORK_ITEMS`).
    #[serde(rename = "max_work_items", deserialize_with = "de::count")]
    pub max_work_items: usize,
    /// How long finished flows are kept (`FLOW_RETENTION`; `None`: forever).
    #[serde(rename = "flow_retention", deserialize_with = "de::some_retention")]
    pub flow_retention: Option<Duration>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            step_timeout: Duration::from_secs(30),
            step_max_response_bytes: 4 << 20,
            flow_max_state_bytes: 64 << 20,
            instance_id: None,
            work_lease_timeout: Duration::from_secs(5),
            memo_cache_size: 4096,
            flow_cache_size: 4096,
            flow_cache_max_bytes: 256 << 20,
            script_memory_bytes: 64 << 20,
            script_step_limit: 100_000_000,
            script_timeout: Duration::from_secs(1),
            max_id_length: 256,
            flow_max_depth: 16,
            engine_state_max_flows: 1000,
            max_work_items: 100_000,
            flow_retention: None,
        }
    }
}

/// The retry policy of steps without a `work_config`, and the floor of every retry delay.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct RetrySettings {
    /// Retries (negative: unlimited; `RETRY_MAX_RETRIES`).
    #[serde(rename = "retry_max_retries", deserialize_with = "de::signed")]
    pub max_retries: i64,
    /// Base backoff in milliseconds (`RETRY_BACKOFF_MS`).
    #[serde(rename = "retry_backoff_ms", deserialize_with = "de::millis")]
    pub backoff_ms: u64,
    /// Backoff cap in milliseconds, 0 for none (`RETRY_MAX_BACKOFF_MS`).
    #[serde(rename = "retry_max_backoff_ms", deserialize_with = "de::millis")]
    pub max_backoff_ms: u64,
    /// How delays grow (`RETRY_BACKOFF_TYPE`).
    #[serde(rename = "retry_backoff_type", deserialize_with = "de::backoff")]
    pub backoff_type: BackoffType,
    /// Shortest delay before any retry in milliseconds (`RETRY_MIN_BACKOFF_MS`).
    #[serde(rename = "retry_min_backoff_ms", deserialize_with = "de::millis")]
    pub min_backoff_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 10,
            backoff_ms: 1000,
            max_backoff_ms: 60_000,
            backoff_type: BackoffType::Exponential,
            min_backoff_ms: 20,
        }
    }
}

/// A Redis/Valkey connection: the `ENGINE_REDIS_*` or `FLOW_REDIS_*` settings, read without
/// their prefix.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct RedisKeys {
    #[serde(deserialize_with = "de::some_redis_addrs")]
    pub(crate) addr: Option<String>,
    #[serde(deserialize_with = "de::some_text")]
    pub(crate) password: Option<String>,
    #[serde(deserialize_with = "de::database")]
    pub(crate) db: u32,
    #[serde(deserialize_with = "de::some_text")]
    pub(crate) prefix: Option<String>,
    #[serde(deserialize_with = "de::pool_size")]
    pub(crate) pool_size: usize,
}

impl Default for RedisKeys {
    fn default() -> Self {
        RedisKeys {
            addr: None,
            password: None,
            db: 0,
            prefix: None,
            pool_size: 1,
        }
    }
}

/// A Redis/Valkey connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port`, or a comma-separated list of Redis Cluster nodes.
    pub addr: String,
    /// Password, if any.
    pub password: Option<String>,
    /// Database number.
    pub db: u32,
    /// Key prefix.
    pub prefix: String,
    /// Connections in the client's pool.
    pub pool_size: usize,
}

/// Archiving to a bucket (the `ARCHIVE_*` settings).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct ArchiveKeys {
    #[serde(rename = "archive_bucket_url", deserialize_with = "de::some_text")]
    pub(crate) bucket_url: Option<String>,
    #[serde(rename = "archive_prefix", deserialize_with = "de::text")]
    pub(crate) prefix: String,
    #[serde(rename = "archive_memory_percent", deserialize_with = "de::percent")]
    pub(crate) memory_percent: f64,
    #[serde(rename = "archive_max_age", deserialize_with = "de::duration")]
    pub(crate) max_age: Duration,
    #[serde(
        rename = "archive_memory_check_interval",
        deserialize_with = "de::positive_duration"
    )]
    pub(crate) memory_check_interval: Duration,
    #[serde(
        rename = "archive_sweep_interval",
        deserialize_with = "de::positive_duration"
    )]
    pub(crate) sweep_interval: Duration,
    #[serde(
        rename = "archive_lease_timeout",
        deserialize_with = "de::positive_duration"
    )]
    pub(crate) lease_timeout: Duration,
    #[serde(rename = "archive_pressure_batch", deserialize_with = "de::count")]
    pub(crate) pressure_batch: usize,
    #[serde(rename = "archive_sweep_batch", deserialize_with = "de::count")]
    pub(crate) sweep_batch: usize,
    #[serde(
        rename = "archive_poll_interval",
        deserialize_with = "de::positive_duration"
    )]
    pub(crate) poll_interval: Duration,
}

impl Default for ArchiveKeys {
    fn default() -> Self {
        ArchiveKeys {
            bucket_url: None,
            prefix: "archived/".into(),
            memory_percent: 80.0,
            max_age: Duration::from_secs(86_400),
            memory_check_interval: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(3_600),
            lease_timeout: Duration::from_secs(900),
            pressure_batch: 10,
            sweep_batch: 100,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Archiving to a bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchiveSettings {
    /// `s3://bucket` or another object-store URL.
    pub bucket_url: String,
    /// Key prefix.
    pub prefix: String,
    /// Memory use (percent) that triggers early archiving.
    pub memory_percent: f64,
    /// Age of finished flows to archive.
    pub max_age: Duration,
    /// Memory check interval.
    pub memory_check_interval: Duration,
    /// Age sweep interval.
    pub sweep_interval: Duration,
    /// Lease of an archive job.
    pub lease_timeout: Duration,
    /// Flows per pressure event.
    pub pressure_batch: usize,
    /// Flows per sweep.
    pub sweep_batch: usize,
    /// Poll interval.
    pub poll_interval: Duration,
}

impl ArchiveKeys {
    /// The archiving settings, when a bucket is configured.
    pub(crate) fn settings(self) -> Option<ArchiveSettings> {
        Some(ArchiveSettings {
            bucket_url: self.bucket_url?,
            prefix: self.prefix,
            memory_percent: self.memory_percent,
            max_age: self.max_age,
            memory_check_interval: self.memory_check_interval,
            sweep_interval: self.sweep_interval,
            lease_timeout: self.lease_timeout,
            pressure_batch: self.pressure_batch,
            sweep_batch: self.sweep_batch,
            poll_interval: self.poll_interval,
        })
    }
}

/// Which store the server uses (`ARGYLL_STORE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// Redis when an address is set, else the local store (the default).
    Auto,
    /// The durable local store in `ARGYLL_DATA_DIR`.
    Local,
    /// In memory: nothing is kept when the process exits.
    Memory,
    /// Redis/Valkey (needs `ENGINE_REDIS_ADDR` or `FLOW_REDIS_ADDR`).
    Redis,
}

/// When the local store syncs its journal (`LOCAL_STORE_SYNC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalSync {
    /// Before acknowledging a write (group commit).
    Always,
    /// Every `LOCAL_STORE_SYNC_INTERVAL`.
    Interval,
    /// Never (the operating system decides).
    Never,
}

/// The store choice and the local store (`ARGYLL_STORE`, `ARGYLL_DATA_DIR`, `LOCAL_STORE_*`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LocalStoreSettings {
    /// Which store (`ARGYLL_STORE`).
    #[serde(rename = "argyll_store", deserialize_with = "de::store_choice")]
    pub store: StoreChoice,
    /// The data directory (`ARGYLL_DATA_DIR`).
    #[serde(rename = "argyll_data_dir", deserialize_with = "de::text")]
    pub data_dir: String,
    /// When writes are synced (`LOCAL_STORE_SYNC`).
    #[serde(rename = "local_store_sync", deserialize_with = "de::local_sync")]
    pub sync: LocalSync,
    /// The sync interval of `LOCAL_STORE_SYNC=interval` (`LOCAL_STORE_SYNC_INTERVAL`).
    #[serde(
        rename = "local_store_sync_interval",
        deserialize_with = "de::positive_duration"
    )]
    pub sync_interval: Duration,
    /// The block cache in bytes (`LOCAL_STORE_CACHE_MB`).
    #[serde(rename = "local_store_cache_mb", deserialize_with = "de::megabytes")]
    pub cache_bytes: usize,
}

impl Default for LocalStoreSettings {
    fn default() -> Self {
        LocalStoreSettings {
            store: StoreChoice::Auto,
            data_dir: "./argyll-data".into(),
            sync: LocalSync::Always,
            sync_interval: Duration::from_millis(100),
            cache_bytes: 64 << 20,
        }
    }
}
