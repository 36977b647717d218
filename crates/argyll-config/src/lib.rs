//! # argyll-config
//!
//! Argyll's settings, read from the environment (the names of the configuration guide, with the
//! original engine's names as aliases — contract decision 19) over an optional `argyll.toml`
//! (same names in lower case), merged with figment. Every value is validated; a malformed one
//! is an error naming the variable, never silently replaced by a default.
//!
//! **Owns**: [`Settings`] and their defaults, parsing (integers, Go-style durations such as
//! `1h30m` or `500ms`, log levels...), and [`SETTINGS`], the table of every setting from which
//! `docs/configuration.md` is checked.
//!
//! **Must not depend on**: any other Argyll crate; it produces plain values that the binary
//! hands to the engine, stores and runners.
//!
//! ```
//! use argyll_config::{Settings, StoreMode};
//!
//! let settings = Settings::from_sources([("ENGINE_PORT", "9090"), ("LOG_LEVEL", "debug")], None)?;
//! assert_eq!(settings.port, 9090);
//! assert_eq!(settings.log_level.as_str(), "debug");
//! assert_eq!(settings.store_mode(), StoreMode::Embedded);
//! let error = Settings::from_sources([("ENGINE_PORT", "eighty")], None).unwrap_err();
//! assert_eq!(error.to_string(), "invalid ENGINE_PORT=\"eighty\": expected a port number from 1 to 65535");
//! # Ok::<(), argyll_config::ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;

/// One documented setting.
#[derive(Clone, Copy, Debug)]
pub struct SettingSpec {
    /// The primary environment variable.
    pub name: &'static str,
    /// Other accepted names (the original engine's), in order of preference.
    pub aliases: &'static [&'static str],
    /// The default, as written in the docs.
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
}

macro_rules! settings_table {
    ($($name:literal $([$($alias:literal),*])? = $default:literal : $description:literal;)*) => {
        /// Every setting, in documentation order.
        pub const SETTINGS: &[SettingSpec] = &[$(SettingSpec {
            name: $name,
            aliases: &[$($($alias),*)?],
            default: $default,
            description: $description,
        }),*];
    };
}

settings_table! {
    "ENGINE_HOST" ["API_HOST"] = "0.0.0.0" : "Address the HTTP API listens on.";
    "ENGINE_PORT" ["API_PORT"] = "8080" : "Port of the HTTP API (1-65535).";
    "WEBHOOK_BASE_URL" = "http://localhost:<port>" : "Base URL async steps receive for their webhook (`<base>/webhook/<flow>/<step>/<token>`).";
    "ENGINE_LOGGING_LEVEL" ["LOG_LEVEL"] = "info" : "Log level: `debug`, `info`, `warn` or `error`.";
    "ENGINE_LOG_FORMAT" = "human" : "Log format: `human` or `json`.";
    "ENGINE_REDIS_ADDR" = "(unset: embedded store)" : "Redis/Valkey address (`host:port`) of the engine store, or a comma-separated list of Redis Cluster nodes; when neither this nor `FLOW_REDIS_ADDR` is set, state is kept in memory.";
    "ENGINE_REDIS_PASSWORD" = "" : "Password of the engine store.";
    "ENGINE_REDIS_DB" = "0" : "Database number of the engine store.";
    "ENGINE_REDIS_PREFIX" = "argyll:engine" : "Key prefix of the engine store.";
    "ENGINE_REDIS_POOL_SIZE" = "1" : "Connections to the engine store (1-64). One connection pipelines best on a few cores; more help only when Redis round trips, not the engine's CPU, are the limit.";
    "FLOW_REDIS_ADDR" = "(ENGINE_REDIS_ADDR)" : "Redis/Valkey address of the flow store; defaults to the engine store's.";
    "FLOW_REDIS_PASSWORD" = "" : "Password of the flow store.";
    "FLOW_REDIS_DB" = "0" : "Database number of the flow store.";
    "FLOW_REDIS_PREFIX" = "argyll:flow" : "Key prefix of the flow store.";
    "FLOW_REDIS_POOL_SIZE" = "1" : "Connections to the flow store (1-64).";
    "STEP_TIMEOUT" = "30s" : "HTTP step timeout when a step's `http.timeout` is 0 or absent (milliseconds or a duration such as `30s`).";
    "ENGINE_MAX_REQUEST_BYTES" = "10485760" : "Largest accepted HTTP request body in bytes (> 0); larger requests get 413.";
    "STEP_MAX_RESPONSE_BYTES" = "4194304" : "Largest step response (and webhook result) read, in bytes (> 0); a larger one fails the work item for good with `step response too large`.";
    "FLOW_MAX_STATE_BYTES" = "67108864" : "Largest flow state, in bytes of JSON (> 0): a start whose init is larger gets 400; a result, fan-out or aggregation that would grow a flow past it fails its work item or step with `flow state too large`.";
    "ENGINE_SHUTDOWN_TIMEOUT" = "10s" : "How long a graceful shutdown waits for in-flight requests and work.";
    "ENGINE_MAX_CONNECTIONS" = "(half the open-file limit)" : "HTTP connections served at once (> 0); one more is answered 503 and closed. The server raises its open-file limit to the hard limit at start-up; the default leaves the other half for step calls and stores.";
    "ENGINE_HEADER_TIMEOUT" = "10s" : "Time for a request's headers to arrive, counted from when the connection waits for a request, so also the longest a keep-alive connection stays idle (> 0).";
    "ENGINE_BODY_TIMEOUT" = "30s" : "Time for a request's whole body to arrive (> 0); slower clients get 408.";
    "WS_MAX_CLIENTS" = "1000" : "WebSocket connections at once (> 0); one more gets 503.";
    "WS_SEND_QUEUE" = "1024" : "Events waiting to be written to one WebSocket client (> 0); a client that falls further behind is disconnected with a close frame saying so.";
    "ENGINE_INSTANCE_ID" = "(random)" : "This instance's name in work leases; unique per running instance.";
    "WORK_LEASE_TIMEOUT" = "5s" : "Lease on in-flight work, renewed while it runs; when an instance dies, another takes its work over after this long.";
    "MEMO_CACHE_SIZE" = "4096" : "Entries of the memoization cache (> 0).";
    "FLOW_CACHE_SIZE" = "4096" : "Flow states kept in memory (> 0).";
    "FLOW_CACHE_MAX_BYTES" = "268435456" : "Bytes of flow states kept in memory at most (> 0, by their JSON size); the oldest leave first.";
    "RETRY_MAX_RETRIES" = "10" : "Retries for steps without a `work_config` (negative: unlimited).";
    "RETRY_BACKOFF_MS" = "1000" : "Base backoff in milliseconds for steps without a `work_config`.";
    "RETRY_MAX_BACKOFF_MS" = "60000" : "Backoff cap in milliseconds (0: no cap).";
    "RETRY_BACKOFF_TYPE" = "exponential" : "`fixed`, `linear` or `exponential`.";
    "RETRY_MIN_BACKOFF_MS" = "20" : "Shortest delay before any retry in milliseconds, whatever a step's `work_config` says (0 turns the floor off): a zero backoff with many retries does not become a busy loop.";
    "SCRIPT_MEMORY_LIMIT_MB" = "64" : "Memory one Lua or Ale run may hold (Ale: what the run allocates and has not freed, counted by the server's metering allocator); exceeding it fails the work item with `memory limit exceeded`.";
    "SCRIPT_STEP_LIMIT" = "100000000" : "Lua instructions or Ale evaluation steps of one run.";
    "SCRIPT_TIMEOUT" = "1s" : "Wall-clock limit of one script or predicate run.";
    "MAX_ID_LENGTH" = "256" : "Longest step id, step name, attribute name, flow id and goal in characters (> 0); longer ones get 400 naming the field. Child flow ids (`parent:step:token`) longer than this become `<hash>:<token>` (69 characters).";
    "FLOW_MAX_DEPTH" = "16" : "Deepest nesting of child flows (> 0): a flow step whose child flow would be deeper fails with `child flow depth limit reached`. Registration already refuses flow steps that reach themselves.";
    "ENGINE_STATE_MAX_FLOWS" = "1000" : "Finished flows `GET /engine` lists in `deactivated` and `flow_digests`, the most recently finished ones (besides every active flow); the full list is the paged `GET /engine/flow`.";
    "MAX_WORK_ITEMS" = "100000" : "Most work items one step may expand to with `for_each` (> 0); a start that would exceed it gets 400, a step that exceeds it later fails with `too many work items`.";
    "ARCHIVE_BUCKET_URL" = "(unset: no archiving)" : "Bucket of archived flows (`s3://bucket`); archiving runs when set.";
    "ARCHIVE_PREFIX" = "archived/" : "Key prefix of archived flows in the bucket.";
    "ARCHIVE_MEMORY_PERCENT" = "80" : "Store memory use (percent, 0-100) above which flows are archived early.";
    "ARCHIVE_MAX_AGE" = "24h" : "Age after which finished flows are archived.";
    "ARCHIVE_MEMORY_CHECK_INTERVAL" = "5s" : "How often memory pressure is checked (> 0).";
    "ARCHIVE_SWEEP_INTERVAL" = "1h" : "How often the age sweep runs (> 0).";
    "ARCHIVE_LEASE_TIMEOUT" = "15m" : "Lease of one archive job (> 0).";
    "ARCHIVE_PRESSURE_BATCH" = "10" : "Flows archived per memory-pressure event (> 0).";
    "ARCHIVE_SWEEP_BATCH" = "100" : "Flows archived per sweep (> 0).";
    "ARCHIVE_POLL_INTERVAL" = "500ms" : "Poll interval of archive jobs (> 0).";
}

/// A setting with a value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A malformed or out-of-range value.
    #[error("invalid {variable}={value:?}: {reason}")]
    Invalid {
        /// The name it was given under.
        variable: String,
        /// The value as given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

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

/// How the default retry delay grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffKind {
    /// Constant.
    Fixed,
    /// Growing linearly.
    Linear,
    /// Doubling.
    Exponential,
}

/// A Redis/Valkey connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port`.
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

/// Where state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// In memory, in this process.
    Embedded,
    /// On Redis/Valkey.
    Redis {
        /// The engine store.
        engine: RedisSettings,
        /// The flow store.
        flow: RedisSettings,
    },
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

/// All settings, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Listen address.
    pub host: String,
    /// Listen port.
    pub port: u16,
    /// Base of webhook URLs.
    pub webhook_base_url: String,
    /// Log level.
    pub log_level: LogLevel,
    /// Log format.
    pub log_format: LogFormat,
    /// Engine store (`None`: embedded).
    pub engine_redis: Option<RedisSettings>,
    /// Flow store (`None`: embedded).
    pub flow_redis: Option<RedisSettings>,
    /// Default HTTP step timeout.
    pub step_timeout: Duration,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Graceful shutdown limit.
    pub shutdown_timeout: Duration,
    /// Connections served at once (`None`: half the open-file limit).
    pub max_connections: Option<usize>,
    /// Time for request headers (and idle keep-alive connections).
    pub header_timeout: Duration,
    /// Time for a request body.
    pub body_timeout: Duration,
    /// WebSocket clients at once.
    pub ws_max_clients: usize,
    /// Messages queued per WebSocket client.
    pub ws_send_queue: usize,
    /// Name in work leases (`None`: random).
    pub instance_id: Option<String>,
    /// Lease on in-flight work.
    pub work_lease_timeout: Duration,
    /// Memoization cache entries.
    pub memo_cache_size: usize,
    /// Cached flow states.
    pub flow_cache_size: usize,
    /// Bytes of cached flow states.
    pub flow_cache_max_bytes: usize,
    /// Largest step response.
    pub step_max_response_bytes: usize,
    /// Largest flow state.
    pub flow_max_state_bytes: usize,
    /// Default retries (negative: unlimited).
    pub retry_max_retries: i64,
    /// Default base backoff.
    pub retry_backoff_ms: u64,
    /// Default backoff cap (0: none).
    pub retry_max_backoff_ms: u64,
    /// Default backoff growth.
    pub retry_backoff_type: BackoffKind,
    /// Script memory limit in bytes.
    pub script_memory_bytes: usize,
    /// Script step limit.
    pub script_step_limit: u64,
    /// Script time limit.
    pub script_timeout: Duration,
    /// Most work items per step.
    pub max_work_items: usize,
    /// Longest id or name.
    pub max_id_length: usize,
    /// Finished flows shown by `GET /engine`.
    pub engine_state_max_flows: usize,
    /// Deepest child-flow nesting.
    pub flow_max_depth: usize,
    /// Shortest retry delay in milliseconds.
    pub retry_min_backoff_ms: u64,
    /// Archiving, when a bucket is configured.
    pub archive: Option<ArchiveSettings>,
}

impl Settings {
    /// Reads the process environment over `argyll.toml` at `toml_path` (if given and present).
    pub fn load(toml_path: Option<&Path>) -> Result<Settings, ConfigError> {
        let toml = match toml_path {
            Some(path) if path.exists() => Some(std::fs::read_to_string(path).map_err(
                |error| ConfigError::File {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                },
            )?),
            _ => None,
        };
        Self::from_sources(std::env::vars(), toml.as_deref())
    }

    /// Settings from `vars` (environment-style pairs; those unrelated to Argyll are ignored)
    /// over the text of an `argyll.toml`. Empty variables count as unset.
    pub fn from_sources<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
        toml: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let known: Vec<String> = SETTINGS
            .iter()
            .flat_map(|spec| std::iter::once(spec.name).chain(spec.aliases.iter().copied()))
            .map(str::to_ascii_lowercase)
            .collect();
        let env: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_owned()))
            .filter(|(k, v)| !v.is_empty() && known.contains(k))
            .collect();
        let mut figment = Figment::new();
        if let Some(text) = toml {
            figment = figment.merge(Toml::string(text));
        }
        let merged: BTreeMap<String, Value> = figment
            .merge(Serialized::defaults(env))
            .extract()
            .map_err(|error| ConfigError::File {
                path: "argyll.toml".into(),
                reason: error.to_string(),
            })?;
        Reader { values: merged }.settings()
    }

    /// Embedded unless a Redis address is configured.
    pub fn store_mode(&self) -> StoreMode {
        match (&self.engine_redis, &self.flow_redis) {
            (Some(engine), Some(flow)) => StoreMode::Redis {
                engine: engine.clone(),
                flow: flow.clone(),
            },
            (Some(one), None) | (None, Some(one)) => StoreMode::Redis {
                engine: one.clone(),
                flow: one.clone(),
            },
            (None, None) => StoreMode::Embedded,
        }
    }
}

struct Reader {
    values: BTreeMap<String, Value>,
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(_, s) => Some(s.clone()),
        Value::Char(_, c) => Some(c.to_string()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string())),
        _ => None,
    }
}

impl Reader {
    /// The raw value of a setting, under the first name it was given, as (name, text).
    fn raw(&self, name: &str) -> Result<Option<(String, String)>, ConfigError> {
        let spec = SETTINGS.iter().find(|spec| spec.name == name);
        let names =
            std::iter::once(name).chain(spec.map_or(&[][..], |spec| spec.aliases).iter().copied());
        for candidate in names {
            if let Some(value) = self.values.get(&candidate.to_ascii_lowercase()) {
                let text = text_of(value).ok_or_else(|| ConfigError::Invalid {
                    variable: candidate.to_owned(),
                    value: format!("{value:?}"),
                    reason: "expected a single value".into(),
                })?;
                if !text.is_empty() {
                    return Ok(Some((candidate.to_owned(), text)));
                }
            }
        }
        Ok(None)
    }

    fn parse<T>(
        &self,
        name: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.raw(name)? {
            None => Ok(default),
            Some((variable, text)) => parse(text.trim()).map_err(|reason| ConfigError::Invalid {
                variable,
                value: text,
                reason,
            }),
        }
    }

    fn text(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.raw(name)?.map(|(_, text)| text))
    }

    fn redis(
        &self,
        kind: &str,
        fallback_addr: Option<&str>,
    ) -> Result<Option<RedisSettings>, ConfigError> {
        let addr = self
            .text(&format!("{kind}_REDIS_ADDR"))?
            .or(fallback_addr.map(str::to_owned));
        let Some(addr) = addr else { return Ok(None) };
        if let Err(reason) = check_redis_addrs(&addr) {
            return Err(ConfigError::Invalid {
                variable: format!("{kind}_REDIS_ADDR"),
                value: addr,
                reason,
            });
        }
        Ok(Some(RedisSettings {
            addr,
            password: self.text(&format!("{kind}_REDIS_PASSWORD"))?,
            db: self.parse(&format!("{kind}_REDIS_DB"), 0, |t| {
                t.parse::<u32>()
                    .map_err(|_| "expected a database number (0 or more)".into())
            })?,
            prefix: self
                .text(&format!("{kind}_REDIS_PREFIX"))?
                .unwrap_or_else(|| format!("argyll:{}", kind.to_ascii_lowercase())),
            pool_size: self.parse(&format!("{kind}_REDIS_POOL_SIZE"), 1, |t| {
                match t.parse::<usize>() {
                    Ok(size) if (1..=64).contains(&size) => Ok(size),
                    _ => Err("expected a number of connections from 1 to 64".into()),
                }
            })?,
        }))
    }

    fn settings(&self) -> Result<Settings, ConfigError> {
        let port = self.parse("ENGINE_PORT", 8080u16, |t| match t.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err("expected a port number from 1 to 65535".into()),
        })?;
        let engine_redis = self.redis("ENGINE", None)?;
        let flow_redis = self.redis("FLOW", engine_redis.as_ref().map(|r| r.addr.as_str()))?;
        let engine_redis = match (engine_redis, &flow_redis) {
            (None, Some(flow)) => Some(RedisSettings {
                prefix: "argyll:engine".into(),
                ..flow.clone()
            }),
            (engine, _) => engine,
        };
        let archive = match self.text("ARCHIVE_BUCKET_URL")? {
            None => None,
            Some(bucket_url) => Some(ArchiveSettings {
                bucket_url,
                prefix: self
                    .text("ARCHIVE_PREFIX")?
                    .unwrap_or_else(|| "archived/".into()),
                memory_percent: self.parse("ARCHIVE_MEMORY_PERCENT", 80.0, |t| {
                    match t.parse::<f64>() {
                        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
                        _ => Err("expected a percentage from 0 to 100".into()),
                    }
                })?,
                max_age: self.parse(
                    "ARCHIVE_MAX_AGE",
                    Duration::from_secs(86_400),
                    parse_duration,
                )?,
                memory_check_interval: self.parse(
                    "ARCHIVE_MEMORY_CHECK_INTERVAL",
                    Duration::from_secs(5),
                    positive_duration,
                )?,
                sweep_interval: self.parse(
                    "ARCHIVE_SWEEP_INTERVAL",
                    Duration::from_secs(3_600),
                    positive_duration,
                )?,
                lease_timeout: self.parse(
                    "ARCHIVE_LEASE_TIMEOUT",
                    Duration::from_secs(900),
                    positive_duration,
                )?,
                pressure_batch: self.parse("ARCHIVE_PRESSURE_BATCH", 10, positive_count)?,
                sweep_batch: self.parse("ARCHIVE_SWEEP_BATCH", 100, positive_count)?,
                poll_interval: self.parse(
                    "ARCHIVE_POLL_INTERVAL",
                    Duration::from_millis(500),
                    positive_duration,
                )?,
            }),
        };
        Ok(Settings {
            host: self
                .text("ENGINE_HOST")?
                .unwrap_or_else(|| "0.0.0.0".into()),
            port,
            webhook_base_url: self
                .text("WEBHOOK_BASE_URL")?
                .unwrap_or_else(|| format!("http://localhost:{port}")),
            log_level: self.parse("ENGINE_LOGGING_LEVEL", LogLevel::Info, |t| {
                match t.to_ascii_lowercase().as_str() {
                    "debug" => Ok(LogLevel::Debug),
                    "info" => Ok(LogLevel::Info),
                    "warn" | "warning" => Ok(LogLevel::Warn),
                    "error" => Ok(LogLevel::Error),
                    _ => Err("expected debug, info, warn or error".into()),
                }
            })?,
            log_format: self.parse("ENGINE_LOG_FORMAT", LogFormat::Human, |t| {
                match t.to_ascii_lowercase().as_str() {
                    "human" | "text" => Ok(LogFormat::Human),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("expected human or json".into()),
                }
            })?,
            engine_redis,
            flow_redis,
            step_timeout: self.parse("STEP_TIMEOUT", Duration::from_secs(30), |t| {
                match t.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                    Ok(_) => Err("expected a duration greater than zero".into()),
                    Err(_) => positive_duration(t),
                }
            })?,
            max_request_bytes: self.parse("ENGINE_MAX_REQUEST_BYTES", 10 << 20, positive_count)?,
            shutdown_timeout: self.parse(
                "ENGINE_SHUTDOWN_TIMEOUT",
                Duration::from_secs(10),
                parse_duration,
            )?,
            instance_id: self.text("ENGINE_INSTANCE_ID")?,
            max_connections: self
                .raw("ENGINE_MAX_CONNECTIONS")?
                .map(|_| self.parse("ENGINE_MAX_CONNECTIONS", 1, positive_count))
                .transpose()?,
            header_timeout: self.parse(
                "ENGINE_HEADER_TIMEOUT",
                Duration::from_secs(10),
                positive_duration,
            )?,
            body_timeout: self.parse(
                "ENGINE_BODY_TIMEOUT",
                Duration::from_secs(30),
                positive_duration,
            )?,
            ws_max_clients: self.parse("WS_MAX_CLIENTS", 1000, positive_count)?,
            ws_send_queue: self.parse("WS_SEND_QUEUE", 1024, positive_count)?,
            work_lease_timeout: self.parse(
                "WORK_LEASE_TIMEOUT",
                Duration::from_secs(5),
                positive_duration,
            )?,
            memo_cache_size: self.parse("MEMO_CACHE_SIZE", 4096, positive_count)?,
            flow_cache_size: self.parse("FLOW_CACHE_SIZE", 4096, positive_count)?,
            flow_cache_max_bytes: self.parse("FLOW_CACHE_MAX_BYTES", 256 << 20, positive_count)?,
            step_max_response_bytes: self.parse(
                "STEP_MAX_RESPONSE_BYTES",
                4 << 20,
                positive_count,
            )?,
            flow_max_state_bytes: self.parse("FLOW_MAX_STATE_BYTES", 64 << 20, positive_count)?,
            retry_max_retries: self.parse("RETRY_MAX_RETRIES", 10, |t| {
                t.parse::<i64>()
                    .map_err(|_| "expected a whole number".into())
            })?,
            retry_backoff_ms: self.parse("RETRY_BACKOFF_MS", 1000, millis)?,
            retry_max_backoff_ms: self.parse("RETRY_MAX_BACKOFF_MS", 60_000, millis)?,
            retry_backoff_type: self.parse(
                "RETRY_BACKOFF_TYPE",
                BackoffKind::Exponential,
                |t| match t {
                    "fixed" => Ok(BackoffKind::Fixed),
                    "linear" => Ok(BackoffKind::Linear),
                    "exponential" => Ok(BackoffKind::Exponential),
                    _ => Err("expected fixed, linear or exponential".into()),
                },
            )?,
            script_memory_bytes: self.parse("SCRIPT_MEMORY_LIMIT_MB", 64 << 20, |t| {
                positive_count(t)?
                    .checked_mul(1 << 20)
                    .ok_or_else(|| "too large".to_owned())
            })?,
            script_step_limit: self.parse("SCRIPT_STEP_LIMIT", 100_000_000, |t| {
                match t.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err("expected a whole number greater than zero".into()),
                }
            })?,
            script_timeout: self.parse(
                "SCRIPT_TIMEOUT",
                Duration::from_secs(1),
                positive_duration,
            )?,
            max_work_items: self.parse("MAX_WORK_ITEMS", 100_000, positive_count)?,
            max_id_length: self.parse("MAX_ID_LENGTH", 256, positive_count)?,
            engine_state_max_flows: self.parse("ENGINE_STATE_MAX_FLOWS", 1000, |t| {
                t.parse::<usize>()
                    .map_err(|_| "expected a whole number (0 or more)".into())
            })?,
            flow_max_depth: self.parse("FLOW_MAX_DEPTH", 16, positive_count)?,
            retry_min_backoff_ms: self.parse("RETRY_MIN_BACKOFF_MS", 20, millis)?,
            archive,
        })
    }
}

fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number greater than zero".into()),
    }
}

fn millis(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| "expected milliseconds (a whole number, 0 or more)".into())
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("expected a duration greater than zero".into()),
        d => Ok(d),
    }
}

/// A Go-style duration: `300ms`, `1.5h`, `2h45m`, `0`; units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration such as 500ms, 30s, 15m, 1h30m";
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(EXPECTED.into());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| EXPECTED.to_owned())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(EXPECTED.into()),
        };
        total += value * nanos_per_unit;
        rest = after;
    }
    if !total.is_finite() || total > 1e19 {
        return Err("duration too large".into());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Every address of a comma-separated list is `host:port` with a port number.
fn check_redis_addrs(addrs: &str) -> Result<(), String> {
    for addr in addrs.split(',').map(str::trim) {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(format!("expected host:port, got {addr:?}"));
        };
        if host.is_empty() {
            return Err(format!("expected host:port, got {addr:?} (no host)"));
        }
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "{addr:?} has no port number (1-65535) after the colon"
            ));
        }
    }
    Ok(())
}
