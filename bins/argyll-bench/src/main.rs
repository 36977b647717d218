//! `argyll-bench`: a load harness for Argyll.
//!
//! Drives an engine over its HTTP API — one given by `--url`, or an `argyll` process it starts
//! itself on the local store (its default), in memory or on Redis — with concurrent clients, and reports completed
//! flows per second (client-observed, start → terminal), latency percentiles, errors, and the
//! engine process's CPU time and RSS when it started the engine.
//!
//! Scenarios: `a` one Ale script step (the quickstart shape); `b` a chain of three sync HTTP
//! steps served by the built-in step server; `c` a `for_each` fan-out of 100 items with
//! parallelism 10; `d` an async step completed by webhook; `e` one large fan-out: `--fan-out`
//! items of an Ale step with parallelism 100 (run it with `--count 1 --clients 1`). Every
//! scenario probes `GET /health` every 20 ms while it runs and reports the slowest answer, and
//! reports how long the start requests took (large fan-outs are planned inside the start). Client modes: `longpoll`
//! (`GET /engine/flow/{id}?wait=`) and `poll` (every 100 ms, like the original's load test).
//!
//! `argyll-bench --help` lists every option.
//!
//! With `--rate` the clients start flows on a fixed schedule (open loop) instead of as fast as
//! they can; with `--engines N` (Redis) it starts N engines and alternates flows between them;
//! `--fan-out` sets the work items per flow of scenarios c and e (100);
//! with `--redis` it reports Redis commands per completed flow (from `INFO commandstats`, so
//! give it a server of its own). Runs of 20 s or more also report the completion rate of the
//! first and the last 10 s.

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use clap::Parser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Clone, Debug)]
struct Options {
    url: Option<String>,
    store: String,
    local_sync: String,
    redis: String,
    scenarios: Vec<char>,
    clients: usize,
    duration: Duration,
    count: Option<usize>,
    poll: bool,
    json: bool,
    engine_bin: Option<String>,
    /// Flows started per second in all (open loop); `None`: as fast as the clients go.
    rate: Option<f64>,
    /// Engine processes to start (on one Redis); flows alternate between them.
    engines: usize,
    /// Whether `--redis` was given: then Redis command counts are reported.
    redis_given: bool,
    /// Work items per flow of scenarios c and e.
    fan_out: usize,
}

/// A load harness for Argyll: drives an engine over its HTTP API with concurrent clients and
/// reports completed flows per second, latency percentiles, errors, CPU and RSS.
///
/// Scenarios: a one Ale script step; b a chain of three sync HTTP steps; c a `for_each` fan-out
/// (`--fan-out` items, parallelism 10); d an async step completed by webhook; e one large
/// fan-out (run it with `--count 1 --clients 1`).
#[derive(Debug, Parser)]
#[command(name = "argyll-bench", version)]
struct Cli {
    /// Drive the engine already running at this URL instead of starting one.
    #[arg(long, conflicts_with_all = ["engines", "engine_bin"])]
    url: Option<String>,
    /// The store of the engine it starts: `local` (a fresh data directory, removed afterwards),
    /// `memory` (`embedded` is the same) or `redis`.
    #[arg(long, value_parser = ["local", "memory", "embedded", "redis"], default_value = "local")]
    store: String,
    /// `LOCAL_STORE_SYNC` of the engine it starts on `--store local`.
    #[arg(long, value_parser = ["always", "interval", "never"], default_value = "always")]
    local_sync: String,
    /// The Redis/Valkey address for `--store redis` (default 127.0.0.1:6379). When given, Redis
    /// commands per flow are reported (from `INFO commandstats`: give it a server of its own).
    #[arg(long, value_name = "HOST:PORT")]
    redis: Option<String>,
    /// Engines to start on one Redis; flows alternate between them (`--store redis` only).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    engines: u16,
    /// Scenarios to run, comma-separated (a, b, c, d, e).
    #[arg(long = "scenario", value_delimiter = ',', default_value = "a,b,c,d", value_parser = scenario)]
    scenarios: Vec<char>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds each scenario runs (at least 0.1).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Flows per scenario, instead of running for a duration.
    #[arg(long)]
    count: Option<usize>,
    /// Flows started per second in all (open loop); without it clients go as fast as they can.
    #[arg(long, value_name = "FLOWS_PER_SEC", value_parser = positive_rate)]
    rate: Option<f64>,
    /// Work items per flow of scenarios c and e.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    fan_out: u32,
    /// How clients wait for a flow's end: `longpoll` (`?wait=`) or `poll` (every 100 ms, like the
    /// original's load test).
    #[arg(long, value_parser = ["longpoll", "poll"], default_value = "longpoll")]
    mode: String,
    /// The `argyll` binary to start (default: `argyll` beside this binary).
    #[arg(long, value_name = "PATH")]
    engine_bin: Option<String>,
    /// Print the reports as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn scenario(text: &str) -> Result<char, String> {
    match text.trim() {
        one @ ("a" | "b" | "c" | "d" | "e") => Ok(one.chars().next().unwrap_or('a')),
        other => Err(format!(
            "unknown scenario {other} (expected a, b, c, d or e)"
        )),
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .ok_or_else(|| "expected a positive number of flows per second".to_owned())
}

fn parse_options() -> Result<Options, String> {
    let cli = Cli::parse();
    if cli.engines > 1 && (cli.store != "redis" || cli.url.is_some()) {
        return Err("--engines: several engines share state only on --store redis".into());
    }
    Ok(Options {
        url: cli.url,
        store: cli.store,
        local_sync: cli.local_sync,
        redis_given: cli.redis.is_some(),
        redis: cli.redis.unwrap_or_else(|| "127.0.0.1:6379".into()),
        scenarios: cli.scenarios,
        clients: cli.clients,
        duration: Duration::from_secs_f64(cli.duration.max(0.1)),
        count: cli.count,
        poll: cli.mode == "poll",
        json: cli.json,
        engine_bin: cli.engine_bin,
        rate: cli.rate,
        engines: usize::from(cli.engines),
        fan_out: usize::try_from(cli.fan_out).unwrap_or(100),
    })
}

// ------------------------------------------------------------------ the engine under test

struct EngineProcess {
    child: Child,
    pid: u32,
    /// The data directory of an engine on the local store, removed after it.
    data_dir: Option<std::path::PathBuf>,
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn start_engine(options: &Options) -> Result<(EngineProcess, String), String> {
    let binary = match &options.engine_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("argyll")
            .display()
            .to_string(),
    };
    let port = free_port()?;
    let mut command = Command::new(&binary);
    command
        .env("ENGINE_HOST", "127.0.0.1")
        .env("ENGINE_PORT", port.to_string())
        .env("WEBHOOK_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("ENGINE_LOGGING_LEVEL", "error")
        .env("ARGYLL_CONFIG", "/nonexistent/argyll.toml")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut data_dir = None;
    match options.store.as_str() {
        "local" => {
            let dir =
                std::env::temp_dir().join(format!("argyll-bench-{}-{port}", std::process::id()));
            command
                .env("ARGYLL_DATA_DIR", &dir)
                .env("LOCAL_STORE_SYNC", &options.local_sync);
            data_dir = Some(dir);
        }
        "memory" | "embedded" => {
            command.env("ARGYLL_STORE", "memory");
        }
        _ => {}
    }
    if options.store == "redis" {
        command.env("ENGINE_REDIS_ADDR", &options.redis);
        command.env(
            "ENGINE_REDIS_PREFIX",
            format!("bench-{}:engine", std::process::id()),
        );
        command.env(
            "FLOW_REDIS_PREFIX",
            format!("bench-{}:flow", std::process::id()),
        );
    }
    let child = command.spawn().map_err(|e| {
        format!("cannot start {binary}: {e} (build it with cargo build --release -p argyll)")
    })?;
    let pid = child.id();
    Ok((
        EngineProcess {
            child,
            pid,
            data_dir,
        },
        format!("http://127.0.0.1:{port}"),
    ))
}

// ------------------------------------------------------------------ the step server

/// Answers at once with `{<out>: first numeric argument + 1}`; `out` comes from the query.
async fn fast_step(
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let n = body
        .get("arguments")
        .and_then(Value::as_object)
        .and_then(|a| a.values().find_map(Value::as_i64))
        .unwrap_or(0);
    let out = query.get("out").cloned().unwrap_or_else(|| "out".into());
    Json(json!({"success": true, "outputs": {out: n + 1}}))
}

async fn async_step(
    axum::extract::State(client): axum::extract::State<reqwest::Client>,
    Json(body): Json<Value>,
) -> Json<Value> {
    if let Some(url) = body
        .pointer("/metadata/webhook_url")
        .and_then(Value::as_str)
    {
        let url = url.to_owned();
        tokio::spawn(async move {
            let result = json!({"success": true, "outputs": {"done": true}});
            for _ in 0..5 {
                if client.post(&url).json(&result).send().await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    Json(json!({"success": true}))
}

async fn step_server(client: reqwest::Client) -> Result<String, String> {
    let app = axum::Router::new()
        .route("/fast", axum::routing::post(fast_step))
        .route("/async", axum::routing::post(async_step))
        .with_state(client);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

// ------------------------------------------------------------------ scenarios

struct Scenario {
    name: String,
    /// Work items per flow (for items/s).
    items: usize,
    goal: String,
    init: Box<dyn Fn(usize) -> Value + Send + Sync>,
}

async fn register(client: &reqwest::Client, engine: &str, step: Value) -> Result<(), String> {
    let response = client
        .post(format!("{engine}/engine/step"))
        .json(&step)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "registering {}: {}",
            step.get("id").unwrap_or(&Value::Null),
            response.text().await.unwrap_or_default()
        ))
    }
}

async fn setup(
    which: char,
    client: &reqwest::Client,
    engine: &str,
    steps: &str,
    run: &str,
    fan_out: usize,
) -> Result<Scenario, String> {
    let id = |name: &str| format!("{run}-{name}");
    let attr = |name: &str| format!("{run}_{name}");
    match which {
        'a' => {
            register(client, engine, json!({
                "id": id("hello"), "name": "hello", "type": "script",
                "attributes": {attr("name"): {"role": "required", "type": "string"},
                               attr("greeting"): {"role": "output", "type": "string"}},
                "script": {"language": "ale", "script": format!("{{:{} {}}}", attr("greeting"), attr("name"))}
            })).await?;
            let name = attr("name");
            Ok(Scenario {
                name: "a: one Ale script step".into(),
                items: 1,
                goal: id("hello"),
                init: Box::new(move |i| json!({name.clone(): format!("n{i}")})),
            })
        }
        'b' => {
            let chain = [("s1", "x", "v1"), ("s2", "v1", "v2"), ("s3", "v2", "v3")];
            for (step, input, output) in chain {
                register(client, engine, json!({
                    "id": id(step), "name": step, "type": "sync",
                    "http": {"endpoint": format!("{steps}/fast?out={}", attr(output))},
                    "attributes": {attr(input): {"role": "required"}, attr(output): {"role": "output"}},
                    "work_config": {"max_retries": 0}
                })).await?;
            }
            let x = attr("x");
            Ok(Scenario {
                name: "b: 3-step sync HTTP chain".into(),
                items: 3,
                goal: id("s3"),
                init: Box::new(move |i| json!({x.clone(): i})),
            })
        }
        'c' => {
            register(client, engine, json!({
                "id": id("fan"), "name": "fan", "type": "sync",
                "http": {"endpoint": format!("{steps}/fast?out={}", attr("r"))},
                "attributes": {attr("items"): {"role": "required", "type": "array", "for_each": true},
                               attr("r"): {"role": "output"}},
                "work_config": {"max_retries": 0, "parallelism": 10}
            })).await?;
            let items = attr("items");
            Ok(Scenario {
                name: format!("c: for_each {fan_out} items, parallelism 10"),
                items: fan_out,
                goal: id("fan"),
                init: Box::new(move |_| json!({items.clone(): (0..fan_out).collect::<Vec<_>>()})),
            })
        }
        'e' => {
            register(client, engine, json!({
                "id": id("big"), "name": "big", "type": "script",
                "attributes": {attr("x"): {"role": "required", "type": "array", "for_each": true},
                               attr("r"): {"role": "output"}},
                "script": {"language": "ale", "script": format!("{{:{} (* 2 {})}}", attr("r"), attr("x"))},
                "work_config": {"max_retries": 0, "parallelism": 100}
            })).await?;
            let x = attr("x");
            Ok(Scenario {
                name: format!("e: one fan-out of {fan_out} Ale items, parallelism 100"),
                items: fan_out,
                goal: id("big"),
                init: Box::new(move |_| json!({x.clone(): (0..fan_out).collect::<Vec<_>>()})),
            })
        }
        _ => {
            register(client, engine, json!({
                "id": id("async"), "name": "async", "type": "async",
                "http": {"endpoint": format!("{steps}/async")},
                "attributes": {attr("in"): {"role": "required"}, attr("done"): {"role": "output"}},
                "work_config": {"max_retries": 0}
            })).await?;
            let input = attr("in");
            Ok(Scenario {
                name: "d: async step completed by webhook".into(),
                items: 1,
                goal: id("async"),
                init: Box::new(move |i| json!({input.clone(): i})),
            })
        }
    }
}

// ------------------------------------------------------------------ running

#[derive(Serialize)]
struct Report {
    scenario: String,
    mode: String,
    store: String,
    engines: usize,
    clients: usize,
    /// The requested start rate, if any.
    target_rate: Option<f64>,
    flows: usize,
    errors: usize,
    seconds: f64,
    flows_per_second: f64,
    items_per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Flows completed in each second of the run.
    timeline: Vec<u64>,
    /// Completion rate over the first and the last 10 s (runs of 20 s or more).
    first_10s_per_second: Option<f64>,
    last_10s_per_second: Option<f64>,
    /// CPU seconds and RSS of the engine processes this harness started (summed).
    engine_cpu_seconds: Option<f64>,
    engine_rss_mb: Option<f64>,
    /// How long the start requests took (the start plans and records the flow's first steps).
    start_p99_ms: f64,
    start_max_ms: f64,
    /// The slowest answer to `GET /health` (probed every 20 ms during the run), and the 99th
    /// percentile: whether the engine stays responsive under the load.
    health_p99_ms: f64,
    health_max_ms: f64,
    /// Redis commands per completed flow (with `--redis`), in all and by command.
    redis_commands_per_flow: Option<f64>,
    redis_commands_by_kind: Option<BTreeMap<String, f64>>,
}

/// The part of a flow's state the clients read.
#[derive(serde::Deserialize)]
struct FlowStatus {
    status: Option<String>,
    error: Option<String>,
}

/// Runs one flow to its end; returns how long its start request took (ms).
async fn one_flow(
    client: &reqwest::Client,
    engine: &str,
    scenario: &Scenario,
    flow_id: &str,
    index: usize,
    poll: bool,
) -> Result<f64, String> {
    let body = json!({"id": flow_id, "goals": [scenario.goal], "init": (scenario.init)(index)});
    let started = Instant::now();
    let response = client
        .post(format!("{engine}/engine/flow"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("start: HTTP {}", response.status()));
    }
    let start_ms = started.elapsed().as_secs_f64() * 1000.0;
    loop {
        let url = if poll {
            format!("{engine}/engine/flow/{flow_id}")
        } else {
            format!("{engine}/engine/flow/{flow_id}?wait=30s")
        };
        let body = client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        // Only the status matters: skip the rest of the document instead of building it, so
        // the load generator leaves the cores to the engine.
        let flow: FlowStatus = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        match flow.status.as_deref() {
            Some("completed") => return Ok(start_ms),
            Some("failed") => {
                return Err(format!("flow failed: {}", flow.error.unwrap_or_default()));
            }
            _ if poll => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => {}
        }
    }
}

/// Latencies in microseconds from 1 µs to an hour, to 3 significant digits: a run's memory
/// does not grow with the flows it completes.
fn latency_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| format!("histogram: {e}"))
}

/// Records `elapsed` in `histogram` (clamped to its range).
fn record(histogram: &Mutex<Histogram<u64>>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.lock().saturating_record(micros.max(1));
}

/// The `quantile` of `histogram` in milliseconds (0 when empty).
fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// The largest value of `histogram` in milliseconds (0 when empty).
fn max_ms(histogram: &Histogram<u64>) -> f64 {
    histogram.max() as f64 / 1000.0
}

/// CPU seconds (user + system) and RSS bytes of several processes, summed (`sysinfo`).
fn usage_of(pids: &[u32]) -> Option<(f64, u64)> {
    if pids.is_empty() {
        return None;
    }
    let mut system = System::new().ok()?;
    let pids: Vec<Pid> = pids.iter().map(|pid| Pid::from_u32(*pid)).collect();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    pids.iter().try_fold((0.0, 0), |(cpu, rss), pid| {
        let process = system.process(*pid)?;
        let cpu_seconds = process.accumulated_cpu_time() as f64 / 1000.0;
        Some((cpu + cpu_seconds, rss + process.memory()))
    })
}

/// `INFO commandstats` of a Redis server: calls by command. A hand-written RESP exchange keeps
/// the harness free of a Redis client.
async fn redis_command_counts(addr: &str) -> Result<BTreeMap<String, u64>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("redis {addr}: {e}"))?;
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 8192];
    // `$<len>\r\n<text>\r\n`: read until the announced length has arrived.
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let text = String::from_utf8_lossy(&reply);
        if let Some((header, body)) = text.split_once("\r\n")
            && let Some(len) = header
                .strip_prefix('$')
                .and_then(|l| l.parse::<usize>().ok())
            && body.len() >= len
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply);
    Ok(text
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect())
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]
async fn run_scenario(
    options: &Options,
    client: &reqwest::Client,
    engines: &[String],
    scenario: Arc<Scenario>,
    run: &str,
    pids: &[u32],
) -> Result<Report, String> {
    let redis_before = if options.redis_given || options.store == "redis" {
        redis_command_counts(&options.redis).await.ok()
    } else {
        None
    };
    let started = Instant::now();
    let deadline = started + options.duration;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let latencies = Arc::new(Mutex::new(latency_histogram()?));
    let start_latencies = Arc::new(Mutex::new(latency_histogram()?));
    let seconds_slots = options.duration.as_secs() as usize + 600;
    let timeline: Arc<Vec<AtomicU64>> =
        Arc::new((0..seconds_slots).map(|_| AtomicU64::new(0)).collect());
    let before = usage_of(pids);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..options.clients.max(1) {
        let (client, engines, scenario) = (client.clone(), engines.to_vec(), scenario.clone());
        let (next, done, errors) = (next.clone(), done.clone(), errors.clone());
        let (latencies, first_error, timeline) =
            (latencies.clone(), first_error.clone(), timeline.clone());
        let start_latencies = start_latencies.clone();
        let (count, poll, run, rate) = (options.count, options.poll, run.to_owned(), options.rate);
        clients.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|count| index >= count)
                    || (count.is_none() && Instant::now() >= deadline)
                {
                    return;
                }
                if let Some(rate) = rate {
                    // Open loop: flow `index` is due `index / rate` seconds into the run.
                    let due = started + Duration::from_secs_f64(index as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    if count.is_none() && Instant::now() >= deadline {
                        return;
                    }
                }
                let engine = engines
                    .get(index % engines.len().max(1))
                    .map_or("", String::as_str);
                let flow_id = format!("{run}-f{index}");
                let t0 = Instant::now();
                match one_flow(&client, engine, &scenario, &flow_id, index, poll).await {
                    Ok(start_ms) => {
                        record(&latencies, t0.elapsed());
                        record(&start_latencies, Duration::from_secs_f64(start_ms / 1000.0));
                        let second = started.elapsed().as_secs() as usize;
                        if let Some(slot) = timeline.get(second) {
                            slot.fetch_add(1, Ordering::Relaxed);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().get_or_insert(error);
                    }
                }
            }
        });
    }
    // On a terminal only (indicatif hides it otherwise): a bar by flows done (`--count`) or by
    // time (`--duration`), with the flows per second of the last second.
    let bar = match options.count {
        Some(count) => ProgressBar::new(count as u64),
        None => ProgressBar::new(u64::try_from(options.duration.as_millis()).unwrap_or(u64::MAX)),
    };
    if let Ok(style) = ProgressStyle::with_template("  {prefix} [{bar:20}] {percent:>3}% {msg}") {
        bar.set_style(style.progress_chars("#-"));
    }
    bar.set_prefix(scenario.name.clone());
    let progress = {
        let (done, bar) = (done.clone(), bar.clone());
        let by_count = options.count.is_some();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = done.load(Ordering::Relaxed) as u64;
                let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                bar.set_position(if by_count { now } else { elapsed });
                bar.set_message(format!("{now} flows, {}/s", now - last));
                last = now;
            }
        })
    };
    let health_answers = Arc::new(Mutex::new(latency_histogram()?));
    let health = {
        let (client, engine) = (client.clone(), engines.first().cloned().unwrap_or_default());
        let answers = health_answers.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(20));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let t0 = Instant::now();
                if client.get(format!("{engine}/health")).send().await.is_ok() {
                    record(&answers, t0.elapsed());
                }
            }
        })
    };
    while clients.join_next().await.is_some() {}
    progress.abort();
    health.abort();
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    let after = usage_of(pids);
    let (latencies, starts, health) = (
        latencies.lock().clone(),
        start_latencies.lock().clone(),
        health_answers.lock().clone(),
    );
    if let Some(error) = first_error.lock().as_ref() {
        eprintln!("  first error: {error}");
    }
    let flows = done.load(Ordering::Relaxed);
    let whole_seconds = (seconds as usize).max(1);
    let timeline: Vec<u64> = timeline
        .iter()
        .take(whole_seconds)
        .map(|slot| slot.load(Ordering::Relaxed))
        .collect();
    let window = |from: usize| -> Option<f64> {
        (timeline.len() >= 20)
            .then(|| timeline.iter().skip(from).take(10).sum::<u64>() as f64 / 10.0)
    };
    let (first_10s, last_10s) = (window(0), window(timeline.len().saturating_sub(10)));
    let redis_after = match redis_before {
        Some(_) => redis_command_counts(&options.redis).await.ok(),
        None => None,
    };
    let redis_by_kind = redis_before.zip(redis_after).map(|(before, after)| {
        after
            .into_iter()
            .filter_map(|(name, calls)| {
                let delta = calls.saturating_sub(before.get(&name).copied().unwrap_or(0));
                (delta > 0).then(|| (name, delta as f64 / flows.max(1) as f64))
            })
            .collect::<BTreeMap<String, f64>>()
    });
    Ok(Report {
        scenario: scenario.name.clone(),
        mode: if options.poll {
            "poll 100 ms"
        } else {
            "long-poll"
        }
        .into(),
        store: options.url.clone().unwrap_or_else(|| options.store.clone()),
        engines: engines.len(),
        clients: options.clients,
        target_rate: options.rate,
        flows,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        flows_per_second: flows as f64 / seconds,
        items_per_second: (flows * scenario.items) as f64 / seconds,
        p50_ms: quantile_ms(&latencies, 0.50),
        p90_ms: quantile_ms(&latencies, 0.90),
        p99_ms: quantile_ms(&latencies, 0.99),
        max_ms: max_ms(&latencies),
        start_p99_ms: quantile_ms(&starts, 0.99),
        start_max_ms: max_ms(&starts),
        health_p99_ms: quantile_ms(&health, 0.99),
        health_max_ms: max_ms(&health),
        timeline,
        first_10s_per_second: first_10s,
        last_10s_per_second: last_10s,
        engine_cpu_seconds: before.zip(after).map(|((c0, _), (c1, _))| c1 - c0),
        engine_rss_mb: after.map(|(_, rss)| rss as f64 / (1024.0 * 1024.0)),
        redis_commands_per_flow: redis_by_kind.as_ref().map(|kinds| kinds.values().sum()),
        redis_commands_by_kind: redis_by_kind,
    })
}

fn print_table(reports: &[Report]) {
    println!(
        "{:<40} {:>8} {:>9} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10} {:>7} {:>8} {:>8} {:>10}",
        "scenario",
        "clients",
        "flows",
        "flows/s",
        "items/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "start max",
        "health max",
        "errors",
        "cpu s",
        "rss MB",
        "redis/flow"
    );
    for r in reports {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        println!(
            "{:<40} {:>8} {:>9} {:>10.0} {:>11.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>10.1} {:>7} {:>8} {:>8} {:>10}",
            r.scenario,
            r.clients,
            r.flows,
            r.flows_per_second,
            r.items_per_second,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.start_max_ms,
            r.health_max_ms,
            r.errors,
            opt(r.engine_cpu_seconds),
            opt(r.engine_rss_mb),
            opt(r.redis_commands_per_flow)
        );
        if let (Some(first), Some(last)) = (r.first_10s_per_second, r.last_10s_per_second) {
            println!(
                "{:<40} first 10 s: {first:.0} flows/s, last 10 s: {last:.0} flows/s ({:.0}%)",
                "",
                100.0 * last / first.max(1.0)
            );
        }
    }
}

async fn bench(options: Options) -> Result<Vec<Report>, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.clients.max(1) * 2)
        .build()
        .map_err(|e| e.to_string())?;
    let mut processes = Vec::new();
    let engines: Vec<String> = match &options.url {
        Some(url) => vec![url.trim_end_matches('/').to_owned()],
        None => {
            let mut urls = Vec::new();
            for _ in 0..options.engines {
                let (process, url) = start_engine(&options)?;
                processes.push(process);
                urls.push(url);
            }
            urls
        }
    };
    let started = Instant::now();
    for engine in &engines {
        while client.get(format!("{engine}/health")).send().await.is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("the engine at {engine} does not answer"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let first = engines.first().cloned().unwrap_or_default();
    let steps = step_server(client.clone()).await?;
    let run = format!(
        "b{}x{}",
        std::process::id(),
        started.elapsed().as_nanos() % 100_000
    );
    let pids: Vec<u32> = processes.iter().map(|p| p.pid).collect();
    let mut reports = Vec::new();
    for (n, which) in options.scenarios.iter().enumerate() {
        let run = format!("{run}{n}");
        let scenario =
            Arc::new(setup(*which, &client, &first, &steps, &run, options.fan_out).await?);
        reports.push(run_scenario(&options, &client, &engines, scenario, &run, &pids).await?);
    }
    drop(processes);
    Ok(reports)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("argyll-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(options.clone())) {
        Ok(reports) => {
            if options.json {
                let by_scenario: BTreeMap<&str, &Report> =
                    reports.iter().map(|r| (r.scenario.as_str(), r)).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&by_scenario).unwrap_or_default()
                );
            } else {
                print_table(&reports);
            }
            if reports.iter().any(|r| r.errors > 0) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("argyll-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
