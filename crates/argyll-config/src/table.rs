//! [`SETTINGS`]: every setting with its names, documented default and description, in
//! documentation order. `docs/configuration.md` is checked against it, and every default written
//! here is checked to parse to the default of its section (`tests/settings.rs`).

/// One documented setting.
#[derive(Clone, Copy, Debug)]
pub struct SettingSpec {
    /// The primary environment variable.
    pub name: &'static str,
    /// Other accepted names (the original engine's), in order of preference.
    pub aliases: &'static [&'static str],
    /// The default, as written in the docs.
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
}

macro_rules! settings_table {
    ($($name:literal $([$($alias:literal),*])? = $default:literal : $description:literal;)*) => {
        /// Every setting, in documentation order.
        pub const SETTINGS: &[SettingSpec] = &[$(SettingSpec {
            name: $name,
            aliases: &[$($($alias),*)?],
            default: $default,
            description: $description,
        }),*];
    };
}

settings_table! {
    "ENGINE_HOST" ["API_HOST"] = "0.0.0.0" : "Address the HTTP API listens on.";
    "ENGINE_PORT" ["API_PORT"] = "8080" : "Port of the HTTP API (1-65535).";
    "WEBHOOK_BASE_URL" = "http://localhost:<port>" : "Base URL async steps receive for their webhook (`<base>/webhook/<flow>/<step>/<token>`).";
    "ENGINE_LOGGING_LEVEL" ["LOG_LEVEL"] = "info" : "Log level: `debug`, `info`, `warn` or `error`.";
    "ENGINE_LOG_FORMAT" = "human" : "Log format: `human` or `json`.";
    "ARGYLL_STORE" = "(local, or redis when a Redis address is set)" : "The store: `local` (durable, in `ARGYLL_DATA_DIR`; one process), `memory` (nothing is kept when the process exits; for tests and trials) or `redis` (Redis/Valkey; many instances). Contradicting the Redis addresses is an error.";
    "ARGYLL_DATA_DIR" = "./argyll-data" : "The local store's directory, created if missing. One process at a time: a second one fails at start-up naming the directory.";
    "LOCAL_STORE_SYNC" = "always" : "When the local store syncs its journal to the disk: `always` (a write is acknowledged once synced; concurrent writes share one sync), `interval` (every `LOCAL_STORE_SYNC_INTERVAL`; a machine crash loses at most that much) or `never` (the operating system decides). In every mode an acknowledged write survives the process being killed.";
    "LOCAL_STORE_SYNC_INTERVAL" = "100ms" : "Sync interval of `LOCAL_STORE_SYNC=interval` (> 0).";
    "LOCAL_STORE_CACHE_MB" = "64" : "The local store's block cache in MiB (> 0); with its write buffers (32 MiB for events, 4 MiB for each other keyspace, each up to a few times while they are written out) it bounds the store's memory: about 250 MB of engine RSS at the default after a million flows.";
    "ENGINE_REDIS_ADDR" = "(unset: local store)" : "Redis/Valkey address (`host:port`) of the engine store, or a comma-separated list of Redis Cluster nodes; when neither this nor `FLOW_REDIS_ADDR` is set, the local store is used.";
    "ENGINE_REDIS_PASSWORD" = "" : "Password of the engine store.";
    "ENGINE_REDIS_DB" = "0" : "Database number of the engine store.";
    "ENGINE_REDIS_PREFIX" = "argyll:engine" : "Key prefix of the engine store.";
    "ENGINE_REDIS_POOL_SIZE" = "1" : "Connections to the engine store (1-64). One connection pipelines best on a few cores; more help only when Redis round trips, not the engine's CPU, are the limit.";
    "FLOW_REDIS_ADDR" = "(ENGINE_REDIS_ADDR)" : "Redis/Valkey address of the flow store; defaults to the engine store's.";
    "FLOW_REDIS_PASSWORD" = "" : "Password of the flow store.";
    "FLOW_REDIS_DB" = "0" : "Database number of the flow store.";
    "FLOW_REDIS_PREFIX" = "argyll:flow" : "Key prefix of the flow store.";
    "FLOW_REDIS_POOL_SIZE" = "1" : "Connections to the flow store (1-64).";
    "STEP_TIMEOUT" = "30s" : "HTTP step timeout when a step's `http.timeout` is 0 or absent (milliseconds or a duration such as `30s`).";
    "ENGINE_MAX_REQUEST_BYTES" = "10485760" : "Largest accepted HTTP request body in bytes (> 0); larger requests get 413.";
    "STEP_MAX_RESPONSE_BYTES" = "4194304" : "Largest step response (and webhook result) read, in bytes (> 0); a larger one fails the work item for good with `step response too large`.";
    "FLOW_MAX_STATE_BYTES" = "67108864" : "Largest flow state, in bytes of JSON (> 0): a start whose init is larger gets 400; a result, fan-out or aggregation that would grow a flow past it fails its work item or step with `flow state too large`.";
    "ENGINE_SHUTDOWN_TIMEOUT" = "10s" : "How long a graceful shutdown waits for in-flight requests and work.";
    "ENGINE_MAX_CONNECTIONS" = "(half the open-file limit)" : "HTTP connections served at once (> 0); one more is answered 503 and closed. The server raises its open-file limit to the hard limit at start-up; the default leaves the other half for step calls and stores.";
    "ENGINE_HEADER_TIMEOUT" = "10s" : "Time for a request's headers to arrive, counted from when the connection waits for a request, so also the longest a keep-alive connection stays idle (> 0).";
    "ENGINE_BODY_TIMEOUT" = "30s" : "Time for a request's whole body to arrive (> 0); slower clients get 408.";
    "WS_MAX_CLIENTS" = "1000" : "WebSocket connections at once (> 0); one more gets 503.";
    "WS_SEND_QUEUE" = "1024" : "Events waiting to be written to one WebSocket client (> 0); a client that falls further behind is disconnected with a close frame saying so.";
    "ENGINE_INSTANCE_ID" = "(random)" : "This instance's name in work leases; unique per running instance.";
    "WORK_LEASE_TIMEOUT" = "5s" : "Lease on in-flight work, renewed while it runs; when an instance dies, another takes its work over after this long.";
    "MEMO_CACHE_SIZE" = "4096" : "Entries of the memoization cache (> 0).";
    "FLOW_CACHE_SIZE" = "4096" : "Flow states kept in memory (> 0).";
    "FLOW_CACHE_MAX_BYTES" = "268435456" : "Bytes of flow states kept in memory at most (> 0, by their JSON size); the oldest leave first.";
    "RETRY_MAX_RETRIES" = "10" : "Retries for steps without a `work_config` (negative: unlimited).";
    "RETRY_BACKOFF_MS" = "1000" : "Base backoff in milliseconds for steps without a `work_config`.";
    "RETRY_MAX_BACKOFF_MS" = "60000" : "Backoff cap in milliseconds (0: no cap).";
    "RETRY_BACKOFF_TYPE" = "exponential" : "`fixed`, `linear` or `exponential`.";
    "RETRY_MIN_BACKOFF_MS" = "20" : "Shortest delay before any retry in milliseconds, whatever a step's `work_config` says (0 turns the floor off): a zero backoff with many retries does not become a busy loop.";
    "SCRIPT_MEMORY_LIMIT_MB" = "64" : "Memory one Lua or Ale run may hold (Ale: what the run allocates and has not freed, counted by the server's metering allocator); exceeding it fails the work item with `memory limit exceeded`.";
    "SCRIPT_STEP_LIMIT" = "100000000" : "Lua instructions or Ale evaluation steps of one run.";
    "SCRIPT_TIMEOUT" = "1s" : "Wall-clock limit of one script or predicate run.";
    "MAX_ID_LENGTH" = "256" : "Longest step id, step name, attribute name, flow id and goal in characters (> 0); longer ones get 400 naming the field. Child flow ids (`parent:step:token`) longer than this become `<hash>:<token>` (69 characters).";
    "FLOW_MAX_DEPTH" = "16" : "Deepest nesting of child flows (> 0): a flow step whose child flow would be deeper fails with `child flow depth limit reached`. Registration already refuses flow steps that reach themselves.";
    "ENGINE_STATE_MAX_FLOWS" = "1000" : "Finished flows `GET /engine` lists in `deactivated` and `flow_digests`, the most recently finished ones (besides every active flow); the full list is the paged `GET /engine/flow`.";
    "FLOW_RETENTION" = "(unset: keep)" : "How long finished flows are kept, e.g. `7d`, `12h` (> 0): older ones are deleted from the store, events and index entry (in batches, checked every tenth of it, at most every minute). With archiving configured they are archived instead, at `ARCHIVE_MAX_AGE` or this, whichever is shorter, and nothing unarchived is deleted. Set it where the archiver runs, not on engines beside a separate `argyll archive`.";
    "MAX_WORK_ITEMS" = "100000" : "Most work items one step may expand to with `for_each` (> 0); a start that would exceed it gets 400, a step that exceeds it later fails with `too many work items`.";
    "ARCHIVE_BUCKET_URL" = "(unset: no archiving)" : "Bucket of archived flows (`s3://bucket`); archiving runs when set.";
    "ARCHIVE_PREFIX" = "archived/" : "Key prefix of archived flows in the bucket.";
    "ARCHIVE_MEMORY_PERCENT" = "80" : "Store memory use (percent, 0-100) above which flows are archived early.";
    "ARCHIVE_MAX_AGE" = "24h" : "Age after which finished flows are archived.";
    "ARCHIVE_MEMORY_CHECK_INTERVAL" = "5s" : "How often memory pressure is checked (> 0).";
    "ARCHIVE_SWEEP_INTERVAL" = "1h" : "How often the age sweep runs (> 0).";
    "ARCHIVE_LEASE_TIMEOUT" = "15m" : "Lease of one archive job (> 0).";
    "ARCHIVE_PRESSURE_BATCH" = "10" : "Flows archived per memory-pressure event (> 0).";
    "ARCHIVE_SWEEP_BATCH" = "100" : "Flows archived per sweep (> 0).";
    "ARCHIVE_POLL_INTERVAL" = "500ms" : "Poll interval of archive jobs (> 0).";
}
