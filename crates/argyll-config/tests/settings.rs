//! Settings from environment and argyll.toml: defaults, aliases, precedence, errors naming the
//! variable, and a documentation table that lists every setting.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use argyll_config::{
    BackoffType, ConfigError, LocalSync, LogFormat, LogLevel, SETTINGS, Settings, StoreMode,
    parse_duration,
};

fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_sources(vars.iter().copied(), None)
}

fn invalid(vars: &[(&str, &str)]) -> (String, String) {
    match settings(vars).unwrap_err() {
        ConfigError::Invalid {
            variable, reason, ..
        } => (variable, reason),
        other => panic!("{other}"),
    }
}

#[test]
fn defaults_run_on_the_local_store() {
    let s = settings(&[("PATH", "/bin"), ("HOME", "/root")]).unwrap();
    assert_eq!((s.server.host.as_str(), s.server.port), ("0.0.0.0", 8080));
    assert_eq!(s.server.webhook_base_url(), "http://localhost:8080");
    assert_eq!(
        (s.log.level, s.log.format),
        (LogLevel::Info, LogFormat::Human)
    );
    let StoreMode::Local(local) = s.store_mode() else {
        panic!("the default store is the local store");
    };
    assert_eq!(
        (local.data_dir.as_str(), local.sync, local.cache_bytes),
        ("./argyll-data", LocalSync::Always, 64 << 20)
    );
    assert_eq!(local.sync_interval, Duration::from_millis(100));
    assert_eq!(
        (s.engine.memo_cache_size, s.engine.flow_cache_size),
        (4096, 4096)
    );
    assert_eq!(
        (
            s.retry.max_retries,
            s.retry.backoff_ms,
            s.retry.max_backoff_ms
        ),
        (10, 1000, 60_000)
    );
    assert_eq!(s.retry.backoff_type, BackoffType::Exponential);
    assert_eq!(
        (
            s.engine.script_memory_bytes,
            s.engine.script_step_limit,
            s.engine.script_timeout
        ),
        (64 << 20, 100_000_000, Duration::from_secs(1))
    );
    assert_eq!(s.archive, None);
}

#[test]
fn guide_names_and_original_aliases() {
    let s = settings(&[
        ("API_PORT", "9000"),
        ("LOG_LEVEL", "warn"),
        ("API_HOST", "127.0.0.1"),
    ])
    .unwrap();
    assert_eq!(
        (s.server.port, s.log.level, s.server.host.as_str()),
        (9000, LogLevel::Warn, "127.0.0.1")
    );
    assert_eq!(s.server.webhook_base_url(), "http://localhost:9000");
    let s = settings(&[
        ("ENGINE_PORT", "9001"),
        ("API_PORT", "9000"),
        ("ENGINE_LOGGING_LEVEL", "error"),
        ("LOG_LEVEL", "debug"),
    ])
    .unwrap();
    assert_eq!(
        (s.server.port, s.log.level),
        (9001, LogLevel::Error),
        "the guide's name wins over the alias"
    );
    let s = settings(&[("ENGINE_PORT", ""), ("API_PORT", "9002")]).unwrap();
    assert_eq!(s.server.port, 9002, "an empty variable counts as unset");
}

#[test]
fn redis_addresses_select_the_redis_store() {
    let s = settings(&[
        ("ENGINE_REDIS_ADDR", "redis-a:6379"),
        ("ENGINE_REDIS_DB", "2"),
        ("ENGINE_REDIS_PASSWORD", "pw"),
    ])
    .unwrap();
    let StoreMode::Redis { engine, flow } = s.store_mode() else {
        panic!("redis expected")
    };
    assert_eq!(
        (
            engine.addr.as_str(),
            engine.db,
            engine.password.as_deref(),
            engine.prefix.as_str()
        ),
        ("redis-a:6379", 2, Some("pw"), "argyll:engine")
    );
    assert_eq!(
        (flow.addr.as_str(), flow.prefix.as_str()),
        ("redis-a:6379", "argyll:flow"),
        "the flow store defaults to the engine's address"
    );
    assert_eq!((engine.pool_size, flow.pool_size), (1, 1));
    let s = settings(&[
        ("FLOW_REDIS_ADDR", "redis-b:6380"),
        ("FLOW_REDIS_POOL_SIZE", "4"),
    ])
    .unwrap();
    let StoreMode::Redis { flow, .. } = s.store_mode() else {
        panic!("redis expected")
    };
    assert_eq!(flow.pool_size, 4);
    assert_eq!(
        invalid(&[
            ("ENGINE_REDIS_ADDR", "redis-a:6379"),
            ("ENGINE_REDIS_POOL_SIZE", "0")
        ]),
        (
            "ENGINE_REDIS_POOL_SIZE".into(),
            "expected a number of connections from 1 to 64".into()
        )
    );
    assert_eq!(
        invalid(&[("ENGINE_REDIS_ADDR", "nohost")]).0,
        "ENGINE_REDIS_ADDR"
    );
}

#[test]
fn malformed_values_are_errors_naming_the_variable() {
    assert_eq!(
        invalid(&[("ENGINE_PORT", "70000")]),
        (
            "ENGINE_PORT".into(),
            "expected a port number from 1 to 65535".into()
        )
    );
    assert_eq!(
        invalid(&[("API_PORT", "x")]).0,
        "API_PORT",
        "the error names the variable as given"
    );
    assert_eq!(invalid(&[("LOG_LEVEL", "verbose")]).0, "LOG_LEVEL");
    assert_eq!(invalid(&[("MEMO_CACHE_SIZE", "0")]).0, "MEMO_CACHE_SIZE");
    assert_eq!(
        invalid(&[("RETRY_BACKOFF_TYPE", "random")]).0,
        "RETRY_BACKOFF_TYPE"
    );
    assert_eq!(
        invalid(&[("SCRIPT_TIMEOUT", "10")]).0,
        "SCRIPT_TIMEOUT",
        "a bare number is not a duration"
    );
    assert_eq!(
        invalid(&[
            ("ARCHIVE_BUCKET_URL", "s3://b"),
            ("ARCHIVE_SWEEP_INTERVAL", "0s")
        ])
        .0,
        "ARCHIVE_SWEEP_INTERVAL"
    );
    assert_eq!(
        invalid(&[
            ("ARCHIVE_BUCKET_URL", "s3://b"),
            ("ARCHIVE_MEMORY_PERCENT", "80%")
        ])
        .0,
        "ARCHIVE_MEMORY_PERCENT"
    );
    for bad in ["redis", ":6379", "127.0.0.1:abc", "a:6379,b", "a:99999"] {
        assert_eq!(
            invalid(&[("ENGINE_REDIS_ADDR", bad)]).0,
            "ENGINE_REDIS_ADDR",
            "{bad} is a malformed address"
        );
    }
    assert_eq!(
        invalid(&[("ENGINE_REDIS_ADDR", "a:1"), ("FLOW_REDIS_ADDR", "b:x")]).0,
        "FLOW_REDIS_ADDR"
    );
    let message = settings(&[("ENGINE_LOG_FORMAT", "xml")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "invalid ENGINE_LOG_FORMAT=\"xml\": expected human or json"
    );
}

#[test]
fn archiving_settings() {
    let s = settings(&[
        ("ARCHIVE_BUCKET_URL", "s3://flows"),
        ("ARCHIVE_MAX_AGE", "1h30m"),
        ("ARCHIVE_POLL_INTERVAL", "250ms"),
    ])
    .unwrap();
    let archive = s.archive.unwrap();
    assert_eq!(
        (archive.bucket_url.as_str(), archive.prefix.as_str()),
        ("s3://flows", "archived/")
    );
    assert_eq!(
        (archive.max_age, archive.poll_interval),
        (Duration::from_secs(5400), Duration::from_millis(250))
    );
    assert_eq!(
        (
            archive.pressure_batch,
            archive.sweep_batch,
            archive.lease_timeout
        ),
        (10, 100, Duration::from_secs(900))
    );
}

#[test]
fn the_file_is_overridden_by_the_environment() {
    let toml = "engine_port = 7000\nlog_level = \"debug\"\nmemo_cache_size = 10\nscript_timeout = \"2s\"\n";
    let s = Settings::from_sources([("ENGINE_PORT", "7001")], Some(toml)).unwrap();
    assert_eq!(
        (
            s.server.port,
            s.log.level,
            s.engine.memo_cache_size,
            s.engine.script_timeout
        ),
        (7001, LogLevel::Debug, 10, Duration::from_secs(2))
    );
    let error =
        Settings::from_sources(Vec::<(String, String)>::new(), Some("memo_cache_size = -1"))
            .unwrap_err();
    assert!(
        matches!(error, ConfigError::Invalid { ref variable, .. } if variable == "MEMO_CACHE_SIZE"),
        "{error}"
    );
    assert!(
        Settings::from_sources(Vec::<(String, String)>::new(), Some("this is = = not toml"))
            .is_err()
    );
}

#[test]
fn go_durations() {
    for (text, expected) in [
        ("0", 0),
        ("300ms", 300),
        ("1.5s", 1500),
        ("2h45m", 9_900_000),
        ("1m30s", 90_000),
    ] {
        assert_eq!(
            parse_duration(text).unwrap(),
            Duration::from_millis(expected),
            "{text}"
        );
    }
    assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
    for bad in ["", "10", "1d", "s", "1.2.3s", "-1s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_documentation_lists_every_setting_with_its_default() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap();
    for spec in SETTINGS {
        let row = docs
            .lines()
            .find(|line| line.starts_with(&format!("| `{}`", spec.name)));
        let row =
            row.unwrap_or_else(|| panic!("docs/configuration.md has no row for {}", spec.name));
        assert!(
            row.contains(&format!("`{}`", spec.default)) || spec.default.is_empty(),
            "{}: default {} not documented",
            spec.name,
            spec.default
        );
        for alias in spec.aliases {
            assert!(
                row.contains(alias),
                "{}: alias {alias} not documented",
                spec.name
            );
        }
    }
}

/// One source of truth: every default the table documents is what its section defaults to.
/// Giving each setting its documented default changes nothing.
#[test]
fn every_documented_default_is_the_sections_default() {
    let defaults = settings(&[]).unwrap();
    assert_eq!(
        defaults,
        Settings::default(),
        "no variable set: the sections' defaults"
    );
    for spec in SETTINGS {
        // Defaults that are not a value: unset, derived or computed at start-up.
        if spec.default.starts_with('(') || spec.default.contains('<') || spec.default.is_empty() {
            continue;
        }
        let given = settings(&[(spec.name, spec.default)])
            .unwrap_or_else(|error| panic!("{}'s documented default: {error}", spec.name));
        assert_eq!(
            given, defaults,
            "{}={} is not the default",
            spec.name, spec.default
        );
    }
}

#[test]
fn argyll_store_chooses_the_store_and_contradictions_are_refused() {
    let memory = settings(&[("ARGYLL_STORE", "memory")]).unwrap();
    assert_eq!(memory.store_mode(), StoreMode::Memory);
    let local = settings(&[
        ("ARGYLL_STORE", "local"),
        ("ARGYLL_DATA_DIR", "/var/lib/argyll"),
        ("LOCAL_STORE_SYNC", "interval"),
        ("LOCAL_STORE_SYNC_INTERVAL", "250ms"),
        ("LOCAL_STORE_CACHE_MB", "16"),
    ])
    .unwrap();
    let StoreMode::Local(local) = local.store_mode() else {
        panic!("ARGYLL_STORE=local");
    };
    assert_eq!(
        (
            local.data_dir.as_str(),
            local.sync,
            local.sync_interval,
            local.cache_bytes
        ),
        (
            "/var/lib/argyll",
            LocalSync::Interval,
            Duration::from_millis(250),
            16 << 20
        )
    );
    let redis = settings(&[("ARGYLL_STORE", "redis"), ("ENGINE_REDIS_ADDR", "r:6379")]).unwrap();
    assert!(matches!(redis.store_mode(), StoreMode::Redis { .. }));
    let auto = settings(&[("FLOW_REDIS_ADDR", "r:6379")]).unwrap();
    assert!(matches!(auto.store_mode(), StoreMode::Redis { .. }));

    let (variable, reason) = invalid(&[("ARGYLL_STORE", "redis")]);
    assert_eq!(variable, "ARGYLL_STORE");
    assert!(reason.contains("ENGINE_REDIS_ADDR"), "{reason}");
    let (variable, reason) = invalid(&[("ARGYLL_STORE", "memory"), ("ENGINE_REDIS_ADDR", "r:1")]);
    assert_eq!(variable, "ARGYLL_STORE");
    assert!(reason.contains("contradicts"), "{reason}");
    assert_eq!(
        invalid(&[("ARGYLL_STORE", "disk")]),
        (
            "ARGYLL_STORE".into(),
            "expected local, memory, redis or auto".into()
        )
    );
    assert_eq!(
        invalid(&[("LOCAL_STORE_SYNC", "sometimes")]),
        (
            "LOCAL_STORE_SYNC".into(),
            "expected always, interval or never".into()
        )
    );
    assert_eq!(
        invalid(&[("LOCAL_STORE_CACHE_MB", "0")]).0,
        "LOCAL_STORE_CACHE_MB"
    );
    assert_eq!(
        invalid(&[("LOCAL_STORE_SYNC_INTERVAL", "0")]).0,
        "LOCAL_STORE_SYNC_INTERVAL"
    );
}

#[test]
fn flow_retention_takes_days_or_durations_and_refuses_zero() {
    assert_eq!(settings(&[]).unwrap().engine.flow_retention, None);
    for (text, expected) in [
        ("7d", Duration::from_secs(7 * 86_400)),
        ("12h", Duration::from_secs(12 * 3_600)),
        ("1h30m", Duration::from_secs(5_400)),
        ("500ms", Duration::from_millis(500)),
    ] {
        assert_eq!(
            settings(&[("FLOW_RETENTION", text)])
                .unwrap()
                .engine
                .flow_retention,
            Some(expected),
            "{text}"
        );
    }
    for bad in ["0", "0d", "-1d", "1.5d", "week", "10"] {
        let (variable, reason) = invalid(&[("FLOW_RETENTION", bad)]);
        assert_eq!(variable, "FLOW_RETENTION", "{bad}");
        assert!(reason.contains("unset it to keep flows"), "{bad}: {reason}");
    }
}
