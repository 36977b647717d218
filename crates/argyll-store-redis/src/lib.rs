//! # argyll-store-redis
//!
//! The `argyll-store` traits on Redis or Valkey, through fred. It owns the key layout, the
//! server-side scripts and the cross-instance event feed; it passes the same conformance kit
//! as the embedded store, on a single server and on Redis Cluster.
//!
//! * **Engine store and flow store** are configured separately ([`RedisConfig`] each: address,
//!   password, database, key prefix) and may be one server or two. The engine aggregate (step
//!   catalog and health) lives in the engine store; flows, the flow index, leases, timers and
//!   the event feed in the flow store.
//! * **Appends** are one `EVALSHA` of a script that checks the expected sequence and pushes the
//!   records atomically (a conflict writes nothing). `load` reads snapshot and tail in one
//!   atomic script call.
//! * **Flow index**: an entries hash and sorted sets of ids — all ids, one per phase, the
//!   deactivated by completion time, all by creation time (µs) — written and removed together
//!   by one script. Listings by id walk the ids (from the prefix, with one); newest or oldest
//!   first read the creation-time set from a `(score, id)` cursor found by rank. Flows indexed
//!   before that set existed are added to it on the first such listing (once, marked by a key).
//! * **Cluster safety**: every script call touches keys of one hash slot — an aggregate's keys
//!   share the `{tag}` of the aggregate id; the index, leases and timers each have their own
//!   tag.
//! * **Event feed**: after an append, its envelopes go to a Redis stream; each store instance
//!   reads the stream from where it started (`XREAD BLOCK`) and fans the events out locally,
//!   so subscribers on every instance see every instance's events, and a reader that lost its
//!   connection continues from the last id it saw.
//! * **Faults**: connection errors are logged as `redis connection lost` (WARN); commands fail
//!   with [`StoreError::Unavailable`] after the command timeout instead of hanging; the client
//!   reconnects with exponential backoff. Start-up against an unreachable server fails within
//!   the connect timeout, naming the address. Errors are classified (`errors.rs`): only an
//!   unreachable or busy server is `Unavailable` (retried by the engine, 503); a refused
//!   command (a script error, `WRONGTYPE`) is [`StoreError::Refused`] (logged, not retried, 500);
//!   a malformed address is [`StoreError::Misconfigured`].
//!
//! **Must not depend on**: the engine, runners, HTTP or configuration loading.

mod bulky;
mod errors;
mod feed;
mod scripts;

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use argyll_events::{
    AggregateId, EngineEvent, Event, EventEnvelope, FlowEvent, decode_stored, encode_stored,
};
use argyll_model::Timestamp;
use argyll_store::{
    EventFeed, EventLog, FlowIndex, FlowIndexEntry, FlowOrder, FlowOutcome, FlowPage, FlowPhase,
    FlowQuery, Lease, Leases, Loaded, MemoryUsage, Snapshot, StoreError, StoreInfo, TimeCursor,
    Timer, Timers, check_events_belong,
};
use fred::prelude::{
    Builder, ClientLike, Config, EventInterface, Pool, ReconnectPolicy, ServerConfig,
};
use fred::types::Value;
use fred::types::scripts::Script;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::errors::store_error;

/// Where one of the two stores lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `host:port` of the server, or of any cluster nodes (several for a cluster).
    pub addrs: Vec<String>,
    /// Whether `addrs` are Redis Cluster nodes.
    pub cluster: bool,
    /// Password (`AUTH`).
    pub password: Option<String>,
    /// Database number (single servers only).
    pub db: u32,
    /// Prefix of every key.
    pub prefix: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long a command may take before it fails (a lost connection answers within this).
    pub command_timeout: Duration,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
    /// About how many batches the event feed stream keeps for readers catching up after a
    /// reconnect (flow store only; older entries are trimmed).
    pub feed_length: usize,
}

impl RedisConfig {
    /// A single server at `addr` (`host:port`) with the defaults: database 0, one connection, 5 s
    /// command timeout, 5 s connect timeout. A comma-separated list of addresses means Redis
    /// Cluster nodes.
    pub fn new(addr: &str, prefix: &str) -> Self {
        let addrs: Vec<String> = addr
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        RedisConfig {
            cluster: addrs.len() > 1,
            addrs,
            password: None,
            db: 0,
            prefix: prefix.to_owned(),
            pool_size: 1,
            command_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            feed_length: 10_000,
        }
    }

    fn display_addr(&self) -> String {
        self.addrs.join(",")
    }

    fn hosts(&self) -> Result<Vec<(String, u16)>, StoreError> {
        self.addrs
            .iter()
            .map(|addr| {
                let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
                    StoreError::Misconfigured(format!(
                        "invalid Redis address {addr}: expected host:port"
                    ))
                })?;
                let port = port.parse::<u16>().map_err(|_| {
                    StoreError::Misconfigured(format!("invalid Redis address {addr}: bad port"))
                })?;
                Ok((host.to_owned(), port))
            })
            .collect()
    }
}

fn corrupt(error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

struct Scripts {
    delete: Script,
    append: Script,
    append_publish: Script,
    load: Script,
    put_snapshot: Script,
    index_insert: Script,
    index_put: Script,
    index_remove: Script,
    index_range: Script,
    index_recent: Script,
    index_oldest: Script,
    index_by_created: Script,
    index_backfill_created: Script,
    lease_acquire: Script,
    lease_renew: Script,
    lease_release: Script,
    lease_exchange: Script,
    lease_lapsed: Script,
    timer_schedule: Script,
    timer_cancel: Script,
    timer_take: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            delete: Script::from_lua(scripts::DELETE),
            append: Script::from_lua(scripts::APPEND),
            append_publish: Script::from_lua(scripts::APPEND_PUBLISH),
            load: Script::from_lua(scripts::LOAD),
            put_snapshot: Script::from_lua(scripts::PUT_SNAPSHOT),
            index_insert: Script::from_lua(scripts::INDEX_INSERT),
            index_put: Script::from_lua(scripts::INDEX_PUT),
            index_remove: Script::from_lua(scripts::INDEX_REMOVE),
            index_range: Script::from_lua(scripts::INDEX_RANGE),
            index_recent: Script::from_lua(scripts::INDEX_RECENT),
            index_oldest: Script::from_lua(scripts::INDEX_OLDEST),
            index_by_created: Script::from_lua(scripts::INDEX_BY_CREATED),
            index_backfill_created: Script::from_lua(scripts::INDEX_BACKFILL_CREATED),
            lease_acquire: Script::from_lua(scripts::LEASE_ACQUIRE),
            lease_renew: Script::from_lua(scripts::LEASE_RENEW),
            lease_release: Script::from_lua(scripts::LEASE_RELEASE),
            lease_exchange: Script::from_lua(scripts::LEASE_EXCHANGE),
            lease_lapsed: Script::from_lua(scripts::LEASE_LAPSED),
            timer_schedule: Script::from_lua(scripts::TIMER_SCHEDULE),
            timer_cancel: Script::from_lua(scripts::TIMER_CANCEL),
            timer_take: Script::from_lua(scripts::TIMER_TAKE),
        }
    }

    fn all(&self) -> [&Script; 21] {
        [
            &self.delete,
            &self.append,
            &self.append_publish,
            &self.load,
            &self.put_snapshot,
            &self.index_insert,
            &self.index_put,
            &self.index_remove,
            &self.index_range,
            &self.index_recent,
            &self.index_oldest,
            &self.index_by_created,
            &self.index_backfill_created,
            &self.lease_acquire,
            &self.lease_renew,
            &self.lease_release,
            &self.lease_exchange,
            &self.lease_lapsed,
            &self.timer_schedule,
            &self.timer_cancel,
            &self.timer_take,
        ]
    }
}

/// One server (or cluster) with its key prefix.
struct Backend {
    pool: Pool,
    prefix: String,
}

fn builder(config: &RedisConfig) -> Result<Builder, StoreError> {
    let hosts = config.hosts()?;
    let server = if config.cluster {
        ServerConfig::new_clustered(hosts)
    } else {
        let (host, port) = hosts
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Misconfigured("no Redis address given".into()))?;
        ServerConfig::new_centralized(host, port)
    };
    let fred_config = Config {
        server,
        password: config.password.clone(),
        database: if config.cluster {
            None
        } else {
            Some(u8::try_from(config.db).map_err(|_| {
                StoreError::Misconfigured(format!("invalid Redis database {}", config.db))
            })?)
        },
        fail_fast: true,
        ..Config::default()
    };
    let mut builder = Builder::from_config(fred_config);
    let command_timeout = config.command_timeout;
    let connect_timeout = config.connect_timeout;
    builder
        .with_connection_config(|c| {
            c.connection_timeout = connect_timeout;
            c.internal_command_timeout = command_timeout;
        })
        .with_performance_config(|p| p.default_command_timeout = command_timeout)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    Ok(builder)
}

impl Backend {
    async fn connect(config: &RedisConfig, scripts: &Scripts) -> Result<Self, StoreError> {
        let pool = builder(config)?
            .build_pool(config.pool_size.max(1))
            .map_err(store_error)?;
        let addr = config.display_addr();
        let connect_error =
            |e: String| StoreError::Unavailable(format!("cannot connect to Redis at {addr}: {e}"));
        match tokio::time::timeout(config.connect_timeout, pool.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(connect_error(error.to_string())),
            Err(_) => return Err(connect_error("timed out".into())),
        }
        // Every pooled connection reports its own loss; one line per second and server is
        // what an operator needs.
        let last_logged = Arc::new(std::sync::atomic::AtomicI64::new(0));
        for client in pool.clients() {
            let addr = addr.clone();
            let last_logged = last_logged.clone();
            client.on_error(move |(error, server)| {
                let addr = addr.clone();
                let last_logged = last_logged.clone();
                async move {
                    let second = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                    if last_logged.swap(second, std::sync::atomic::Ordering::Relaxed) != second {
                        let server = server.map_or(addr, |s| s.to_string());
                        tracing::warn!(%server, %error, "redis connection lost");
                    }
                    Ok(())
                }
            });
            client.on_reconnect(|server| async move {
                tracing::info!(%server, "redis connection restored");
                Ok(())
            });
        }
        for script in scripts.all() {
            script.load(pool.next()).await.map_err(store_error)?;
        }
        Ok(Backend {
            pool,
            prefix: config.prefix.clone(),
        })
    }

    async fn eval(
        &self,
        script: &Script,
        keys: impl Into<Vec<String>>,
        args: Vec<Value>,
    ) -> Result<Value, StoreError> {
        script
            .evalsha_with_reload::<Value, _, _>(self.pool.next(), keys.into(), args)
            .await
            .map_err(store_error)
    }
}

impl Backend {
    /// Runs a script that answers 1 (done) or 0 (refused).
    async fn eval_flag(
        &self,
        script: &Script,
        keys: impl Into<Vec<String>>,
        args: Vec<Value>,
    ) -> Result<bool, StoreError> {
        Ok(int(&self.eval(script, keys, args).await?)? == 1)
    }
}

/// The name of an aggregate in keys and the hash tag that keeps its keys in one slot.
fn aggregate_name(aggregate: &AggregateId) -> String {
    match aggregate {
        AggregateId::Engine => "engine".into(),
        AggregateId::Flow(id) => format!("flow:{id}"),
    }
}

fn aggregate_keys(prefix: &str, aggregate: &AggregateId) -> [String; 2] {
    let name = aggregate_name(aggregate);
    let tag = name.replace(['{', '}'], "_");
    [
        format!("{prefix}:{{{tag}}}:{name}:events"),
        format!("{prefix}:{{{tag}}}:{name}:snapshot"),
    ]
}

fn tagged_pair(prefix: &str, tag: &str, first: &str, second: &str) -> [String; 2] {
    [
        format!("{{{prefix}:{tag}}}:{first}"),
        format!("{{{prefix}:{tag}}}:{second}"),
    ]
}

fn millis_up(at: Timestamp) -> i64 {
    // Round up so that a due time read back is never earlier than the one scheduled.
    at.unix_nanos().map_or(i64::MAX, |nanos| {
        nanos.div_euclid(1_000_000) + i64::from(nanos.rem_euclid(1_000_000) > 0)
    })
}

fn millis(at: Timestamp) -> i64 {
    at.unix_millis().unwrap_or(i64::MAX)
}

/// A creation time as the score of the creation-time zset: whole microseconds since the epoch
/// (exact in a double until the year 2255), the unset time first. Flows created within one
/// microsecond are ordered by id.
fn micros(at: Timestamp) -> i64 {
    argyll_store::nanos_of(at).div_euclid(1_000)
}

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn int(value: &Value) -> Result<i64, StoreError> {
    value
        .as_i64()
        .ok_or_else(|| corrupt(format!("expected an integer from Redis, got {value:?}")))
}

fn text(value: Value) -> Result<String, StoreError> {
    value
        .into_string()
        .ok_or_else(|| corrupt("expected a string from Redis"))
}

/// A script's list of 0/1 answers, one per key asked about.
fn flags(reply: Value, expected: usize) -> Result<Vec<bool>, StoreError> {
    let flags = array(reply)
        .iter()
        .map(|flag| int(flag).map(|flag| flag == 1))
        .collect::<Result<Vec<bool>, StoreError>>()?;
    if flags.len() == expected {
        Ok(flags)
    } else {
        Err(corrupt(format!(
            "expected {expected} answers from Redis, got {}",
            flags.len()
        )))
    }
}

fn array(value: Value) -> Vec<Value> {
    if value.is_null() {
        Vec::new()
    } else {
        value.into_array()
    }
}

fn encode(timestamp: Timestamp, event: &Event) -> Result<String, StoreError> {
    match event {
        Event::Engine(event) => encode_stored(event.as_ref(), timestamp),
        Event::Flow(event) => encode_stored(event, timestamp),
    }
    .map_err(corrupt)
}

fn decode(aggregate: &AggregateId, record: &str) -> Result<(Timestamp, Event), StoreError> {
    match aggregate {
        AggregateId::Engine => decode_stored::<EngineEvent>(record)
            .map(|(at, event)| (at, Event::Engine(Box::new(event)))),
        AggregateId::Flow(_) => {
            decode_stored::<FlowEvent>(record).map(|(at, event)| (at, Event::Flow(event)))
        }
    }
    .map_err(corrupt)
}

/// The stored form of a flow index entry.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    parent: Option<String>,
    outcome: String,
    phase: String,
    created_at: Timestamp,
    completed_at: Option<Timestamp>,
    error: Option<String>,
    /// Absent in entries written before goals were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    goals: Vec<String>,
}

fn outcome_name(outcome: FlowOutcome) -> &'static str {
    match outcome {
        FlowOutcome::Active => "active",
        FlowOutcome::Completed => "completed",
        FlowOutcome::Failed => "failed",
    }
}

/// Every phase, in the order of the index's phase sets.
const PHASES: [FlowPhase; 4] = [
    FlowPhase::Active,
    FlowPhase::Deactivated,
    FlowPhase::Archiving,
    FlowPhase::Archived,
];

/// A phase's number in the index scripts (1-based position in [`PHASES`]).
fn phase_number(phase: FlowPhase) -> i64 {
    PHASES
        .iter()
        .position(|p| *p == phase)
        .and_then(|i| i64::try_from(i + 1).ok())
        .unwrap_or(1)
}

fn phase_name(phase: FlowPhase) -> &'static str {
    match phase {
        FlowPhase::Active => "active",
        FlowPhase::Deactivated => "deactivated",
        FlowPhase::Archiving => "archiving",
        FlowPhase::Archived => "archived",
    }
}

fn encode_entry(entry: &FlowIndexEntry) -> Result<String, StoreError> {
    serde_json::to_string(&StoredEntry {
        parent: entry.parent_flow_id.clone(),
        outcome: outcome_name(entry.outcome).into(),
        phase: phase_name(entry.phase).into(),
        created_at: entry.created_at,
        completed_at: entry.completed_at,
        error: entry.error.clone(),
        goals: entry.goals.clone(),
    })
    .map_err(corrupt)
}

fn decode_entry(flow_id: String, json: &str) -> Result<FlowIndexEntry, StoreError> {
    let stored: StoredEntry = serde_json::from_str(json).map_err(corrupt)?;
    let outcome = match stored.outcome.as_str() {
        "active" => FlowOutcome::Active,
        "completed" => FlowOutcome::Completed,
        "failed" => FlowOutcome::Failed,
        other => return Err(corrupt(format!("unknown flow outcome {other}"))),
    };
    let phase = match stored.phase.as_str() {
        "active" => FlowPhase::Active,
        "deactivated" => FlowPhase::Deactivated,
        "archiving" => FlowPhase::Archiving,
        "archived" => FlowPhase::Archived,
        other => return Err(corrupt(format!("unknown flow phase {other}"))),
    };
    Ok(FlowIndexEntry {
        flow_id,
        parent_flow_id: stored.parent,
        outcome,
        phase,
        created_at: stored.created_at,
        completed_at: stored.completed_at,
        error: stored.error,
        goals: stored.goals,
    })
}

/// The still-deactivated entries of an `{id, entry, ...}` reply (entries gone meanwhile are
/// `''` and skipped; so are flows that moved on).
fn deactivated_entries(
    reply: Vec<Value>,
) -> Result<impl Iterator<Item = FlowIndexEntry>, StoreError> {
    let mut entries = Vec::new();
    let mut items = reply.into_iter();
    while let (Some(id), Some(json)) = (items.next(), items.next()) {
        let (id, json) = (text(id)?, text(json)?);
        if !json.is_empty() {
            entries.push(decode_entry(id, &json)?);
        }
    }
    Ok(entries
        .into_iter()
        .filter(|entry| entry.phase == FlowPhase::Deactivated))
}

/// Positions in [`RedisStore::index_keys`].
const INDEX_ENTRIES: usize = 0;
const INDEX_IDS: usize = 1;
const INDEX_DEACTIVATED_BY_TIME: usize = 6;
const INDEX_BY_CREATED: usize = 7;

/// Ids a listing reads in one script call at most.
const BATCH: i64 = 512;

/// A listing page being filled from batches of `{id, entry}`: the entries that match, until
/// one more than the limit shows there is more.
struct Page<'q> {
    query: &'q FlowQuery,
    limit: usize,
    entries: Vec<FlowIndexEntry>,
    /// The size of the batch asked last (0 before the first).
    asked: i64,
}

impl<'q> Page<'q> {
    fn new(query: &'q FlowQuery) -> Self {
        Page {
            query,
            limit: query.page_limit(),
            entries: Vec::new(),
            asked: 0,
        }
    }

    /// How many ids to read next: the first batch one more than the page (enough when the
    /// filters pass everything), then whole batches.
    fn batch(&mut self) -> i64 {
        self.asked = if self.asked == 0 {
            i64::try_from(self.limit.saturating_add(1))
                .unwrap_or(BATCH)
                .clamp(1, BATCH)
        } else {
            BATCH
        };
        self.asked
    }

    /// Takes the entry of `id` (`''` if gone) if it matches; `true` when the page is full and
    /// a further entry matches (so there is a next page).
    fn offer(&mut self, id: String, json: String) -> Result<bool, StoreError> {
        if json.is_empty() {
            return Ok(false);
        }
        let entry = decode_entry(id, &json)?;
        if !self.query.matches(&entry) {
            return Ok(false);
        }
        if self.entries.len() == self.limit {
            return Ok(true);
        }
        self.entries.push(entry);
        Ok(false)
    }

    /// Whether the batch just read, which returned `fetched` ids, was the last.
    fn exhausted(&self, fetched: usize) -> bool {
        i64::try_from(fetched).unwrap_or(0) < self.asked
    }

    /// The page with more after it: its cursor is `cursor` of the last entry.
    fn full(self, cursor: impl Fn(&FlowIndexEntry) -> String) -> FlowPage {
        let next_after = self.entries.last().map(cursor);
        FlowPage {
            entries: self.entries,
            next_after,
        }
    }

    /// The last page.
    fn end(self) -> FlowPage {
        FlowPage {
            entries: self.entries,
            next_after: None,
        }
    }
}

/// The store on Redis/Valkey; cheap to clone (clones share connections and the feed).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("engine_prefix", &self.inner.engine.prefix)
            .field("flow_prefix", &self.inner.flow.prefix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    engine: Backend,
    flow: Backend,
    /// Whether the creation-time zset is known to hold every indexed flow (its backfill of
    /// flows indexed before it existed is done; see [`RedisStore::backfill_created`]).
    created_complete: std::sync::atomic::AtomicBool,
    /// Whether the flow store is a cluster (the feed then needs its own `XADD`).
    flow_cluster: bool,
    scripts: Scripts,
    feed: feed::Feed,
}

impl RedisStore {
    /// Connects to the engine store and the flow store (they may be the same server), loads
    /// the scripts and starts the feed reader. Fails within the connect timeout when a server
    /// is unreachable, naming its address.
    pub async fn connect(engine: RedisConfig, flow: RedisConfig) -> Result<Self, StoreError> {
        let scripts = Scripts::new();
        let engine_backend = Backend::connect(&engine, &scripts).await?;
        let flow_backend = Backend::connect(&flow, &scripts).await?;
        let feed_key = format!("{{{}:feed}}", flow.prefix);
        let feed = feed::Feed::start(builder(&flow)?, &flow, feed_key).await?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                engine: engine_backend,
                flow: flow_backend,
                created_complete: std::sync::atomic::AtomicBool::new(false),
                flow_cluster: flow.cluster,
                scripts,
                feed,
            }),
        })
    }

    fn backend(&self, aggregate: &AggregateId) -> &Backend {
        match aggregate {
            AggregateId::Engine => &self.inner.engine,
            AggregateId::Flow(_) => &self.inner.flow,
        }
    }

    fn flow_prefix(&self) -> &str {
        &self.inner.flow.prefix
    }

    /// The index's keys, all in one hash slot (positions: the `INDEX_*` constants): the
    /// entries hash, its ids zset, one ids zset per phase (in [`PHASES`] order), the deactivated
    /// ids by completion time and every id by creation time. The phase sets let the sweep and
    /// the archiver walk only the flows in the phase they want, however many others are
    /// stored; the time sets let `recently_deactivated` and the listings newest or oldest
    /// first read about a page.
    fn index_keys(&self) -> Vec<String> {
        let [entries, ids] = tagged_pair(self.flow_prefix(), "index", "entries", "ids");
        let mut keys = vec![entries];
        keys.extend(
            PHASES
                .iter()
                .map(|phase| format!("{ids}:{}", phase_name(*phase))),
        );
        keys.push(format!("{ids}:deactivated-by-time"));
        keys.push(format!("{ids}:by-created"));
        keys.insert(INDEX_IDS, ids);
        keys
    }

    /// The index keys at `positions`, for a script that needs only those.
    fn index_keys_at(&self, positions: &[usize]) -> Vec<String> {
        let keys = self.index_keys();
        positions
            .iter()
            .map(|position| keys.get(*position).cloned().unwrap_or_default())
            .collect()
    }

    /// The key that says the creation-time zset was backfilled (same slot as the index).
    fn created_complete_key(&self) -> String {
        let [_, ids] = tagged_pair(self.flow_prefix(), "index", "entries", "ids");
        format!("{ids}:by-created-complete")
    }

    /// Runs an index script over the entries hash and the deactivated-by-time zset that
    /// answers `{id, entry, ...}`; the entries that are still deactivated.
    async fn by_completion(
        &self,
        script: &Script,
        args: Vec<Value>,
    ) -> Result<Vec<FlowIndexEntry>, StoreError> {
        let by_time = self.index_keys_at(&[INDEX_ENTRIES, INDEX_DEACTIVATED_BY_TIME]);
        let reply = array(self.inner.flow.eval(script, by_time, args).await?);
        Ok(deactivated_entries(reply)?.collect())
    }

    /// The ARGV of the index scripts for `entry`: id, entry, phase number, completion time,
    /// creation time.
    fn index_args(entry: &FlowIndexEntry) -> Result<Vec<Value>, StoreError> {
        Ok(vec![
            Value::from(entry.flow_id.clone()),
            Value::from(encode_entry(entry)?),
            Value::from(phase_number(entry.phase)),
            Value::from(millis(entry.completed_at.unwrap_or(entry.created_at))),
            Value::from(micros(entry.created_at)),
        ])
    }

    /// Flows indexed before the creation-time zset existed (by an older version) are added to
    /// it once, on the first listing in a time order: the ids are walked in batches and each
    /// flow still indexed is added unless it is there; a marker key then records that it is
    /// done, for every instance. Until then such flows are missing from the time orders only.
    /// (During a rolling upgrade, flows indexed by an instance of the older version after the
    /// marker was set are missing from the time orders until a newer instance writes their
    /// entry again.)
    async fn backfill_created(&self) -> Result<(), StoreError> {
        use fred::prelude::KeysInterface;
        use std::sync::atomic::Ordering;
        if self.inner.created_complete.load(Ordering::Acquire) {
            return Ok(());
        }
        let flow = &self.inner.flow;
        let marker = self.created_complete_key();
        let done: i64 = flow
            .pool
            .next()
            .exists(&marker)
            .await
            .map_err(store_error)?;
        if done == 0 {
            let range_keys = self.index_keys_at(&[INDEX_ENTRIES, INDEX_IDS]);
            let created_keys = self.index_keys_at(&[INDEX_ENTRIES, INDEX_BY_CREATED]);
            let mut after: Option<String> = None;
            loop {
                let min = after.as_ref().map_or("-".to_owned(), |id| format!("({id}"));
                let reply = array(
                    flow.eval(
                        &self.inner.scripts.index_range,
                        range_keys.clone(),
                        vec![Value::from(min), Value::from(BATCH)],
                    )
                    .await?,
                );
                let fetched = reply.len() / 2;
                let mut args = Vec::with_capacity(fetched * 2);
                let mut pairs = reply.into_iter();
                while let (Some(id), Some(json)) = (pairs.next(), pairs.next()) {
                    let id = text(id)?;
                    after = Some(id.clone());
                    let json = text(json)?;
                    if json.is_empty() {
                        continue;
                    }
                    let entry = decode_entry(id, &json)?;
                    args.push(Value::from(micros(entry.created_at)));
                    args.push(Value::from(entry.flow_id));
                }
                if !args.is_empty() {
                    flow.eval(
                        &self.inner.scripts.index_backfill_created,
                        created_keys.clone(),
                        args,
                    )
                    .await?;
                }
                if i64::try_from(fetched).unwrap_or(0) < BATCH {
                    break;
                }
            }
            let _: () = flow
                .pool
                .next()
                .set(&marker, "1", None, None, false)
                .await
                .map_err(store_error)?;
        }
        self.inner.created_complete.store(true, Ordering::Release);
        Ok(())
    }

    /// A page by id: the ids zset (or the one phase's) from the cursor or the prefix on, up to
    /// the first id past the prefix.
    async fn page_by_id(&self, query: &FlowQuery) -> Result<FlowPage, StoreError> {
        // A query for one phase walks that phase's set; others walk every id.
        let walked = match query.phases.as_slice() {
            [phase] => INDEX_IDS + usize::try_from(phase_number(*phase)).unwrap_or(0),
            _ => INDEX_IDS,
        };
        let range_keys = self.index_keys_at(&[INDEX_ENTRIES, walked]);
        let prefix = query.id_prefix();
        let mut start = match query.id_start() {
            Bound::Unbounded => "-".to_owned(),
            Bound::Included(first) => format!("[{first}"),
            Bound::Excluded(after) => format!("({after}"),
        };
        let mut page = Page::new(query);
        loop {
            let reply = array(
                self.inner
                    .flow
                    .eval(
                        &self.inner.scripts.index_range,
                        range_keys.clone(),
                        vec![Value::from(start.clone()), Value::from(page.batch())],
                    )
                    .await?,
            );
            let fetched = reply.len() / 2;
            let mut pairs = reply.into_iter();
            while let (Some(id), Some(json)) = (pairs.next(), pairs.next()) {
                let id = text(id)?;
                if !id.starts_with(prefix) {
                    return Ok(page.end());
                }
                start = format!("({id}");
                if page.offer(id, text(json)?)? {
                    return Ok(page.full(|last| last.flow_id.clone()));
                }
            }
            if page.exhausted(fetched) {
                return Ok(page.end());
            }
        }
    }

    /// A page in a time order: the creation-time zset after the cursor, a batch at a time.
    async fn page_by_time(&self, query: &FlowQuery) -> Result<FlowPage, StoreError> {
        let direction = match query.order {
            FlowOrder::NewestFirst => "desc",
            FlowOrder::ById | FlowOrder::OldestFirst => "asc",
        };
        // The cursor of the next batch: the last member read, score as Redis wrote it.
        let mut cursor: Option<(String, String)> = query
            .time_cursor()?
            .map(|cursor| (cursor.at.to_string(), cursor.flow_id));
        self.backfill_created().await?;
        let keys = self.index_keys_at(&[INDEX_ENTRIES, INDEX_BY_CREATED]);
        let mut page = Page::new(query);
        loop {
            let mut args = vec![Value::from(direction), Value::from(page.batch())];
            if let Some((score, id)) = &cursor {
                args.push(Value::from(score.clone()));
                args.push(Value::from(id.clone()));
            }
            let reply = array(
                self.inner
                    .flow
                    .eval(&self.inner.scripts.index_by_created, keys.clone(), args)
                    .await?,
            );
            let fetched = reply.len() / 3;
            let mut items = reply.into_iter();
            while let (Some(id), Some(score), Some(json)) =
                (items.next(), items.next(), items.next())
            {
                let id = text(id)?;
                cursor = Some((text(score)?, id.clone()));
                if page.offer(id, text(json)?)? {
                    return Ok(page.full(|last| {
                        TimeCursor {
                            at: micros(last.created_at),
                            flow_id: last.flow_id.clone(),
                        }
                        .encode()
                    }));
                }
            }
            if page.exhausted(fetched) {
                return Ok(page.end());
            }
        }
    }

    /// Releases `release`, then acquires `acquire`, in one script: whether the owner held each
    /// released key, and whether each acquired key was taken.
    async fn exchange_leases(
        &self,
        release: &[String],
        acquire: &[String],
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(Vec<bool>, Vec<bool>), StoreError> {
        if release.is_empty() && acquire.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let now_ms = millis(now);
        let mut args = vec![
            Value::from(owner),
            Value::from(now_ms),
            Value::from(now_ms.saturating_add(ttl_millis(ttl))),
            Value::from(i64::try_from(release.len()).unwrap_or(i64::MAX)),
        ];
        args.extend(
            release
                .iter()
                .chain(acquire)
                .map(|key| Value::from(key.as_str())),
        );
        let reply = self
            .inner
            .flow
            .eval(&self.inner.scripts.lease_exchange, self.lease_keys(), args)
            .await?;
        let mut released = flags(reply, release.len() + acquire.len())?;
        let acquired = released.split_off(release.len());
        Ok((released, acquired))
    }

    fn lease_keys(&self) -> [String; 2] {
        tagged_pair(self.flow_prefix(), "leases", "expiries", "owners")
    }

    fn timer_keys(&self) -> [String; 2] {
        tagged_pair(self.flow_prefix(), "timers", "due", "payloads")
    }

    /// Runs a script over a (sorted set, hash) pair that answers flat `(member, text,
    /// score-in-ms)` triples for members scored before `now` — lapsed leases, due timers.
    async fn scored_triples(
        &self,
        script: &Script,
        keys: [String; 2],
        now: Timestamp,
        limit: usize,
        extra: Option<&str>,
    ) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        let mut args = vec![
            Value::from(millis(now)),
            Value::from(i64::try_from(limit).unwrap_or(i64::MAX)),
        ];
        args.extend(extra.map(Value::from));
        let reply = array(self.inner.flow.eval(script, keys, args).await?);
        let mut triples = Vec::new();
        let mut items = reply.into_iter();
        while let (Some(member), Some(text_value), Some(score)) =
            (items.next(), items.next(), items.next())
        {
            let score: f64 = text(score)?.parse().map_err(corrupt)?;
            #[allow(clippy::cast_possible_truncation)]
            let at = Timestamp::from_unix_millis(score as i64);
            triples.push((text(member)?, text(text_value)?, at));
        }
        Ok(triples)
    }

    fn envelopes(
        aggregate: &AggregateId,
        from: u64,
        records: Vec<Value>,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        let bytes = records
            .iter()
            .map(|record| record.as_bytes().map_or(0, <[u8]>::len))
            .sum();
        bulky::run(bulky::large_text(records.len(), bytes), || {
            records
                .into_iter()
                .zip(from..)
                .map(|(record, sequence)| {
                    let record = text(record)?;
                    let (timestamp, event) = decode(aggregate, &record)?;
                    Ok(Arc::new(EventEnvelope {
                        aggregate_id: aggregate.clone(),
                        sequence,
                        timestamp,
                        event,
                    }))
                })
                .collect()
        })
    }
}

impl EventLog for RedisStore {
    async fn append(
        &self,
        aggregate: &AggregateId,
        expected: u64,
        events: Vec<(Timestamp, Event)>,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        check_events_belong(aggregate, &events)?;
        let backend = self.backend(aggregate);
        let appended: Vec<Arc<EventEnvelope>> = events
            .into_iter()
            .zip(expected..)
            .map(|((timestamp, event), sequence)| {
                Arc::new(EventEnvelope {
                    aggregate_id: aggregate.clone(),
                    sequence,
                    timestamp,
                    event,
                })
            })
            .collect();
        // Flow events on a single server: append and publish in one atomic round trip.
        let publish_in_script = !self.inner.flow_cluster
            && matches!(aggregate, AggregateId::Flow(_))
            && !appended.is_empty();
        let large = bulky::large_events(appended.iter().map(|envelope| &envelope.event));
        let (records, batch) = bulky::run(large, || -> Result<_, StoreError> {
            let mut records: Vec<Value> = Vec::with_capacity(appended.len());
            for envelope in &appended {
                records.push(Value::from(encode(envelope.timestamp, &envelope.event)?));
            }
            let batch = match publish_in_script {
                true => Some(feed::batch_json(&appended)?),
                false => None,
            };
            Ok((records, batch))
        })?;
        let keys = aggregate_keys(&backend.prefix, aggregate);
        let expected_arg = Value::from(i64::try_from(expected).unwrap_or(i64::MAX));
        let reply = if let Some(batch) = batch {
            let mut args = Vec::with_capacity(records.len() + 3);
            args.push(expected_arg);
            args.push(Value::from(self.inner.feed.length()));
            args.push(Value::from(batch));
            args.extend(records);
            let feed_keys = [keys[0].clone(), self.inner.feed.key().to_owned()];
            backend
                .eval(&self.inner.scripts.append_publish, feed_keys, args)
                .await?
        } else {
            let mut args = Vec::with_capacity(records.len() + 1);
            args.push(expected_arg);
            args.extend(records);
            backend
                .eval(&self.inner.scripts.append, [keys[0].clone()], args)
                .await?
        };
        let (ok, position) = match array(reply).as_slice() {
            [ok, position] => (int(ok)?, int(position)?),
            _ => return Err(corrupt("unexpected reply to append")),
        };
        let position = u64::try_from(position).map_err(corrupt)?;
        if ok != 1 {
            return Err(StoreError::Conflict {
                aggregate: aggregate.clone(),
                expected,
                actual: position,
            });
        }
        if !appended.is_empty() && !publish_in_script {
            self.inner
                .feed
                .publish(self.inner.flow.pool.next(), &appended)
                .await;
        }
        Ok(appended)
    }

    async fn read(
        &self,
        aggregate: &AggregateId,
        from: u64,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        use fred::prelude::ListInterface;
        let backend = self.backend(aggregate);
        let keys = aggregate_keys(&backend.prefix, aggregate);
        let start = i64::try_from(from).unwrap_or(i64::MAX);
        let records: Vec<Value> = backend
            .pool
            .next()
            .lrange(keys[0].clone(), start, -1)
            .await
            .map_err(store_error)?;
        Self::envelopes(aggregate, from, records)
    }

    async fn load(&self, aggregate: &AggregateId) -> Result<Loaded, StoreError> {
        let backend = self.backend(aggregate);
        let keys = aggregate_keys(&backend.prefix, aggregate);
        let reply = array(
            backend
                .eval(&self.inner.scripts.load, keys, Vec::new())
                .await?,
        );
        let [sequence, state, tail, next]: [Value; 4] = reply
            .try_into()
            .map_err(|_| corrupt("unexpected reply to load"))?;
        let next_sequence = u64::try_from(int(&next)?).map_err(corrupt)?;
        let snapshot = if sequence.is_null() {
            None
        } else {
            let sequence: u64 = text(sequence)?.parse().map_err(corrupt)?;
            Some(Snapshot {
                sequence,
                state_json: Arc::from(text(state)?),
            })
        };
        let from = snapshot.as_ref().map_or(0, |s| s.sequence);
        Ok(Loaded {
            tail: Self::envelopes(aggregate, from, array(tail))?,
            snapshot,
            next_sequence,
        })
    }

    async fn put_snapshot(
        &self,
        aggregate: &AggregateId,
        snapshot: Snapshot,
    ) -> Result<(), StoreError> {
        let backend = self.backend(aggregate);
        let keys = aggregate_keys(&backend.prefix, aggregate);
        let args = vec![
            Value::from(i64::try_from(snapshot.sequence).unwrap_or(i64::MAX)),
            Value::from(snapshot.state_json.as_ref()),
        ];
        let reply = array(
            backend
                .eval(&self.inner.scripts.put_snapshot, keys, args)
                .await?,
        );
        let length = match reply.as_slice() {
            [_, length] => u64::try_from(int(length)?).map_err(corrupt)?,
            _ => return Err(corrupt("unexpected reply to put_snapshot")),
        };
        if snapshot.sequence > length {
            return Err(StoreError::InvalidSnapshot {
                aggregate: aggregate.clone(),
                sequence: snapshot.sequence,
                next_sequence: length,
            });
        }
        Ok(())
    }

    async fn delete(&self, aggregate: &AggregateId) -> Result<bool, StoreError> {
        let backend = self.backend(aggregate);
        let keys = aggregate_keys(&backend.prefix, aggregate);
        let removed = backend
            .eval(&self.inner.scripts.delete, keys, Vec::new())
            .await?;
        Ok(int(&removed)? > 0)
    }
}

impl StoreInfo for RedisStore {
    /// `used_memory` and `maxmemory` of the flow store (`INFO memory`).
    async fn memory_usage(&self) -> Result<Option<MemoryUsage>, StoreError> {
        let info: String = self
            .inner
            .flow
            .pool
            .next()
            .info(Some(fred::types::InfoKind::Memory))
            .await
            .map_err(store_error)?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse::<u64>().ok())
        };
        Ok(Some(MemoryUsage {
            used_bytes: field("used_memory").unwrap_or(0),
            max_bytes: field("maxmemory").unwrap_or(0),
        }))
    }
}

impl FlowIndex for RedisStore {
    async fn put_flow(&self, entry: FlowIndexEntry) -> Result<(), StoreError> {
        let args = Self::index_args(&entry)?;
        self.inner
            .flow
            .eval(&self.inner.scripts.index_put, self.index_keys(), args)
            .await?;
        Ok(())
    }

    async fn insert_flow(&self, entry: FlowIndexEntry) -> Result<bool, StoreError> {
        let args = Self::index_args(&entry)?;
        self.inner
            .flow
            .eval_flag(&self.inner.scripts.index_insert, self.index_keys(), args)
            .await
    }

    async fn get_flow(&self, flow_id: &str) -> Result<Option<FlowIndexEntry>, StoreError> {
        use fred::prelude::HashesInterface;
        let keys = self.index_keys();
        let entry: Option<String> = self
            .inner
            .flow
            .pool
            .next()
            .hget(keys.first().cloned().unwrap_or_default(), flow_id)
            .await
            .map_err(store_error)?;
        entry
            .map(|json| decode_entry(flow_id.to_owned(), &json))
            .transpose()
    }

    async fn list_flows(&self, query: &FlowQuery) -> Result<FlowPage, StoreError> {
        match query.order {
            FlowOrder::ById => self.page_by_id(query).await,
            FlowOrder::NewestFirst | FlowOrder::OldestFirst => self.page_by_time(query).await,
        }
    }

    async fn remove_flow(&self, flow_id: &str) -> Result<bool, StoreError> {
        self.inner
            .flow
            .eval_flag(
                &self.inner.scripts.index_remove,
                self.index_keys(),
                vec![Value::from(flow_id)],
            )
            .await
    }

    async fn recently_deactivated(&self, limit: usize) -> Result<Vec<FlowIndexEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.by_completion(
            &self.inner.scripts.index_recent,
            vec![Value::from(i64::try_from(limit).unwrap_or(i64::MAX))],
        )
        .await
    }

    async fn deactivated_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<FlowIndexEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Scores are whole milliseconds: ask up to the next one, then keep the exact ones.
        let mut entries: Vec<FlowIndexEntry> = self
            .by_completion(
                &self.inner.scripts.index_oldest,
                vec![
                    Value::from(millis_up(before)),
                    Value::from(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            )
            .await?
            .into_iter()
            .filter(|entry| entry.completed_at.unwrap_or(entry.created_at) < before)
            .collect();
        // Within one millisecond the zset orders by id; the contract orders by the instant.
        entries.sort_by(|a, b| {
            let finished = |entry: &FlowIndexEntry| entry.completed_at.unwrap_or(entry.created_at);
            (finished(a), &a.flow_id).cmp(&(finished(b), &b.flow_id))
        });
        Ok(entries)
    }
}

impl EventFeed for RedisStore {
    fn subscribe(&self) -> broadcast::Receiver<Arc<EventEnvelope>> {
        self.inner.feed.subscribe()
    }
}

impl Leases for RedisStore {
    async fn acquire(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let now_ms = millis(now);
        let args = vec![
            Value::from(key),
            Value::from(owner),
            Value::from(now_ms),
            Value::from(now_ms.saturating_add(ttl_millis(ttl))),
        ];
        self.inner
            .flow
            .eval_flag(&self.inner.scripts.lease_acquire, self.lease_keys(), args)
            .await
    }

    async fn renew(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let args = vec![
            Value::from(key),
            Value::from(owner),
            Value::from(millis(now).saturating_add(ttl_millis(ttl))),
        ];
        self.inner
            .flow
            .eval_flag(&self.inner.scripts.lease_renew, self.lease_keys(), args)
            .await
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        let args = vec![Value::from(key), Value::from(owner)];
        self.inner
            .flow
            .eval_flag(&self.inner.scripts.lease_release, self.lease_keys(), args)
            .await
    }

    async fn acquire_many(
        &self,
        keys: &[String],
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        self.exchange(&[], keys, owner, ttl, now).await
    }

    async fn release_many(&self, keys: &[String], owner: &str) -> Result<Vec<bool>, StoreError> {
        let (released, _) = self
            .exchange_leases(keys, &[], owner, Duration::ZERO, Timestamp::ZERO)
            .await?;
        Ok(released)
    }

    async fn exchange(
        &self,
        release: &[String],
        acquire: &[String],
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        let (_, acquired) = self
            .exchange_leases(release, acquire, owner, ttl, now)
            .await?;
        Ok(acquired)
    }

    async fn lapsed(
        &self,
        key_prefix: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let lapsed = self
            .scored_triples(
                &self.inner.scripts.lease_lapsed,
                self.lease_keys(),
                now,
                limit,
                Some(key_prefix),
            )
            .await?;
        Ok(lapsed
            .into_iter()
            .map(|(key, owner, expires_at)| Lease {
                key,
                owner,
                expires_at,
            })
            .collect())
    }
}

impl Timers for RedisStore {
    async fn schedule(&self, timer: Timer) -> Result<(), StoreError> {
        let args = vec![
            Value::from(timer.key.as_str()),
            Value::from(millis_up(timer.due)),
            Value::from(timer.payload.as_ref()),
        ];
        self.inner
            .flow
            .eval(&self.inner.scripts.timer_schedule, self.timer_keys(), args)
            .await?;
        Ok(())
    }

    async fn cancel(&self, key: &str) -> Result<bool, StoreError> {
        self.inner
            .flow
            .eval_flag(
                &self.inner.scripts.timer_cancel,
                self.timer_keys(),
                vec![Value::from(key)],
            )
            .await
    }

    async fn take_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let due = self
            .scored_triples(
                &self.inner.scripts.timer_take,
                self.timer_keys(),
                now,
                limit,
                None,
            )
            .await?;
        Ok(due
            .into_iter()
            .map(|(key, payload, due)| Timer {
                key,
                due,
                payload: Arc::from(payload),
            })
            .collect())
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        use fred::prelude::SortedSetsInterface;
        let keys = self.timer_keys();
        let first: Vec<Value> = self
            .inner
            .flow
            .pool
            .next()
            .zrange(keys[0].clone(), 0, 0, None, false, None, true)
            .await
            .map_err(store_error)?;
        match first.as_slice() {
            [_, score] => {
                let score = score
                    .as_f64()
                    .or_else(|| score.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| corrupt("timer score"))?;
                #[allow(clippy::cast_possible_truncation)]
                Ok(Some(Timestamp::from_unix_millis(score as i64)))
            }
            _ => Ok(None),
        }
    }
}
