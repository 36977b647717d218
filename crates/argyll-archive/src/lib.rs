//! # argyll-archive
//!
//! Moves finished flows out of the store into S3-compatible object storage, and reads them
//! back. It owns the archiving policy of the configuration guide (age sweep, memory pressure,
//! batches, leases), the archive document format, and the job that moves one flow:
//!
//! 1. claim the flow with a lease (`archive/<id>`) and mark it `archiving` in the flow index;
//! 2. write its full event log and final state, gzip-compressed JSON, to
//!    `<prefix>flow/<id>.json.gz`;
//! 3. read the object back and compare it byte for byte;
//! 4. delete the flow's events and snapshot from the store;
//! 5. mark it `archived` in the index (reads then come from the bucket) and release the lease.
//!
//! A crash at any point leaves the flow in the store, or archived and verified: a job retaken
//! after its lease lapsed finds either the events (and writes the same document again) or an
//! empty log with the verified object in the bucket (and only marks it archived). Leases keep
//! several archivers off the same flow. Failures are logged as `archive job failed` (WARN) and
//! retried with backoff; nothing here ever ends the process.
//!
//! Buckets: `s3://bucket` (endpoint and credentials from the standard `AWS_*` variables, so
//! MinIO, Ceph or moto work too), `file:///path`, `memory://`.
//!
//! **Must not depend on**: the engine, the server or configuration loading; it works on the
//! `argyll-store` traits.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use argyll_events::{AggregateId, Event, EventEnvelope, Projection};
use argyll_model::{BackoffType, FlowState, Timestamp};
use argyll_retry::RetryPolicy;
use argyll_store::{Clock, FlowIndexEntry, FlowPhase, FlowQuery, Store, StoreError, system_clock};
use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Why archiving or reading an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The bucket URL is not usable.
    #[error("invalid ARCHIVE_BUCKET_URL {url:?}: {reason}")]
    InvalidBucket {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The object store failed.
    #[error("object storage: {0}")]
    Bucket(#[from] object_store::Error),
    /// The flow store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document could not be encoded or decoded.
    #[error("archive document for {flow_id}: {reason}")]
    Document {
        /// The flow.
        flow_id: String,
        /// Why.
        reason: String,
    },
    /// The object read back differs from the one written.
    #[error("archive of {0} did not read back identical")]
    Verification(String),
}

/// One archived flow: its final state and every event, as the bucket holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedFlow {
    /// The flow.
    pub flow_id: String,
    /// When it was archived.
    pub archived_at: Timestamp,
    /// The flow's state as its events add up to.
    pub state: FlowState,
    /// The flow's events, in sequence order.
    pub events: Vec<EventEnvelope>,
}

/// Where archived flows are kept.
#[derive(Debug, Clone)]
pub struct Bucket {
    objects: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Bucket {
    /// Opens `s3://bucket[/path]`, `file:///dir` or `memory://`; S3 endpoint, region and
    /// credentials come from the `AWS_*` environment variables.
    pub fn open(url: &str, prefix: &str) -> Result<Self, ArchiveError> {
        Self::open_with(url, prefix, &[])
    }

    /// Like [`Bucket::open`], with S3 settings (`aws_endpoint`, `aws_allow_http`,
    /// `aws_access_key_id`...) given explicitly over the environment's.
    pub fn open_with(
        url: &str,
        prefix: &str,
        s3_options: &[(&str, &str)],
    ) -> Result<Self, ArchiveError> {
        let invalid = |reason: String| ArchiveError::InvalidBucket {
            url: url.to_owned(),
            reason,
        };
        let objects: Arc<dyn ObjectStore> = if let Some(rest) = url.strip_prefix("s3://") {
            if rest.is_empty() {
                return Err(invalid("no bucket name".into()));
            }
            // A job should fail in seconds, not minutes, when the bucket is unreachable: the
            // archiver retries the whole job with its own backoff.
            let retry = object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(10),
                ..object_store::RetryConfig::default()
            };
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_retry(retry);
            for (key, value) in s3_options {
                let key: object_store::aws::AmazonS3ConfigKey = key
                    .parse()
                    .map_err(|e: object_store::Error| invalid(e.to_string()))?;
                builder = builder.with_config(key, *value);
            }
            Arc::new(builder.build().map_err(|e| invalid(e.to_string()))?)
        } else if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|e| invalid(e.to_string()))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| invalid(e.to_string()))?,
            )
        } else if url == "memory://" || url.starts_with("memory://") {
            Arc::new(object_store::memory::InMemory::new())
        } else {
            return Err(invalid("expected s3://, file:// or memory://".into()));
        };
        Ok(Bucket {
            objects,
            prefix: prefix.to_owned(),
        })
    }

    fn path(&self, flow_id: &str) -> Path {
        Path::from(format!("{}flow/{flow_id}.json.gz", self.prefix))
    }

    fn encode(flow: &ArchivedFlow) -> Result<Vec<u8>, ArchiveError> {
        let document = |reason: String| ArchiveError::Document {
            flow_id: flow.flow_id.clone(),
            reason,
        };
        let json = serde_json::to_vec(flow).map_err(|e| document(e.to_string()))?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(&json)
            .map_err(|e| document(e.to_string()))?;
        encoder.finish().map_err(|e| document(e.to_string()))
    }

    fn decode(flow_id: &str, bytes: &[u8]) -> Result<ArchivedFlow, ArchiveError> {
        let document = |reason: String| ArchiveError::Document {
            flow_id: flow_id.to_owned(),
            reason,
        };
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| document(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| document(e.to_string()))
    }

    /// Writes a flow and reads it back; fails unless the bytes are identical.
    pub async fn write_verified(&self, flow: &ArchivedFlow) -> Result<(), ArchiveError> {
        let bytes = Self::encode(flow)?;
        let path = self.path(&flow.flow_id);
        self.objects.put(&path, bytes.clone().into()).await?;
        let read_back = self.objects.get(&path).await?.bytes().await?;
        if read_back.as_ref() != bytes.as_slice() {
            return Err(ArchiveError::Verification(flow.flow_id.clone()));
        }
        Ok(())
    }

    /// An archived flow, if the bucket has it.
    pub async fn read(&self, flow_id: &str) -> Result<Option<ArchivedFlow>, ArchiveError> {
        match self.objects.get(&self.path(flow_id)).await {
            Ok(object) => {
                let bytes = object.bytes().await?;
                Self::decode(flow_id, &bytes).map(Some)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// The policy of the configuration guide (`ARCHIVE_*`).
#[derive(Clone, Debug)]
pub struct ArchivePolicy {
    /// Store memory use (percent of `maxmemory`) above which flows are archived early.
    pub memory_percent: f64,
    /// Age (since completion) after which finished flows are archived.
    pub max_age: Duration,
    /// How often memory pressure is checked.
    pub memory_check_interval: Duration,
    /// How often the age sweep runs.
    pub sweep_interval: Duration,
    /// Lease of one archive job.
    pub lease_timeout: Duration,
    /// Flows archived per pressure event.
    pub pressure_batch: usize,
    /// Flows archived per sweep.
    pub sweep_batch: usize,
    /// First retry delay after a failed pass (doubles up to the sweep interval).
    pub poll_interval: Duration,
}

impl Default for ArchivePolicy {
    fn default() -> Self {
        ArchivePolicy {
            memory_percent: 80.0,
            max_age: Duration::from_secs(24 * 3600),
            memory_check_interval: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(3600),
            lease_timeout: Duration::from_secs(900),
            pressure_batch: 10,
            sweep_batch: 100,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// What became of one archive job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// The flow is in the bucket and gone from the store.
    Archived,
    /// Not archivable now (not finished, already archived, or another archiver holds it).
    Skipped,
}

/// Archives flows of one store into one bucket.
#[derive(Debug)]
pub struct Archiver<S> {
    store: S,
    bucket: Bucket,
    policy: ArchivePolicy,
    owner: String,
    pressure_off_logged: AtomicBool,
    clock: Arc<dyn Clock>,
}

fn lease_key(flow_id: &str) -> String {
    format!("archive/{flow_id}")
}

impl<S: Store> Archiver<S> {
    /// An archiver named `owner` in leases (unique per instance).
    pub fn new(store: S, bucket: Bucket, policy: ArchivePolicy, owner: &str) -> Self {
        Archiver {
            store,
            bucket,
            policy,
            owner: owner.to_owned(),
            pressure_off_logged: AtomicBool::new(false),
            clock: system_clock(),
        }
    }

    /// The clock flows are aged by and leases stamped with (the system's by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Archives one flow (see the crate documentation for the steps).
    pub async fn archive_flow(&self, flow_id: &str) -> Result<JobOutcome, ArchiveError> {
        let Some(entry) = self.store.get_flow(flow_id).await? else {
            return Ok(JobOutcome::Skipped);
        };
        if !matches!(entry.phase, FlowPhase::Deactivated | FlowPhase::Archiving) {
            return Ok(JobOutcome::Skipped);
        }
        let lease = lease_key(flow_id);
        if !self
            .store
            .acquire(
                &lease,
                &self.owner,
                self.policy.lease_timeout,
                self.clock.now(),
            )
            .await?
        {
            return Ok(JobOutcome::Skipped);
        }
        // Another archiver may have finished the flow between the first look and the lease.
        let entry = match self.store.get_flow(flow_id).await? {
            Some(entry) if matches!(entry.phase, FlowPhase::Deactivated | FlowPhase::Archiving) => {
                entry
            }
            _ => {
                self.store.release(&lease, &self.owner).await?;
                return Ok(JobOutcome::Skipped);
            }
        };
        self.store
            .put_flow(FlowIndexEntry {
                phase: FlowPhase::Archiving,
                ..entry.clone()
            })
            .await?;
        let aggregate = AggregateId::Flow(flow_id.to_owned());
        let events = self.store.read(&aggregate, 0).await?;
        if events.is_empty() {
            // A job that died after deleting: the verified object must be there.
            if self.bucket.read(flow_id).await?.is_none() {
                return Err(ArchiveError::Document {
                    flow_id: flow_id.to_owned(),
                    reason: "no events in the store and no object in the bucket".into(),
                });
            }
        } else {
            let mut state: Option<FlowState> = None;
            for envelope in &events {
                if let Event::Flow(event) = &envelope.event {
                    state
                        .apply(event, envelope.timestamp)
                        .map_err(|e| ArchiveError::Document {
                            flow_id: flow_id.to_owned(),
                            reason: format!("event {}: {e}", envelope.sequence),
                        })?;
                }
            }
            let Some(state) = state else {
                return Err(ArchiveError::Document {
                    flow_id: flow_id.to_owned(),
                    reason: "the events do not start a flow".into(),
                });
            };
            let archived = ArchivedFlow {
                flow_id: flow_id.to_owned(),
                archived_at: self.clock.now(),
                state,
                events: events.iter().map(|e| (**e).clone()).collect(),
            };
            self.bucket.write_verified(&archived).await?;
            self.store.delete(&aggregate).await?;
        }
        self.store
            .put_flow(FlowIndexEntry {
                phase: FlowPhase::Archived,
                ..entry
            })
            .await?;
        self.store.release(&lease, &self.owner).await?;
        tracing::debug!(%flow_id, "flow archived");
        Ok(JobOutcome::Archived)
    }

    /// Up to `limit` flows to archive, oldest first: jobs left half done (`archiving`, their
    /// lease lapsed) and deactivated flows, finished before `completed_before` when given.
    /// Reads about `limit` index entries, however many flows are stored.
    async fn candidates(
        &self,
        completed_before: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<FlowIndexEntry>, ArchiveError> {
        let finished = |entry: &FlowIndexEntry| entry.completed_at.unwrap_or(entry.created_at);
        let before = completed_before.unwrap_or(Timestamp::from_unix_nanos(i64::MAX));
        let mut found: Vec<FlowIndexEntry> = self
            .store
            .list_flows(&FlowQuery {
                phases: vec![FlowPhase::Archiving],
                limit,
                ..FlowQuery::default()
            })
            .await?
            .entries
            .into_iter()
            .filter(|entry| finished(entry) < before)
            .collect();
        found.extend(self.store.deactivated_before(before, limit).await?);
        found.sort_by_key(finished);
        found.truncate(limit);
        Ok(found)
    }

    /// Archives up to `sweep_batch` flows finished longer than `max_age` ago, oldest first.
    /// Returns how many were archived; failed jobs are logged and counted as not archived.
    pub async fn sweep_once(&self) -> Result<usize, ArchiveError> {
        let max_age = i64::try_from(self.policy.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Timestamp::from_unix_millis(
            self.clock
                .now()
                .unix_millis()
                .unwrap_or(0)
                .saturating_sub(max_age),
        );
        let batch = self.policy.sweep_batch.max(1);
        let candidates = self.candidates(Some(cutoff), batch).await?;
        self.archive_all(candidates.into_iter()).await
    }

    /// The store's memory use in percent of its limit, when it has one.
    pub async fn memory_percent(&self) -> Result<Option<f64>, ArchiveError> {
        match self.store.memory_usage().await? {
            Some(usage) if usage.max_bytes > 0 => {
                #[allow(clippy::cast_precision_loss)]
                let percent = usage.used_bytes as f64 * 100.0 / usage.max_bytes as f64;
                Ok(Some(percent))
            }
            _ => {
                if !self.pressure_off_logged.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "archiving by memory pressure is off: the store has no memory limit (Redis maxmemory 0, or an in-process or local store)"
                    );
                }
                Ok(None)
            }
        }
    }

    /// While the store is above `memory_percent`, archives batches of `pressure_batch`
    /// finished flows, largest (most events) and oldest first. Returns how many were archived.
    pub async fn relieve_pressure_once(&self) -> Result<usize, ArchiveError> {
        let mut archived = 0;
        while let Some(percent) = self.memory_percent().await? {
            if percent < self.policy.memory_percent {
                break;
            }
            let batch = self.policy.pressure_batch.max(1);
            let oldest = self.candidates(None, batch.saturating_mul(5)).await?;
            let mut sized = Vec::new();
            for entry in oldest.into_iter().take(batch.saturating_mul(5)) {
                let aggregate = AggregateId::Flow(entry.flow_id.clone());
                let size = self.store.read(&aggregate, 0).await?.len();
                sized.push((size, entry));
            }
            sized.sort_by(|(a_size, a), (b_size, b)| {
                b_size
                    .cmp(a_size)
                    .then_with(|| a.completed_at.cmp(&b.completed_at))
            });
            let done = self
                .archive_all(sized.into_iter().map(|(_, entry)| entry).take(batch))
                .await?;
            if done == 0 {
                break;
            }
            archived += done;
        }
        Ok(archived)
    }

    async fn archive_all(
        &self,
        entries: impl Iterator<Item = FlowIndexEntry>,
    ) -> Result<usize, ArchiveError> {
        let mut archived = 0;
        let mut failures = 0;
        let mut failing_in_a_row = 0;
        for entry in entries {
            match self.archive_flow(&entry.flow_id).await {
                Ok(JobOutcome::Archived) => {
                    archived += 1;
                    failing_in_a_row = 0;
                }
                Ok(JobOutcome::Skipped) => {}
                Err(error) => {
                    failures += 1;
                    failing_in_a_row += 1;
                    tracing::warn!(flow_id = %entry.flow_id, %error, "archive job failed");
                    if failing_in_a_row >= 3 {
                        // The bucket or the store is down: retry the pass later.
                        break;
                    }
                }
            }
        }
        if failures > 0 && archived == 0 {
            return Err(ArchiveError::Document {
                flow_id: "(batch)".into(),
                reason: format!("{failures} archive jobs failed"),
            });
        }
        Ok(archived)
    }

    /// Runs the sweep and the pressure check on their intervals until `shutdown` turns true.
    /// Failed passes are retried with backoff from `poll_interval` up to the sweep interval.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut next_sweep = tokio::time::Instant::now();
        let mut next_pressure = tokio::time::Instant::now();
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let backoff = RetryPolicy {
            max_retries: -1,
            backoff_ms: millis(self.policy.poll_interval),
            max_backoff_ms: millis(self.policy.sweep_interval.max(self.policy.poll_interval)),
            backoff_type: BackoffType::Exponential,
            jitter: 0.0,
        };
        let mut failures_in_a_row = 0;
        loop {
            let wake = next_sweep.min(next_pressure);
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep_until(wake) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let now_instant = tokio::time::Instant::now();
            let mut failed = false;
            if now_instant >= next_pressure {
                if let Err(error) = self.relieve_pressure_once().await {
                    tracing::warn!(%error, "archive job failed");
                    failed = true;
                }
                next_pressure = now_instant + self.policy.memory_check_interval;
            }
            if now_instant >= next_sweep {
                match self.sweep_once().await {
                    Ok(archived) => {
                        if archived > 0 {
                            tracing::info!(archived, "archive sweep");
                        }
                        // A full batch means more may be due now.
                        next_sweep = if archived >= self.policy.sweep_batch {
                            now_instant + self.policy.poll_interval
                        } else {
                            now_instant + self.policy.sweep_interval
                        };
                    }
                    Err(error) => {
                        tracing::warn!(%error, "archive job failed");
                        failed = true;
                        next_sweep = now_instant + self.policy.sweep_interval;
                    }
                }
            }
            if failed {
                let pause = Duration::from_millis(backoff.delay_millis(failures_in_a_row));
                next_sweep = next_sweep.min(now_instant + pause);
                failures_in_a_row += 1;
            } else {
                failures_in_a_row = 0;
            }
        }
    }
}
