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
        let port = free_port().unwrap();
        let log = std::env::temp_dir().join(unique(&format!("argyll-{name}")) + ".log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_argyll"));
        command.env_clear().args(subcommand);
        for (name, value) in settings {
            command.env(name, value);
        }
        let child = command
            .env("ENGINE_HOST", "127.0.0.1")
            .env("ENGINE_PORT", port.to_string())
            .env("WEBHOOK_BASE_URL", format!("http://127.0.0.1:{port}"))
            .env("ENGINE_REDIS_ADDR", redis)
            .env("ENGINE_INSTANCE_ID", name)
            .env("WORK_LEASE_TIMEOUT", LEASE)
            .env(
                "ENGINE_LOGGING_LEVEL",
                std::env::var("MANY_INSTANCES_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .env("ENGINE_LOG_FORMAT", "json")
            .env("ARGYLL_CONFIG", "/nonexistent/argyll.toml")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        EngineProcess {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
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
    }
}

// ------------------------------------------------------------------ driving

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
