//! fjall against redb on the local store's access pattern (issue 16, deliverable 1):
//!
//! * `append_1_sync`: one event appended and made durable (a flow command acknowledged alone);
//! * `append_64_sync`: 64 events of 64 aggregates made durable together (group commit: the
//!   appends of concurrent commands share one fsync);
//! * `append_1_nosync`: one event, no fsync (`LOCAL_STORE_SYNC=never`/`interval`);
//! * `tail_8`: the last 8 events of one of 10,000 logs (loading a flow's tail after its
//!   snapshot);
//! * `newer_0`: the events of a log after its last one — none (a reader checking that its
//!   cached state is still the newest, the most frequent read);
//! * `index_update`: an index entry rewritten and its id moved from one phase set to another
//!   (a flow finishing), without an fsync (it shares the commit of the events).
//!
//! Events are 200 bytes (a typical stored event); keys are the aggregate number and the event
//! sequence, big-endian, so one log is one key range.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const EVENT: [u8; 200] = [b'e'; 200];
const ENTRY: [u8; 120] = [b'i'; 120];
const LOGS: u32 = 10_000;
const EVENTS_PER_LOG: u32 = 8;

fn key(aggregate: u32, sequence: u32) -> u64 {
    (u64::from(aggregate) << 32) | u64::from(sequence)
}

/// A cheap deterministic spread of aggregate numbers.
fn aggregate(n: u64) -> u32 {
    u32::try_from(n.wrapping_mul(2_654_435_761) % u64::from(LOGS)).unwrap()
}

struct Fjall {
    _dir: tempfile::TempDir,
    db: fjall::Database,
    events: fjall::Keyspace,
    index: fjall::Keyspace,
    phases: fjall::Keyspace,
}

impl Fjall {
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let events = db
            .keyspace("events", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let index = db
            .keyspace("index", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let phases = db
            .keyspace("phases", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        Fjall {
            _dir: dir,
            db,
            events,
            index,
            phases,
        }
    }

    fn append(&self, keys: &[u64], sync: bool) {
        let mut batch = self.db.batch();
        if sync {
            batch = batch.durability(Some(fjall::PersistMode::SyncData));
        }
        for key in keys {
            batch.insert(&self.events, key.to_be_bytes(), EVENT);
        }
        batch.commit().unwrap();
    }

    fn tail(&self, aggregate: u32) -> usize {
        self.events
            .prefix(aggregate.to_be_bytes())
            .rev()
            .take(8)
            .map(|guard| guard.value().unwrap().len())
            .sum()
    }

    fn index_update(&self, flow: u32) {
        let mut batch = self.db.batch();
        batch.insert(&self.index, flow.to_be_bytes(), ENTRY);
        let mut active = b"active/".to_vec();
        active.extend(flow.to_be_bytes());
        let mut done = b"done/".to_vec();
        done.extend(flow.to_be_bytes());
        batch.remove(&self.phases, active);
        batch.insert(&self.phases, done, []);
        batch.commit().unwrap();
    }
}

const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
const INDEX: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("index");
const PHASES: redb::TableDefinition<&[u8], ()> = redb::TableDefinition::new("phases");

struct Redb {
    _dir: tempfile::TempDir,
    db: redb::Database,
}

impl Redb {
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("store.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(EVENTS).unwrap();
        txn.open_table(INDEX).unwrap();
        txn.open_table(PHASES).unwrap();
        txn.commit().unwrap();
        Redb { _dir: dir, db }
    }

    fn write(&self, sync: bool) -> redb::WriteTransaction {
        let mut txn = self.db.begin_write().unwrap();
        let durability = if sync {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        txn.set_durability(durability).unwrap();
        txn
    }

    fn append(&self, keys: &[u64], sync: bool) {
        let txn = self.write(sync);
        {
            let mut events = txn.open_table(EVENTS).unwrap();
            for key in keys {
                events.insert(key, EVENT.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn tail(&self, aggregate: u32) -> usize {
        use redb::{ReadableDatabase, ReadableTable};
        let txn = self.db.begin_read().unwrap();
        let events = txn.open_table(EVENTS).unwrap();
        events
            .range(key(aggregate, 0)..=key(aggregate, u32::MAX))
            .unwrap()
            .rev()
            .take(8)
            .map(|entry| entry.unwrap().1.value().len())
            .sum()
    }

    fn index_update(&self, flow: u32) {
        let txn = self.write(false);
        {
            let mut index = txn.open_table(INDEX).unwrap();
            index.insert(flow, ENTRY.as_slice()).unwrap();
            let mut phases = txn.open_table(PHASES).unwrap();
            let mut active = b"active/".to_vec();
            active.extend(flow.to_be_bytes());
            let mut done = b"done/".to_vec();
            done.extend(flow.to_be_bytes());
            phases.remove(active.as_slice()).unwrap();
            phases.insert(done.as_slice(), ()).unwrap();
        }
        txn.commit().unwrap();
    }
}

/// What the benchmarks ask of an engine.
trait Engine {
    fn append(&self, keys: &[u64], sync: bool);
    fn tail(&self, aggregate: u32) -> usize;
    fn newer(&self, aggregate: u32, from: u32) -> usize;
    fn index_update(&self, flow: u32);
}

impl Engine for Fjall {
    fn append(&self, keys: &[u64], sync: bool) {
        Fjall::append(self, keys, sync);
    }
    fn tail(&self, aggregate: u32) -> usize {
        Fjall::tail(self, aggregate)
    }
    fn newer(&self, aggregate: u32, from: u32) -> usize {
        self.events
            .range(key(aggregate, from).to_be_bytes()..=key(aggregate, u32::MAX).to_be_bytes())
            .count()
    }
    fn index_update(&self, flow: u32) {
        Fjall::index_update(self, flow);
    }
}

impl Engine for Redb {
    fn append(&self, keys: &[u64], sync: bool) {
        Redb::append(self, keys, sync);
    }
    fn tail(&self, aggregate: u32) -> usize {
        Redb::tail(self, aggregate)
    }
    fn newer(&self, aggregate: u32, from: u32) -> usize {
        use redb::{ReadableDatabase, ReadableTable};
        let txn = self.db.begin_read().unwrap();
        let events = txn.open_table(EVENTS).unwrap();
        events
            .range(key(aggregate, from)..=key(aggregate, u32::MAX))
            .unwrap()
            .count()
    }
    fn index_update(&self, flow: u32) {
        Redb::index_update(self, flow);
    }
}

fn bench_engine(c: &mut Criterion, name: &str, engine: &dyn Engine) {
    // 10,000 logs of 8 events, written in batches without fsyncs, then made durable once.
    let all: Vec<u64> = (0..LOGS)
        .flat_map(|a| (0..EVENTS_PER_LOG).map(move |s| key(a, s)))
        .collect();
    for chunk in all.chunks(4096) {
        engine.append(chunk, false);
    }
    engine.append(&[key(LOGS + 1, 0)], true);

    let mut group = c.benchmark_group(name);
    group.measurement_time(Duration::from_secs(4));
    let mut next = u64::from(EVENTS_PER_LOG);
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_1_sync", |b| {
        b.iter(|| {
            next += 1;
            engine.append(&[key(aggregate(next), 1_000 + next as u32)], true);
        });
    });
    group.bench_function("append_1_nosync", |b| {
        b.iter(|| {
            next += 1;
            engine.append(&[key(aggregate(next), 1_000 + next as u32)], false);
        });
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("append_64_sync", |b| {
        b.iter(|| {
            let keys: Vec<u64> = (0..64)
                .map(|i| {
                    next += 1;
                    key(aggregate(next + i), 1_000 + next as u32)
                })
                .collect();
            engine.append(&keys, true);
        });
    });
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("tail_8", |b| {
        b.iter(|| {
            n += 1;
            black_box(engine.tail(aggregate(n)))
        });
    });
    group.bench_function("newer_0", |b| {
        b.iter(|| {
            n += 1;
            black_box(engine.newer(aggregate(n), 1_000_000))
        });
    });
    group.bench_function("index_update", |b| {
        b.iter(|| {
            n += 1;
            engine.index_update(aggregate(n));
        });
    });
    group.finish();
}

fn engines(c: &mut Criterion) {
    bench_engine(c, "fjall", &Fjall::open());
    bench_engine(c, "redb", &Redb::open());
}

criterion_group!(benches, engines);
criterion_main!(benches);
