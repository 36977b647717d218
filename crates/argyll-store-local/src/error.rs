//! Why a data directory could not be opened, and how fjall's errors become store errors.

use std::path::PathBuf;

use argyll_store::StoreError;

/// Why [`crate::LocalStore::open`] failed. Each names the directory; the binary adds the
/// setting that chose it (`ARGYLL_DATA_DIR`).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory (or a file in it) cannot be created or written.
    #[error("data directory {dir} is not writable: {source}")]
    NotWritable {
        /// The data directory.
        dir: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another process has the directory open.
    #[error(
        "data directory {dir} is locked by another running process (only one process may use a data directory; stop it or choose another directory)"
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The directory was written by a newer version, whose format this build cannot read.
    #[error(
        "data directory {dir} has store format {found}, newer than the format {supported} this build reads: run a newer argyll"
    )]
    NewerFormat {
        /// The data directory.
        dir: PathBuf,
        /// The format found.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The directory holds something that is not a local store (or a damaged format file).
    #[error("data directory {dir} is not an argyll local store: {reason}")]
    NotAStore {
        /// The data directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The storage engine could not open or recover the data (a damaged journal or table).
    #[error("data directory {dir} could not be opened: {reason}")]
    Storage {
        /// The data directory.
        dir: PathBuf,
        /// The storage engine's error.
        reason: String,
    },
}

/// A failed read or write of the storage engine: the disk failed or the database was poisoned
/// by an earlier failure (retrying may not help, but the caller is told, not misled).
pub(crate) fn unavailable(error: fjall::Error) -> StoreError {
    StoreError::Unavailable(format!("local store: {error}"))
}
