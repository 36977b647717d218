//! Accepting connections with bounds: at most `max_connections` at once (one more is answered
//! `503` and closed at once), request headers — and the wait for the next request on an idle
//! keep-alive connection — within `header_timeout`, and running out of file descriptors logged
//! once instead of at every accept.
//!
//! Why not `axum::serve`: it has no header or idle timeout and no connection cap, so slow
//! clients held connections forever; with 256 descriptors, 260 of them made `/health` time
//! out. This loop serves HTTP/1.1 (with upgrades, for the WebSocket stream) through hyper with
//! those settings, and shuts down gracefully like `axum::serve`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

/// Bounds on the server's connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections served at once (`ENGINE_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Time for a request's headers to arrive, counted from when the connection starts
    /// waiting for the request — so also the longest a keep-alive connection stays idle
    /// (`ENGINE_HEADER_TIMEOUT`).
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// How long a refused connection gets to take its `503`.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);
/// Pause after an accept failed for want of descriptors (they come back as connections end).
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);
/// Least time between two reports of running out of descriptors.
const EXHAUSTION_REPORT_GAP: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then stops accepting,
/// asks every connection to finish its current request, and waits up to `grace` for them.
pub(crate) async fn serve_bounded(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let (closing, closed) = watch::channel(false);
    // Whether accepting is failing for want of descriptors, and when that was last logged.
    let mut exhausted = false;
    let mut reported: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                exhausted = false;
                stream
            }
            Err(error) if is_out_of_descriptors(&error) => {
                // Once per spell of failures, and not more than once a minute: a server
                // short of descriptors fails every accept, and a log line per accept would
                // only make things worse.
                let quiet = reported.is_some_and(|at| at.elapsed() < EXHAUSTION_REPORT_GAP);
                if !exhausted && !quiet {
                    reported = Some(tokio::time::Instant::now());
                    tracing::error!(%error, max_connections = limits.max_connections, "out of file descriptors: new connections wait until some close (raise the open-file limit or lower ENGINE_MAX_CONNECTIONS)");
                }
                exhausted = true;
                tokio::time::sleep(EXHAUSTED_PAUSE).await;
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let (app, mut closed) = (app.clone(), closed.clone());
                connections.spawn(async move {
                    serve_one(stream, app, limits.header_timeout, &mut closed).await;
                    drop(permit);
                });
            }
            Err(_) => {
                connections.spawn(refuse(stream, limits.max_connections));
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    connections.close();
    let _ = tokio::time::timeout(grace, connections.wait()).await;
}

fn is_out_of_descriptors(error: &std::io::Error) -> bool {
    // EMFILE (the process's limit) and ENFILE (the system's).
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// Serves one connection until it ends or the server closes.
async fn serve_one(
    stream: TcpStream,
    app: Router,
    header_timeout: Duration,
    closed: &mut watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            return;
        }
        _ = closed.wait_for(|closed| *closed) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Answers a connection beyond the cap with a `503` in the usual error body, and closes it.
async fn refuse(mut stream: TcpStream, max_connections: usize) {
    let body = serde_json::json!({
        "error": format!("too many connections: the server serves at most {max_connections} at once (ENGINE_MAX_CONNECTIONS)"),
        "status": 503,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Write, stop writing, then read what the client sent until it closes: closing with its
    // request unread would reset the connection and lose the answer on the way.
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
    })
    .await;
}
