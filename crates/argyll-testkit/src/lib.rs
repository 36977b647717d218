//! # argyll-testkit
//!
//! What Argyll's integration tests run against: real `redis-server` processes on free ports —
//! a single server (optionally with AOF, restartable), or a three-node Redis Cluster joined with
//! `redis-cli --cluster create`. Each server runs under a small shell guard that kills it when
//! the test process exits (its stdin pipe closes), so no server outlives its test binary even
//! when the servers are kept in statics, one per test binary.
//!
//! [`Chromedriver`] runs Debian's `chromedriver` the same way, for the console's browser tests.
//!
//! [`spec_dir`] finds the shared specification the conformance and acceptance tests read
//! (`ARGYLL_SPEC_DIR`), or says they are skipped.
//!
//! **Must not depend on**: any Argyll crate; it is test infrastructure only.

mod browser;
mod spec;

pub use browser::{Chromedriver, chromium_binary};
pub use spec::{SPEC_DIR_VAR, SPEC_REQUIRED_VAR, spec_dir};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a test server could not be started.
#[derive(Debug)]
pub struct HarnessError(pub String);

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

fn fail(message: impl Into<String>) -> HarnessError {
    HarnessError(message.into())
}

/// A free TCP port on 127.0.0.1 (free when asked), never one this process was given before: two
/// servers started at once by one test binary once got the same port, and the second one's
/// readiness check was answered by the first.
pub fn free_port() -> Result<u16, HarnessError> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .map_err(|e| fail(format!("no free port: {e}")))?;
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err(fail("no free port that this process was not given before"))
}

/// A unique name for keys or files of one test.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Sends one command in RESP and returns the raw reply (enough for PING and CLUSTER INFO).
pub fn redis_command(port: u16, args: &[&str]) -> Result<String, HarnessError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| fail(format!("connect to 127.0.0.1:{port}: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| fail(e.to_string()))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut reply = vec![0u8; 8192];
    let read = stream.read(&mut reply).map_err(|e| fail(e.to_string()))?;
    Ok(String::from_utf8_lossy(reply.get(..read).unwrap_or_default()).into_owned())
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), HarnessError> {
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > timeout {
            return Err(fail(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Runs `command` under a shell guard that kills it (SIGKILL) when the guard's stdin closes:
/// on [`stop_guarded`] or when the test process exits, whichever comes first.
fn spawn_guarded(command: &str) -> Result<Child, HarnessError> {
    let script = format!("{command} >/dev/null 2>&1 & pid=$!; read -r _; kill -9 $pid 2>/dev/null");
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot start `{command}`: {e}")))
}

/// Stops a guarded process and waits until its port is closed.
fn stop_guarded(guard: &mut Option<Child>, port: u16) -> Result<(), HarnessError> {
    // Nothing of ours runs (never started, or stopped already): the port is not ours to watch.
    let Some(mut guard) = guard.take() else {
        return Ok(());
    };
    drop(guard.stdin.take());
    let _ = guard.wait();
    wait_until(
        &format!("port {port} to close"),
        Duration::from_secs(10),
        || TcpStream::connect(("127.0.0.1", port)).is_err(),
    )
}

/// One `redis-server` process.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    guard: Option<Child>,
}

impl RedisServer {
    /// A plain in-memory server on a free port.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(&[])
    }

    /// A server with append-only-file persistence (`appendfsync always`), so a restart keeps
    /// every acknowledged write.
    pub fn start_persistent() -> Result<Self, HarnessError> {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Result<Self, HarnessError> {
        // A port taken by someone else between asking and binding: try another one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_on_a_free_port(extra) {
                Err(error) if attempt < 3 && error.0.contains("is held by another") => continue,
                other => return other,
            }
        }
    }

    fn start_on_a_free_port(extra: &[&str]) -> Result<Self, HarnessError> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(unique("argyll-redis"));
        std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let mut server = RedisServer {
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            guard: None,
        };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        let mut command = format!(
            "redis-server --port {} --bind 127.0.0.1 --dir '{}' --save '' --daemonize no --loglevel warning",
            self.port,
            self.dir.display()
        );
        for arg in &self.extra {
            command.push_str(&format!(" '{arg}'"));
        }
        // The guard shell kills the server when its stdin closes (the test process exited).
        let script =
            format!("{command} >/dev/null 2>&1 & pid=$!; read -r _; kill -9 $pid 2>/dev/null");
        let guard = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start redis-server (is it installed?): {e}")))?;
        self.guard = Some(guard);
        let port = self.port;
        wait_until(
            &format!("redis-server on port {port}"),
            Duration::from_secs(10),
            || redis_command(port, &["PING"]).is_ok_and(|reply| reply.contains("PONG")),
        )?;
        // The server that answers must be this one (its own directory), not another process
        // that holds the port.
        let dir = self.dir.display().to_string();
        let name = self
            .dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let answered = redis_command(port, &["CONFIG", "GET", "dir"])?;
        if answered.contains(&name) {
            Ok(())
        } else {
            // Ours exited when it could not bind; its guard goes, the other server stays.
            if let Some(mut guard) = self.guard.take() {
                drop(guard.stdin.take());
                let _ = guard.wait();
            }
            Err(fail(format!(
                "port {port} is held by another redis-server (it answers dir {answered:?}, not {dir})"
            )))
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many keys match `pattern` (`KEYS`; for tests' small databases only).
    pub fn count_keys(&self, pattern: &str) -> Result<usize, HarnessError> {
        let reply = redis_command(self.port, &["KEYS", pattern])?;
        reply
            .lines()
            .next()
            .and_then(|line| line.strip_prefix('*'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| fail(format!("unexpected reply to KEYS: {reply}")))
    }

    /// Kills the server (`SIGKILL`, like a crash) and waits until the port is closed.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        stop_guarded(&mut self.guard, self.port)
    }

    /// Starts the server again on the same port and directory (AOF data is reloaded).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.launch()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-master Redis Cluster on free ports.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three `--cluster-enabled yes` servers and joins them (no replicas).
    pub fn start() -> Result<Self, HarnessError> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let config = unique("nodes") + ".conf";
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config,
                "--cluster-node-timeout",
                "2000",
            ])?);
        }
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| fail(format!("cannot run redis-cli: {e}")))?;
        if !output.status.success() {
            return Err(fail(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        for node in &nodes {
            let port = node.port();
            wait_until("cluster state ok", Duration::from_secs(20), || {
                redis_command(port, &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })?;
        }
        Ok(RedisCluster { nodes })
    }

    /// The nodes' addresses, comma-separated (how Argyll's settings name a cluster).
    pub fn addrs(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::addr)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A `moto_server` (the S3 API from PyPI's `moto[server]`) on a free port.
///
/// Found as `$MOTO_SERVER`, on `PATH`, or in the venv `scripts/ensure-tools` makes
/// (`~/.cache/argyll/venv`).
#[derive(Debug)]
pub struct MotoServer {
    port: u16,
    guard: Option<Child>,
}

fn moto_binary() -> String {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return path;
    }
    let venv = std::env::var("HOME")
        .map(|home| format!("{home}/.cache/argyll/venv/bin/moto_server"))
        .unwrap_or_default();
    if std::path::Path::new(&venv).exists() {
        venv
    } else {
        "moto_server".into()
    }
}

impl MotoServer {
    /// Starts the S3 API and waits until it answers.
    pub fn start() -> Result<Self, HarnessError> {
        let mut server = MotoServer {
            port: free_port()?,
            guard: None,
        };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        let command = format!("'{}' -H 127.0.0.1 -p {}", moto_binary(), self.port);
        self.guard = Some(spawn_guarded(&command)?);
        let port = self.port;
        wait_until(
            &format!("moto_server on port {port}"),
            Duration::from_secs(30),
            || http_request(port, "GET", "/").is_ok(),
        )
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (path-style `PUT /<name>`; moto does not check signatures).
    pub fn create_bucket(&self, name: &str) -> Result<(), HarnessError> {
        let reply = http_request(self.port, "PUT", &format!("/{name}"))?;
        if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(fail(format!("creating bucket {name}: {reply}")))
        }
    }

    /// Stops the server (its buckets are gone: moto keeps them in memory).
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        stop_guarded(&mut self.guard, self.port)
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.launch()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn http_request(port: u16, method: &str, path: &str) -> Result<String, HarnessError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| fail(format!("connect to 127.0.0.1:{port}: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| fail(e.to_string()))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| fail(e.to_string()))?;
    Ok(reply)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn no_port_is_given_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    /// What made a cluster node out of a plain server: a second server on a port the first
    /// holds was taken for started, because the first answered its PING.
    #[test]
    fn a_server_whose_port_is_held_by_another_is_not_taken_for_started() {
        let first = RedisServer::start().unwrap();
        let dir = std::env::temp_dir().join(unique("argyll-redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut second = RedisServer {
            port: first.port(),
            dir,
            extra: Vec::new(),
            guard: None,
        };
        let error = second.launch().unwrap_err();
        assert!(error.0.contains("is held by another"), "{error}");
        assert!(
            redis_command(first.port(), &["PING"])
                .unwrap()
                .contains("PONG")
        );
    }
}
