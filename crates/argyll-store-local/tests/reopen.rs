//! The local store across closes and crashes of its process: what was acknowledged is there
//! when the directory is opened again; a damaged journal tail loses at most the damaged
//! records, never earlier ones and never with a panic; a directory in use or of a newer format
//! is refused with an error naming it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use argyll_events::AggregateId;
use argyll_model::Timestamp;
use argyll_store::conformance::{failed, started};
use argyll_store::{
    EventLog, FlowIndex, FlowIndexEntry, FlowOutcome, FlowPhase, FlowQuery, Leases, Snapshot,
    Timer, Timers,
};
use argyll_store_local::{LocalConfig, LocalStore, OpenError};

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(millis)
}

fn flow(id: &str) -> AggregateId {
    AggregateId::Flow(id.to_owned())
}

fn entry(id: &str, phase: FlowPhase) -> FlowIndexEntry {
    FlowIndexEntry {
        flow_id: id.to_owned(),
        goals: Vec::new(),
        parent_flow_id: None,
        outcome: if phase == FlowPhase::Active {
            FlowOutcome::Active
        } else {
            FlowOutcome::Completed
        },
        phase,
        created_at: at(1),
        completed_at: (phase != FlowPhase::Active).then(|| at(2)),
        error: None,
    }
}

fn open(dir: &std::path::Path) -> LocalStore {
    LocalStore::open(&LocalConfig::new(dir)).unwrap()
}

/// Writes `flows` flows of two events each, their index entries, a lease and a timer.
async fn write_flows(store: &LocalStore, flows: usize) {
    for n in 0..flows {
        let id = format!("f{n:04}");
        store
            .append(&flow(&id), 0, vec![(at(1), started(&id))])
            .await
            .unwrap();
        store
            .append(&flow(&id), 1, vec![(at(2), failed(&id, "tag"))])
            .await
            .unwrap();
        store
            .insert_flow(entry(&id, FlowPhase::Active))
            .await
            .unwrap();
    }
    store
        .acquire(
            "work:f0000:s:t",
            "awaiting-result",
            Duration::from_secs(3600),
            at(3),
        )
        .await
        .unwrap();
    store
        .schedule(Timer {
            key: "retry:f0001".into(),
            due: at(10),
            payload: "{}".into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_acknowledged_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        write_flows(&store, 50).await;
        store
            .put_snapshot(
                &flow("f0002"),
                Snapshot {
                    sequence: 1,
                    state_json: "{\"n\":1}".into(),
                },
            )
            .await
            .unwrap();
        store
            .put_flow(entry("f0003", FlowPhase::Deactivated))
            .await
            .unwrap();
        assert!(store.syncs() >= 1, "durable writes were synced");
    }
    let store = open(dir.path());
    for n in 0..50 {
        let loaded = store.load(&flow(&format!("f{n:04}"))).await.unwrap();
        assert_eq!(loaded.next_sequence, 2, "flow {n}");
    }
    let loaded = store.load(&flow("f0002")).await.unwrap();
    assert_eq!(loaded.snapshot.map(|s| s.sequence), Some(1));
    assert_eq!(loaded.tail.len(), 1, "the events after the snapshot");
    // Appends go on from the stored sequence (nothing cached after opening).
    let conflict = store
        .append(&flow("f0001"), 0, vec![(at(5), failed("f0001", "late"))])
        .await
        .unwrap_err();
    assert!(conflict.to_string().contains("actual 2"), "{conflict}");
    let active = store
        .list_flows(&FlowQuery {
            phases: vec![FlowPhase::Active],
            ..FlowQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(active.entries.len(), 49);
    assert_eq!(
        store.recently_deactivated(5).await.unwrap()[0].flow_id,
        "f0003"
    );
    // The parked lease is still held; the timer still fires once.
    assert!(
        !store
            .acquire(
                "work:f0000:s:t",
                "someone-else",
                Duration::from_secs(1),
                at(4)
            )
            .await
            .unwrap()
    );
    assert_eq!(store.next_due().await.unwrap(), Some(at(10)));
    assert_eq!(store.take_due(at(10), 10).await.unwrap().len(), 1);
}

/// The newest journal file of a data directory.
fn newest_journal(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("db"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jnl"))
        .max_by_key(|path| {
            path.file_stem()
                .and_then(|stem| stem.to_str())
                .and_then(|stem| stem.parse::<u64>().ok())
        })
        .expect("a journal")
}

/// Where the written part of a journal ends (fjall preallocates journal files with zeros).
fn written_end(journal: &std::path::Path) -> u64 {
    let bytes = std::fs::read(journal).unwrap();
    let end = bytes
        .iter()
        .rposition(|byte| *byte != 0)
        .expect("a written journal")
        + 1;
    u64::try_from(end).unwrap()
}

/// Not a test of its own: run by [`crashed_store`] in a child process, it writes 20 flows and
/// one last append to the directory in `ARGYLL_CRASH_DIR` and then aborts — no destructor
/// runs, the store is not closed, as when the process is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crashed_store in a child process"]
async fn write_then_abort() {
    let Some(dir) = std::env::var_os("ARGYLL_CRASH_DIR") else {
        return;
    };
    let store = open(std::path::Path::new(&dir));
    write_flows(&store, 20).await;
    store
        .append(&flow("last"), 0, vec![(at(9), started("last"))])
        .await
        .unwrap();
    std::process::abort();
}

/// A data directory whose writer process crashed after its last acknowledged append.
fn crashed_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "write_then_abort", "--nocapture"])
        .env("ARGYLL_CRASH_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the writer aborted");
    dir
}

/// Damages the journal's tail of a crashed writer's directory with `damage` and reopens it:
/// every flow but the last written must be whole; the last may have lost its record; nothing
/// panics.
async fn reopen_after(
    damage: impl FnOnce(&std::path::Path),
) -> (tempfile::TempDir, Result<LocalStore, OpenError>) {
    let dir = crashed_store();
    {
        // Unharmed, the crashed writer's last append is there.
        let store = open(dir.path());
        assert_eq!(store.load(&flow("last")).await.unwrap().next_sequence, 1);
    }
    let dir = crashed_store();
    damage(&newest_journal(dir.path()));
    let reopened = LocalStore::open(&LocalConfig::new(dir.path()));
    if let Ok(store) = &reopened {
        for n in 0..20 {
            let loaded = store.load(&flow(&format!("f{n:04}"))).await.unwrap();
            assert_eq!(loaded.next_sequence, 2, "an earlier flow {n} lost events");
        }
        let last = store.load(&flow("last")).await.unwrap();
        assert!(last.next_sequence <= 1);
    }
    (dir, reopened)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_journal_tail_loses_only_the_cut_record() {
    let (_dir, store) = reopen_after(|journal| {
        // The record is cut short: the file ends 7 bytes before the written data did.
        let end = written_end(journal);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(journal)
            .unwrap();
        file.set_len(end - 7).unwrap();
    })
    .await;
    let store = store.expect("a cut tail is recovered");
    assert_eq!(
        store.load(&flow("last")).await.unwrap().next_sequence,
        0,
        "the cut record is gone, whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_journal_tail_is_recovered_or_reported() {
    let (_dir, outcome) = reopen_after(|journal| {
        let mut bytes = std::fs::read(journal).unwrap();
        let len = usize::try_from(written_end(journal)).unwrap();
        for byte in &mut bytes[len - 12..len - 4] {
            *byte ^= 0x5a;
        }
        std::fs::write(journal, bytes).unwrap();
    })
    .await;
    match &outcome {
        Ok(_) => println!("a garbled tail: recovered (the garbled record dropped)"),
        Err(error) => println!("a garbled tail: reported: {error}"),
    }
    if let Err(error) = outcome {
        // Reported, naming the directory: acceptable, as long as it is not a panic.
        let text = error.to_string();
        assert!(
            text.contains("could not be opened") && text.contains("journal is damaged"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_in_use_or_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let second = LocalStore::open(&LocalConfig::new(dir.path())).unwrap_err();
    assert!(matches!(second, OpenError::Locked { .. }), "{second}");
    drop(first);

    std::fs::write(dir.path().join("FORMAT"), "argyll-local-store 99\n").unwrap();
    let newer = LocalStore::open(&LocalConfig::new(dir.path())).unwrap_err();
    assert!(
        matches!(
            newer,
            OpenError::NewerFormat {
                found: 99,
                supported: argyll_store_local::FORMAT_VERSION,
                ..
            }
        ),
        "{newer}"
    );
    std::fs::write(dir.path().join("FORMAT"), "something else\n").unwrap();
    let foreign = LocalStore::open(&LocalConfig::new(dir.path())).unwrap_err();
    assert!(matches!(foreign, OpenError::NotAStore { .. }), "{foreign}");
}
