//! One source of truth for defaults: the server's and the archiver's own defaults (what an
//! embedder gets) are the documented settings of `argyll-config`'s sections, as the binary
//! uses them with no setting given.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use argyll_archive::ArchivePolicy;
use argyll_config::Settings;
use argyll_server::ServerConfig;

#[test]
fn the_server_defaults_are_the_documented_settings() {
    let server = ServerConfig::default();
    let documented = Settings::default().server;
    assert_eq!(server.max_request_bytes, documented.max_request_bytes);
    assert_eq!(server.shutdown_timeout, documented.shutdown_timeout);
    assert_eq!(server.body_timeout, documented.body_timeout);
    assert_eq!(server.connections.header_timeout, documented.header_timeout);
    assert_eq!(server.websocket.max_clients, documented.ws_max_clients);
    assert_eq!(server.websocket.send_queue, documented.ws_send_queue);
}

#[test]
fn the_archive_defaults_are_the_documented_settings() {
    let policy = ArchivePolicy::default();
    let documented = Settings::from_sources([("ARCHIVE_BUCKET_URL", "s3://b")], None)
        .unwrap()
        .archive
        .expect("a bucket turns archiving on");
    assert_eq!(policy.memory_percent, documented.memory_percent);
    assert_eq!(policy.max_age, documented.max_age);
    assert_eq!(
        policy.memory_check_interval,
        documented.memory_check_interval
    );
    assert_eq!(policy.sweep_interval, documented.sweep_interval);
    assert_eq!(policy.lease_timeout, documented.lease_timeout);
    assert_eq!(policy.pressure_batch, documented.pressure_batch);
    assert_eq!(policy.sweep_batch, documented.sweep_batch);
    assert_eq!(policy.poll_interval, documented.poll_interval);
}
