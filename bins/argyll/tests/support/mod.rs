//! Helpers shared by the multi-process tests: `argyll` engine processes on Redis and a
//! retrying JSON client.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub,
    missing_docs
)]

pub mod browser;
pub mod chain;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use argyll_testkit::{free_port, unique};
use serde_json::Value;

/// Work leases of the engines under test: short, so take-overs happen quickly.
pub const LEASE: &str = "2s";

// ------------------------------------------------------------------ engine processes

pub struct EngineProcess {
    child: Option<Child>,
    pub base: String,
    log: PathBuf,
    /// The data directory made for it (removed with it); `None` when the test chose one.
    data: Option<PathBuf>,
}

impl EngineProcess {
    pub fn start(name: &str, redis: &str) -> Self {
        Self::start_with(name, redis, &[], None)
    }

    /// An engine with extra settings, optionally running a subcommand (`archive`).
    pub fn start_with(
        name: &str,
        redis: &str,
        settings: &[(&str, String)],
        subcommand: Option<&str>,
    ) -> Self {
        let mut all = vec![("ENGINE_REDIS_ADDR", redis.to_owned())];
        all.extend(settings.iter().cloned());
        Self::launch(name, &all, subcommand, &[])
    }

    /// An engine on the local store in a fresh data directory (unless `settings` name a Redis,
    /// another store or directory), run under `prlimit`
    /// with `limits` (e.g. `--as=2000000000`, `--nofile=256`) when there are any. `settings`
    /// override the defaults of these tests (short leases, JSON logs at `warn`).
    pub fn launch(
        name: &str,
        settings: &[(&str, String)],
        subcommand: Option<&str>,
        limits: &[&str],
    ) -> Self {
        // A restart on the same port keeps the clients' URLs (and the webhook URLs) valid.
        let port = settings
            .iter()
            .find(|(name, _)| *name == "ENGINE_PORT")
            .map_or_else(|| free_port().unwrap(), |(_, port)| port.parse().unwrap());
        let log = std::env::temp_dir().join(unique(&format!("argyll-{name}")) + ".log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = if limits.is_empty() {
            Command::new(env!("CARGO_BIN_EXE_argyll"))
        } else {
            let mut prlimit = Command::new("prlimit");
            prlimit
                .args(limits)
                .arg("--")
                .arg(env!("CARGO_BIN_EXE_argyll"));
            prlimit
        };
        command
            .env_clear()
            .args(subcommand)
            .env("ENGINE_HOST", "127.0.0.1")
            .env("ENGINE_PORT", port.to_string())
            .env("WEBHOOK_BASE_URL", format!("http://127.0.0.1:{port}"))
            .env("ENGINE_INSTANCE_ID", name)
            .env("WORK_LEASE_TIMEOUT", LEASE)
            .env(
                "ENGINE_LOGGING_LEVEL",
                std::env::var("MANY_INSTANCES_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .env("ENGINE_LOG_FORMAT", "json")
            .env("ARGYLL_CONFIG", "/nonexistent/argyll.toml")
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        let data = if settings.iter().any(|(name, _)| *name == "ARGYLL_DATA_DIR") {
            None
        } else {
            let dir = std::env::temp_dir().join(unique(&format!("argyll-{name}-data")));
            command.env("ARGYLL_DATA_DIR", &dir);
            Some(dir)
        };
        for (name, value) in settings {
            command.env(name, value);
        }
        let child = command
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        EngineProcess {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
            data,
        }
    }

    /// The process id (of `prlimit`'s exec'd engine, which keeps the pid).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the engine process in bytes (Linux `/proc`).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Whether the process is still running (it did not crash or abort).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGTERM, then waits up to `within` for the process to exit; whether it did.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub async fn wait_healthy(&self, client: &reqwest::Client) {
        for _ in 0..500 {
            if client
                .get(format!("{}/health", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} never answered", self.base);
    }

    /// SIGKILL: no shutdown, no lease release.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
        if let Some(data) = &self.data {
            let _ = std::fs::remove_dir_all(data);
        }
    }
}

// ------------------------------------------------------------------ driving

/// Serves `app` (step handlers) on a free local port for the rest of the test; its base URL.
pub async fn serve_steps(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// `GET url` as JSON (any status).
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Registers (or updates) `step` on `engine`, failing the test unless it is accepted.
pub async fn register_step(client: &reqwest::Client, engine: &str, step: &Value) {
    let (status, body) = send(
        client,
        reqwest::Method::POST,
        &format!("{engine}/engine/step"),
        step,
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {body}");
}

/// Sends a request until it gets an answer that is not 503 (the store may be restarting).
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &Value,
) -> (u16, Value) {
    for _ in 0..600 {
        match client.request(method.clone(), url).json(body).send().await {
            Ok(response) if response.status() != 503 => {
                let status = response.status().as_u16();
                let body = response.json().await.unwrap_or(Value::Null);
                return (status, body);
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("{url} never answered");
}
