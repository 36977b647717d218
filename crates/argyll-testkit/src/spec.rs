//! Where the shared specification is (`ARGYLL_SPEC_DIR`), for the tests that read it: the
//! recorded Ale/Lua cases and the black-box acceptance suite.
//!
//! Someone who clones only this repository has no specification beside it: those tests are then
//! skipped with one line naming the setting, and everything else runs. CI sets
//! `ARGYLL_SPEC_REQUIRED=1`, which turns a missing specification into a failure, so nothing is
//! silently skipped where it matters.

use std::path::PathBuf;

/// The setting that names the specification's directory.
pub const SPEC_DIR_VAR: &str = "ARGYLL_SPEC_DIR";
/// The setting that makes a missing specification a failure.
pub const SPEC_REQUIRED_VAR: &str = "ARGYLL_SPEC_REQUIRED";

/// The specification directory when it is there: `ARGYLL_SPEC_DIR`, else `../shared` beside
/// the repository. `None` (after one line on stderr saying what is skipped) when it is not
/// there.
///
/// # Panics
///
/// When it is not there and `ARGYLL_SPEC_REQUIRED` is set (to anything but `0` or empty).
#[allow(clippy::panic)] // a test setting that must fail the test run
pub fn spec_dir(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(SPEC_DIR_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.join("spec").is_dir() {
        return Some(dir);
    }
    let required = std::env::var(SPEC_REQUIRED_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    let message = format!(
        "{what}: the shared specification is not at {} (set {SPEC_DIR_VAR} to its directory)",
        dir.display()
    );
    if required {
        panic!("{message}; {SPEC_REQUIRED_VAR} is set, so this fails instead of skipping");
    }
    eprintln!("skipped {message}");
    None
}
