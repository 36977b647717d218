//! The Argyll server binary: load the configuration, set up logging, build the store, the
//! engine and the HTTP API, serve until SIGINT/SIGTERM. Everything else lives in the crates.

/// mimalloc: the engine allocates many small, short-lived objects from every worker thread
/// (events, states, JSON); glibc's allocator spent about a tenth of the engine's CPU on them.
/// Wrapped in the script meter, which charges what an Ale run allocates to its memory limit
/// (`SCRIPT_MEMORY_LIMIT_MB`) and costs a thread-local check per allocation otherwise.
#[global_allocator]
static ALLOCATOR: argyll_script::MeteredAlloc<mimalloc::MiMalloc> =
    argyll_script::MeteredAlloc(mimalloc::MiMalloc);

use std::path::PathBuf;
use std::process::ExitCode;

use argyll_archive::{ArchivePolicy, Archiver, Bucket};
use argyll_config::{LocalStoreSettings, LocalSync, LogFormat, RedisSettings, Settings, StoreMode};
use argyll_console::ConsoleConfig;
use argyll_engine::{Engine, EngineConfig};
use argyll_retry::RetryPolicy;
use argyll_script::ScriptLimits;
use argyll_server::{ConnectionLimits, ServerConfig, WsLimits};
use argyll_store::{EmbeddedStore, Store};
use argyll_store_local::{LocalConfig, LocalStore, SyncMode};
use argyll_store_redis::{RedisConfig, RedisStore};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Argyll: a goal-driven workflow orchestrator.
///
/// Every setting comes from the environment (or an `argyll.toml` beside it, which the
/// environment overrides); `docs/configuration.md` lists them with their defaults. Without
/// `ENGINE_REDIS_ADDR` the state is kept in the local store in `ARGYLL_DATA_DIR`.
#[derive(Debug, Parser)]
#[command(name = "argyll", version)]
struct Cli {
    /// The configuration file; settings in the environment override it.
    #[arg(
        long,
        env = "ARGYLL_CONFIG",
        default_value = "argyll.toml",
        global = true
    )]
    config: PathBuf,
    /// What to run (default: `serve`).
    #[command(subcommand)]
    command: Option<Command>,
}

/// What the process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
enum Command {
    /// Run the engine and its HTTP API, plus the archiver when `ARCHIVE_BUCKET_URL` is set.
    Serve,
    /// Run only the archiver (needs `ARCHIVE_BUCKET_URL`), beside engines that do not archive.
    Archive,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(Some(&cli.config)) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("argyll: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let mode = cli.command.unwrap_or(Command::Serve);
    let outcome = runtime.block_on(run(settings, mode));
    // Whatever still runs on the blocking pool (a script the graceful shutdown did not wait
    // for) must not keep the process alive once it has stopped serving: dropping the runtime
    // would wait for it without end.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "argyll stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    // The storage engine's own progress lines (recovering each tree...) only at warn and up.
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},fjall=warn,lsm_tree=warn",
        settings.log.level.as_str()
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// The engine's configuration: every setting from `settings`, the rest (not configurable) from
/// the engine's defaults.
fn engine_config(settings: &Settings) -> EngineConfig {
    let (engine, retry) = (&settings.engine, &settings.retry);
    let defaults = EngineConfig::default();
    let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    EngineConfig {
        retry: RetryPolicy {
            max_retries: retry.max_retries,
            backoff_ms: i64::try_from(retry.backoff_ms).unwrap_or(i64::MAX),
            max_backoff_ms: i64::try_from(retry.max_backoff_ms).unwrap_or(i64::MAX),
            backoff_type: retry.backoff_type.clone(),
            jitter: 0.0,
        },
        memo_cache_size: bytes(engine.memo_cache_size),
        flow_cache_size: bytes(engine.flow_cache_size),
        flow_cache_bytes: bytes(engine.flow_cache_max_bytes),
        max_state_bytes: bytes(engine.flow_max_state_bytes),
        step_max_response_bytes: engine.step_max_response_bytes,
        step_timeout: engine.step_timeout,
        webhook_base_url: settings.server.webhook_base_url(),
        script_limits: ScriptLimits {
            memory_bytes: engine.script_memory_bytes,
            steps: engine.script_step_limit,
            timeout: engine.script_timeout,
        },
        instance_id: engine.instance_id.clone().unwrap_or(defaults.instance_id),
        lease_ttl: engine.work_lease_timeout,
        max_work_items: engine.max_work_items,
        max_id_length: engine.max_id_length,
        engine_state_max_flows: engine.engine_state_max_flows,
        flow_max_depth: engine.flow_max_depth,
        min_retry_delay: std::time::Duration::from_millis(retry.min_backoff_ms),
        // With archiving, finished flows leave the store through the bucket instead (the
        // archiver's age is capped by the retention): nothing unarchived is deleted.
        flow_retention: engine.flow_retention.filter(|_| settings.archive.is_none()),
        ..defaults
    }
}

async fn run(settings: Settings, mode: Command) -> Result<(), String> {
    match settings.store_mode() {
        StoreMode::Memory => {
            tracing::warn!(
                "using the in-memory store (ARGYLL_STORE=memory): state is not kept, everything is lost when the process exits"
            );
            serve(
                EmbeddedStore::new(),
                &settings,
                mode,
                EMBEDDED_CACHE_MIN_EVENTS,
                "memory",
            )
            .await
        }
        StoreMode::Local(local) => {
            let config = local_config(&local);
            let dir = std::path::absolute(&config.data_dir).unwrap_or(config.data_dir.clone());
            tracing::info!(
                data_dir = %dir.display(),
                sync = ?config.sync,
                cache_mb = config.cache_bytes >> 20,
                "using the local store"
            );
            let opened = std::time::Instant::now();
            let store = tokio::task::spawn_blocking(move || LocalStore::open(&config))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("ARGYLL_DATA_DIR={}: {e}", local.data_dir))?;
            tracing::info!(
                disk_bytes = store.disk_bytes().unwrap_or(0),
                took_ms = opened.elapsed().as_millis(),
                "local store opened"
            );
            serve(store, &settings, mode, 0, "local").await
        }
        StoreMode::Redis { engine, flow } => {
            tracing::info!(
                engine_store = %engine.addr,
                engine_prefix = %engine.prefix,
                flow_store = %flow.addr,
                flow_prefix = %flow.prefix,
                "using the Redis store"
            );
            let store = RedisStore::connect(redis_config(&engine), redis_config(&flow))
                .await
                .map_err(|e| e.to_string())?;
            serve(store, &settings, mode, 0, "redis").await
        }
    }
}

/// The archiver of `settings`, when `ARCHIVE_BUCKET_URL` is set.
fn archiver<S: Store>(
    store: S,
    settings: &Settings,
    owner: &str,
) -> Result<Option<(Bucket, Archiver<S>)>, String> {
    let Some(archive) = &settings.archive else {
        return Ok(None);
    };
    let bucket = Bucket::open(&archive.bucket_url, &archive.prefix).map_err(|e| e.to_string())?;
    let policy = ArchivePolicy {
        memory_percent: archive.memory_percent,
        max_age: settings
            .engine
            .flow_retention
            .map_or(archive.max_age, |retention| retention.min(archive.max_age)),
        memory_check_interval: archive.memory_check_interval,
        sweep_interval: archive.sweep_interval,
        lease_timeout: archive.lease_timeout,
        pressure_batch: archive.pressure_batch,
        sweep_batch: archive.sweep_batch,
        poll_interval: archive.poll_interval,
    };
    tracing::info!(bucket = %archive.bucket_url, prefix = %archive.prefix, "archiving finished flows");
    Ok(Some((
        bucket.clone(),
        Archiver::new(store, bucket, policy, owner),
    )))
}

fn local_config(settings: &LocalStoreSettings) -> LocalConfig {
    LocalConfig {
        sync: match settings.sync {
            LocalSync::Always => SyncMode::Always,
            LocalSync::Interval => SyncMode::Interval(settings.sync_interval),
            LocalSync::Never => SyncMode::Never,
        },
        cache_bytes: u64::try_from(settings.cache_bytes).unwrap_or(u64::MAX),
        ..LocalConfig::new(&settings.data_dir)
    }
}

fn redis_config(settings: &RedisSettings) -> RedisConfig {
    RedisConfig {
        password: settings.password.clone().filter(|p| !p.is_empty()),
        db: settings.db,
        pool_size: settings.pool_size,
        ..RedisConfig::new(&settings.addr, &settings.prefix)
    }
}

/// Flow states of fewer events are not cached on the embedded store: replaying a short
/// in-process log costs less than keeping a copy (scenario a: ~10 µs of CPU per flow more
/// with every state cached), while a fan-out's long log must not be replayed per command.
const EMBEDDED_CACHE_MIN_EVENTS: u64 = 32;

async fn serve<S: Store + Clone>(
    store: S,
    settings: &Settings,
    mode: Command,
    cache_min_events: u64,
    store_name: &str,
) -> Result<(), String> {
    let config = EngineConfig {
        flow_cache_min_events: cache_min_events,
        ..engine_config(settings)
    };
    let (stop_archiver, archiver_stopped) = watch::channel(false);
    let archive = archiver(store.clone(), settings, &config.instance_id)?;
    if mode == Command::Archive {
        let Some((_, archiver)) = archive else {
            return Err("`argyll archive` needs ARCHIVE_BUCKET_URL".into());
        };
        let running = tokio::spawn(archiver.run(archiver_stopped));
        shutdown_signal().await;
        let _ = stop_archiver.send(true);
        let _ = running.await;
        return Ok(());
    }
    let engine = Engine::builder(store)
        .config(config)
        .build()
        .map_err(|e| e.to_string())?;
    engine.start().await.map_err(|e| e.to_string())?;
    let address = format!("{}:{}", settings.server.host, settings.server.port);
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    tracing::info!(
        %address,
        webhook_base_url = %settings.server.webhook_base_url(),
        instance = %engine.config().instance_id,
        "argyll engine listening"
    );
    let bucket = archive.map(|(bucket, archiver)| {
        tokio::spawn(archiver.run(archiver_stopped));
        bucket
    });
    let server = ServerConfig {
        max_request_bytes: settings.server.max_request_bytes,
        shutdown_timeout: settings.server.shutdown_timeout,
        archive: bucket,
        connections: ConnectionLimits {
            max_connections: {
                let default = default_max_connections();
                settings.server.max_connections.unwrap_or(default)
            },
            header_timeout: settings.server.header_timeout,
        },
        body_timeout: settings.server.body_timeout,
        websocket: WsLimits {
            max_clients: settings.server.ws_max_clients,
            send_queue: settings.server.ws_send_queue,
        },
        store_name: store_name.to_owned(),
        ..ServerConfig::default()
    };
    // The console reads this instance's public API over loopback, like any other client.
    let console = argyll_console::router(ConsoleConfig::new(format!(
        "http://{}:{}",
        loopback_host(&settings.server.host),
        settings.server.port
    )));
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_archiver.send(true);
    };
    argyll_server::serve_with(listener, engine, server, console, shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("argyll engine stopped");
    Ok(())
}

/// The host to reach a server listening on `host` from this machine: the unspecified
/// addresses (`0.0.0.0`, `::`) are reached over loopback.
fn loopback_host(host: &str) -> String {
    match host {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        other if other.contains(':') && !other.starts_with('[') => format!("[{other}]"),
        other => other.to_owned(),
    }
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does for the original)
/// and returns half of it: the default connection cap, which leaves the other half for step
/// calls, store connections and files.
fn default_max_connections() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    };
    let connections = usize::try_from(limit / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, 1 << 20);
    tracing::info!(
        open_file_limit = limit,
        max_connections = connections,
        "connection cap"
    );
    connections
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down: finishing in-flight requests and work");
}
