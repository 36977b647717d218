//! # argyll-config
//!
//! Argyll's settings, read from the environment (the names of the configuration guide, with the
//! original engine's names as aliases — contract decision 19) over an optional `argyll.toml`
//! (same names in lower case), merged and extracted with figment. Every value is validated; a
//! malformed one is an error naming the variable as it was given, never silently replaced by a
//! default.
//!
//! **Owns**: [`Settings`], one serde struct per section ([`ServerSettings`], [`LogSettings`],
//! [`EngineSettings`], [`RetrySettings`], [`RedisSettings`], [`ArchiveSettings`]) whose
//! `Default` is the one place each default lives; the parsers of values (integers, Go-style
//! durations such as `1h30m` or `500ms`, log levels...); and [`SETTINGS`], the table of every
//! setting from which `docs/configuration.md` is checked (its defaults are checked against the
//! sections'). The binary turns the sections into the engine's, server's, stores' and
//! archiver's configurations.
//!
//! **Must not depend on**: any Argyll crate but the pure `argyll-model` (for the one backoff
//! enum); it produces plain values that the binary hands to the engine, stores and runners.
//!
//! ```
//! use argyll_config::{Settings, StoreMode};
//!
//! let settings = Settings::from_sources([("ENGINE_PORT", "9090"), ("LOG_LEVEL", "debug")], None)?;
//! assert_eq!(settings.server.port, 9090);
//! assert_eq!(settings.log.level.as_str(), "debug");
//! assert!(matches!(settings.store_mode(), StoreMode::Local(local) if local.data_dir == "./argyll-data"));
//! let error = Settings::from_sources([("ENGINE_PORT", "eighty")], None).unwrap_err();
//! assert_eq!(error.to_string(), "invalid ENGINE_PORT=\"eighty\": expected a port number from 1 to 65535");
//! # Ok::<(), argyll_config::ConfigError>(())
//! ```

mod sections;
mod table;
mod values;

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use serde::de::DeserializeOwned;

pub use argyll_model::BackoffType;
pub use sections::{
    ArchiveSettings, EngineSettings, LocalStoreSettings, LocalSync, LogFormat, LogLevel,
    LogSettings, RedisSettings, RetrySettings, ServerSettings, StoreChoice,
};
pub use table::{SETTINGS, SettingSpec};
pub use values::parse_duration;

use sections::{ArchiveKeys, RedisKeys};

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

/// Where state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// In memory, in this process: lost when it exits (`ARGYLL_STORE=memory`).
    Memory,
    /// The durable local store in a data directory (the default).
    Local(LocalStoreSettings),
    /// On Redis/Valkey.
    Redis {
        /// The engine store.
        engine: RedisSettings,
        /// The flow store.
        flow: RedisSettings,
    },
}

/// All settings, validated, by section.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Settings {
    /// The HTTP API and its bounds.
    pub server: ServerSettings,
    /// Logging.
    pub log: LogSettings,
    /// The engine's bounds, caches, leases and script limits.
    pub engine: EngineSettings,
    /// The default retry policy.
    pub retry: RetrySettings,
    /// Engine store (`None`: embedded).
    pub engine_redis: Option<RedisSettings>,
    /// Flow store (`None`: embedded).
    pub flow_redis: Option<RedisSettings>,
    /// Archiving, when a bucket is configured.
    pub archive: Option<ArchiveSettings>,
    /// The store choice and the local store.
    pub local: LocalStoreSettings,
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
        Sources::by_primary_name(merged).settings()
    }

    /// The local store unless a Redis address is configured or `ARGYLL_STORE` says otherwise
    /// (a contradiction between the two was refused when the settings were read).
    pub fn store_mode(&self) -> StoreMode {
        match self.local.store {
            StoreChoice::Memory => return StoreMode::Memory,
            StoreChoice::Local => return StoreMode::Local(self.local.clone()),
            StoreChoice::Auto | StoreChoice::Redis => {}
        }
        match (&self.engine_redis, &self.flow_redis) {
            (Some(engine), Some(flow)) => StoreMode::Redis {
                engine: engine.clone(),
                flow: flow.clone(),
            },
            (Some(one), None) | (None, Some(one)) => StoreMode::Redis {
                engine: one.clone(),
                flow: one.clone(),
            },
            (None, None) => StoreMode::Local(self.local.clone()),
        }
    }
}

/// The merged values keyed by each setting's primary name (lower case), and the name each was
/// given under (for errors).
struct Sources {
    values: BTreeMap<String, Value>,
    given: BTreeMap<String, String>,
}

/// A value's text as it was written (for error messages).
fn text_of(value: &Value) -> String {
    match value {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_default(),
        other => format!("{other:?}"),
    }
}

impl Sources {
    /// Keeps, for every setting, the value under its primary name, else under its first alias
    /// that has one (the guide's name wins); empty values count as unset.
    fn by_primary_name(mut merged: BTreeMap<String, Value>) -> Self {
        merged.retain(|_, value| !matches!(value, Value::String(_, s) if s.is_empty()));
        let mut values = BTreeMap::new();
        let mut given = BTreeMap::new();
        for spec in SETTINGS {
            let primary = spec.name.to_ascii_lowercase();
            let names = std::iter::once(spec.name).chain(spec.aliases.iter().copied());
            for name in names {
                if let Some(value) = merged.remove(&name.to_ascii_lowercase())
                    && !values.contains_key(&primary)
                {
                    values.insert(primary.clone(), value);
                    given.insert(primary.clone(), name.to_owned());
                }
            }
        }
        Sources { values, given }
    }

    fn settings(&self) -> Result<Settings, ConfigError> {
        let server: ServerSettings = self.section(&self.values, "")?;
        let engine_redis = self.redis("engine", None)?;
        let flow_redis = self.redis("flow", engine_redis.as_ref().map(|r| r.addr.clone()))?;
        let engine_redis = match (engine_redis, &flow_redis) {
            (None, Some(flow)) => Some(RedisSettings {
                prefix: "argyll:engine".into(),
                ..flow.clone()
            }),
            (engine, _) => engine,
        };
        let archive: ArchiveKeys = self.section(&self.values, "")?;
        let local: LocalStoreSettings = self.section(&self.values, "")?;
        self.check_store_choice(local.store, engine_redis.is_some())?;
        Ok(Settings {
            server,
            log: self.section(&self.values, "")?,
            engine: self.section(&self.values, "")?,
            retry: self.section(&self.values, "")?,
            engine_redis,
            flow_redis,
            archive: archive.settings(),
            local,
        })
    }

    /// Refuses an `ARGYLL_STORE` that contradicts the Redis addresses.
    fn check_store_choice(&self, store: StoreChoice, redis: bool) -> Result<(), ConfigError> {
        let reason = match (store, redis) {
            (StoreChoice::Redis, false) => "needs ENGINE_REDIS_ADDR or FLOW_REDIS_ADDR",
            (StoreChoice::Local | StoreChoice::Memory, true) => {
                "contradicts the Redis address that is set (unset ENGINE_REDIS_ADDR and FLOW_REDIS_ADDR, or choose redis)"
            }
            _ => return Ok(()),
        };
        let value = self
            .values
            .get("argyll_store")
            .map(text_of)
            .unwrap_or_default();
        Err(ConfigError::Invalid {
            variable: self
                .given
                .get("argyll_store")
                .cloned()
                .unwrap_or_else(|| "ARGYLL_STORE".into()),
            value,
            reason: reason.into(),
        })
    }

    /// The `{kind}_REDIS_*` settings (`kind` in lower case); `None` without an address (of its
    /// own or `fallback_addr`).
    fn redis(
        &self,
        kind: &str,
        fallback_addr: Option<String>,
    ) -> Result<Option<RedisSettings>, ConfigError> {
        let prefix = format!("{kind}_redis_");
        let keys: BTreeMap<String, Value> = self
            .values
            .iter()
            .filter_map(|(key, value)| {
                key.strip_prefix(&prefix)
                    .map(|rest| (rest.to_owned(), value.clone()))
            })
            .collect();
        let keys: RedisKeys = self.section(&keys, &prefix)?;
        let Some(addr) = keys.addr.or(fallback_addr) else {
            return Ok(None);
        };
        Ok(Some(RedisSettings {
            addr,
            password: keys.password,
            db: keys.db,
            prefix: keys.prefix.unwrap_or_else(|| format!("argyll:{kind}")),
            pool_size: keys.pool_size,
        }))
    }

    /// Extracts one section from `values`, whose keys are the settings' names without
    /// `key_prefix`; an error names the setting as it was given.
    fn section<T: DeserializeOwned>(
        &self,
        values: &BTreeMap<String, Value>,
        key_prefix: &str,
    ) -> Result<T, ConfigError> {
        Figment::from(Serialized::defaults(values))
            .extract()
            .map_err(|error| {
                let key = error.path.last().cloned().unwrap_or_default();
                let primary = format!("{key_prefix}{key}");
                let variable = self
                    .given
                    .get(&primary)
                    .cloned()
                    .unwrap_or_else(|| primary.to_ascii_uppercase());
                let value = values.get(&key).map(text_of).unwrap_or_default();
                let reason = match &error.kind {
                    figment::error::Kind::Message(message) => message.clone(),
                    _ => "expected a single value".to_owned(),
                };
                ConfigError::Invalid {
                    variable,
                    value,
                    reason,
                }
            })
    }
}
