//! The binary as users run it: the black-box acceptance suite (`../shared/acceptance/`) and
//! the README quickstart, each against a freshly started `argyll` on its default store (the
//! local store, in a data directory of its own), on the in-memory store and on Redis.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `argyll` binary, killed on drop.
struct Server {
    child: Child,
    port: u16,
    first_line: String,
    lines: mpsc::Receiver<String>,
    /// The server's data directory, removed after it (unless the test chose its own).
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// The first log line (after the first one) that contains `needle`, waiting up to 10 s
    /// for it; `Err` with every line read when none came.
    fn log_line_containing(&self, needle: &str) -> Result<String, Vec<String>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut read = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(line) => read.push(line),
                Err(_) => break,
            }
        }
        Err(read)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn start_server() -> Server {
    start_server_with(&[])
}

/// A server with `settings` over the defaults of these tests; on a data directory of its own
/// unless `settings` name one.
fn start_server_with(settings: &[(&str, String)]) -> Server {
    match try_start_server_with(settings) {
        Ok(server) => server,
        Err(log) => panic!("the server did not start:\n{log}"),
    }
}

/// [`start_server_with`], or what the server printed when it exited instead of serving.
fn try_start_server_with(settings: &[(&str, String)]) -> Result<Server, String> {
    let port = free_port();
    let data = if settings.iter().any(|(name, _)| *name == "ARGYLL_DATA_DIR") {
        None
    } else {
        Some(tempfile::tempdir().unwrap())
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_argyll"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENGINE_HOST", "127.0.0.1")
        .env("ENGINE_PORT", port.to_string())
        .env("WEBHOOK_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("ENGINE_LOGGING_LEVEL", "info")
        .env("ARGYLL_CONFIG", "/nonexistent/argyll.toml");
    if let Some(data) = &data {
        command.env("ARGYLL_DATA_DIR", data.path().join("argyll-data"));
    }
    for (name, value) in settings {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                // Keep draining so the server never blocks on a full pipe.
                continue;
            }
        }
    });
    let Ok(first_line) = lines_rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server logged nothing within 30 s");
    };
    let started = Instant::now();
    while get(port, "/health").is_none() {
        if let Ok(Some(_)) = child.try_wait() {
            let rest: Vec<String> = lines_rx.try_iter().collect();
            return Err(format!("{first_line}\n{}", rest.join("\n")));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Server {
        child,
        port,
        first_line,
        lines: lines_rx,
        _data: data,
    })
}

/// The black-box acceptance suite of the shared specification; `None` (the test is skipped,
/// with a line saying so) when the specification is not there.
fn acceptance_suite() -> Option<PathBuf> {
    let spec = argyll_testkit::spec_dir("the black-box acceptance suite")?;
    Some(spec.join("acceptance/argyll_accept.py"))
}

#[test]
fn first_log_line_names_the_local_store_and_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = start_server_with(&[("ARGYLL_DATA_DIR", data_dir.display().to_string())]);
    assert!(
        server.first_line.contains("using the local store")
            && server.first_line.contains(&data_dir.display().to_string()),
        "{}",
        server.first_line
    );
    assert!(
        data_dir.join("FORMAT").exists(),
        "the data directory is created"
    );
}

#[test]
fn first_log_line_on_the_memory_store_says_state_is_not_kept() {
    let server = start_server_with(&[("ARGYLL_STORE", "memory".into())]);
    assert!(
        server.first_line.contains("in-memory store") && server.first_line.contains("not kept"),
        "{}",
        server.first_line
    );
    assert!(server.first_line.contains("WARN"), "{}", server.first_line);
}

#[test]
fn a_data_dir_in_use_by_another_server_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = ("ARGYLL_DATA_DIR", dir.path().display().to_string());
    let _first = start_server_with(std::slice::from_ref(&data_dir));
    let log = try_start_server_with(&[data_dir])
        .err()
        .expect("a second server on the same directory fails");
    assert!(
        log.contains("ARGYLL_DATA_DIR=") && log.contains("locked by another running process"),
        "{log}"
    );
}

#[test]
fn a_data_dir_that_cannot_be_created_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be: nothing can be created under it.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let log = try_start_server_with(&[(
        "ARGYLL_DATA_DIR",
        blocker.join("data").display().to_string(),
    )])
    .err()
    .expect("the server refuses to start");
    assert!(
        log.contains("ARGYLL_DATA_DIR=") && log.contains("is not writable"),
        "{log}"
    );
}

/// The acceptance runs share two cores; run one at a time so that the suite's timing
/// windows (its webhook mock, its 15 s flow deadline) measure the engine, not the machine.
static ACCEPTANCE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_acceptance_suite(suite: &Path, server: &Server) {
    let _one_at_a_time = ACCEPTANCE.lock().unwrap_or_else(|p| p.into_inner());
    let output = Command::new("python3")
        .arg(suite)
        .arg("--base")
        .arg(format!("http://127.0.0.1:{}", server.port))
        .output()
        .expect("python3 runs the acceptance suite");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "acceptance suite failed:\n{report}"
    );
    assert!(report.contains(" passed, 0 failed"), "{report}");
}

#[test]
fn acceptance_suite_passes_on_the_default_local_store() {
    let Some(suite) = acceptance_suite() else {
        return;
    };
    let server = start_server();
    assert!(
        server.first_line.contains("using the local store")
            && server
                .first_line
                .contains(&std::env::temp_dir().display().to_string()),
        "on a data directory of its own: {}",
        server.first_line
    );
    run_acceptance_suite(&suite, &server);
}

#[test]
fn acceptance_suite_passes_on_the_memory_store() {
    let Some(suite) = acceptance_suite() else {
        return;
    };
    run_acceptance_suite(
        &suite,
        &start_server_with(&[("ARGYLL_STORE", "memory".into())]),
    );
}

#[test]
fn acceptance_suite_passes_on_redis() {
    let Some(suite) = acceptance_suite() else {
        return;
    };
    let redis = argyll_testkit::RedisServer::start().unwrap();
    let server = start_server_with(&[("ENGINE_REDIS_ADDR", redis.addr())]);
    assert!(
        server.first_line.contains("using the Redis store"),
        "{}",
        server.first_line
    );
    run_acceptance_suite(&suite, &server);
}

#[test]
fn acceptance_suite_passes_on_redis_cluster() {
    let Some(suite) = acceptance_suite() else {
        return;
    };
    let cluster = argyll_testkit::RedisCluster::start().unwrap();
    let server = start_server_with(&[("ENGINE_REDIS_ADDR", cluster.addrs())]);
    run_acceptance_suite(&suite, &server);
}

#[test]
fn acceptance_suite_passes_with_engine_and_flow_stores_on_two_redis_servers() {
    let Some(suite) = acceptance_suite() else {
        return;
    };
    let engine_redis = argyll_testkit::RedisServer::start().unwrap();
    let flow_redis = argyll_testkit::RedisServer::start().unwrap();
    let server = start_server_with(&[
        ("ENGINE_REDIS_ADDR", engine_redis.addr()),
        ("FLOW_REDIS_ADDR", flow_redis.addr()),
    ]);
    run_acceptance_suite(&suite, &server);
    let engine_keys = argyll_testkit::redis_command(engine_redis.port(), &["DBSIZE"]).unwrap();
    let flow_keys = argyll_testkit::redis_command(flow_redis.port(), &["DBSIZE"]).unwrap();
    assert!(
        engine_keys.starts_with(':') && engine_keys != ":0\r\n",
        "{engine_keys}"
    );
    assert!(
        flow_keys.starts_with(':') && flow_keys != ":0\r\n",
        "{flow_keys}"
    );
}

#[test]
fn start_up_against_an_unreachable_redis_fails_naming_the_address() {
    let port = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_argyll"))
        .env_clear()
        .env("ENGINE_PORT", free_port().to_string())
        .env("ENGINE_REDIS_ADDR", format!("127.0.0.1:{port}"))
        .env("ARGYLL_CONFIG", "/nonexistent/argyll.toml")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");
}

/// The README's quickstart block, run as written (port swapped for a free one).
#[test]
fn readme_quickstart_works_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("## Quickstart")
        .nth(1)
        .expect("README has a Quickstart section");
    let script = section
        .split("```bash\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("the quickstart has a bash block");
    assert!(script.contains("curl"), "{script}");
    let server = start_server();
    let script = script.replace("localhost:8080", &format!("localhost:{}", server.port));
    let output = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(r#""message":"Step registered""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#""flow_id":"hello-flow""#), "{stdout}");
    assert!(
        stdout.contains(r#""greeting":{"value":"Argyll","step":"hello-script"}"#),
        "{stdout}"
    );
    assert!(stdout.contains(r#""status":"completed""#), "{stdout}");
}

/// A small HTTP/1.0 request: (status, body).
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let message = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(message.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some((status, body))
}

#[test]
fn a_redis_outage_answers_503_then_recovers() {
    let mut redis = argyll_testkit::RedisServer::start_persistent().unwrap();
    let server = start_server_with(&[("ENGINE_REDIS_ADDR", redis.addr())]);
    let step = r#"{"id": "s", "name": "s", "type": "script",
        "attributes": {"x": {"role": "required"}, "y": {"role": "output"}},
        "script": {"language": "ale", "script": "{:y (* 2 x)}"}}"#;
    assert_eq!(
        request(server.port, "POST", "/engine/step", step)
            .unwrap()
            .0,
        201
    );
    let start = |id: &str| format!(r#"{{"id": "{id}", "goals": ["s"], "init": {{"x": 21}}}}"#);
    assert_eq!(
        request(server.port, "POST", "/engine/flow", &start("before"))
            .unwrap()
            .0,
        201
    );

    redis.kill().unwrap();
    let (status, body) = request(server.port, "POST", "/engine/flow", &start("during")).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("store unavailable") && body.contains("\"status\":503"),
        "{body}"
    );
    assert_eq!(
        request(server.port, "GET", "/health", "").unwrap().0,
        200,
        "the process serves on"
    );

    redis.restart().unwrap();
    let mut started = None;
    for _ in 0..200 {
        if let Some((status @ (200 | 201), _)) =
            request(server.port, "POST", "/engine/flow", &start("after"))
        {
            started = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.is_some(), "writes work again after the restart");
    let (status, flow) = request(server.port, "GET", "/engine/flow/after?wait=10s", "").unwrap();
    assert_eq!(status, 200);
    assert!(flow.contains(r#""status":"completed""#), "{flow}");
    let (_, before) = request(server.port, "GET", "/engine/flow/before?wait=10s", "").unwrap();
    assert!(
        before.contains(r#""status":"completed""#),
        "acknowledged before the outage: {before}"
    );

    let line = server
        .log_line_containing("redis connection lost")
        .unwrap_or_else(|lines| {
            panic!("no `redis connection lost` line in:\n{}", lines.join("\n"))
        });
    assert!(line.contains("WARN"), "{line}");
}

#[test]
fn help_names_the_commands_and_the_configuration() {
    let output = Command::new(env!("CARGO_BIN_EXE_argyll"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "serve",
        "archive",
        "--config",
        "ARGYLL_CONFIG",
        "docs/configuration.md",
    ] {
        assert!(help.contains(expected), "{expected} missing from:\n{help}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_argyll"))
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("bogus"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `FLOW_RETENTION` bounds a long-running server on every store: on the in-memory and the
/// local store, finished flows leave once they are older than it.
#[test]
fn finished_flows_leave_after_flow_retention_on_the_memory_and_local_stores() {
    for store in ["memory", "local"] {
        let server = start_server_with(&[
            ("ARGYLL_STORE", store.into()),
            ("FLOW_RETENTION", "1s".into()),
        ]);
        let step = r#"{"id":"double","name":"double","type":"script",
            "attributes":{"x":{"role":"required"},"y":{"role":"output"}},
            "script":{"language":"ale","script":"{:y (* 2 x)}"}}"#;
        let (status, body) = request(server.port, "POST", "/engine/step", step).unwrap();
        assert_eq!(
            status, 201,
            "{store}: {body} (first line {})",
            server.first_line
        );
        for n in 0..3 {
            let start = format!(r#"{{"id":"kept-{n}","goals":["double"],"init":{{"x":{n}}}}}"#);
            let (status, body) = request(server.port, "POST", "/engine/flow", &start).unwrap();
            assert_eq!(status, 201, "{body}");
            let (_, flow) = request(
                server.port,
                "GET",
                &format!("/engine/flow/kept-{n}?wait=10s"),
                "",
            )
            .unwrap();
            assert!(flow.contains(r#""status":"completed""#), "{flow}");
        }
        // Waits for the signal (the listing), a second of retention plus a round.
        let started = Instant::now();
        loop {
            let (_, listing) = request(server.port, "GET", "/engine/flow", "").unwrap();
            if listing.contains(r#""count":0"#) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{store}: still listed: {listing}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, _) = request(server.port, "GET", "/engine/flow/kept-0", "").unwrap();
        assert_eq!(status, 404, "{store}: a deleted flow is not found");
        assert!(
            server
                .log_line_containing("deleted finished flows past their retention")
                .is_ok(),
            "{store}: the deletion is logged"
        );
    }
}
