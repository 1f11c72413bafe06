//! Skipped tests are counted, never passed off as run. libtest has no runtime skip: a test
//! that cannot run here returns early and libtest reports it `ok`. So each skip says so on
//! the terminal (past libtest's output capture), is appended to the file
//! `$FLEETCTL_TEST_SKIPS` names (`.ci/run`'s closing line counts them), and the test binary
//! ends with one line counting them. Where the runner promises root
//! (`FLEETCTL_TEST_AS_ROOT=1`, as `.ci/run` does), a test that finds itself without root fails
//! instead: only a reason of the host's own (a kernel that forbids something, a tool the VM
//! lacks) may skip a test there.

use std::{
    io::Write,
    sync::{Mutex, Once},
};

/// The tests skipped so far in this test binary, and the tests that skipped a part, each
/// line with why.
static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SKIPPED_PARTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Records that `test` did not run because this process is not root, or fails it where the
/// runner promised root.
#[track_caller]
pub fn skip_without_root(test: &str) {
    assert!(
        std::env::var_os("FLEETCTL_TEST_AS_ROOT").is_none(),
        "{test}: FLEETCTL_TEST_AS_ROOT is set but this test runs without root; run the suite as root"
    );
    skip(test, "needs root to create cgroups");
}

/// Records that `test` did not run, and why: on the terminal, in `$FLEETCTL_TEST_SKIPS`, and
/// in the closing count.
pub fn skip(test: &str, why: &str) {
    note(format!("SKIPPED {test}: {why}"), &SKIPPED);
}

/// Records that part of `test` did not run (the rest did), and why, as [`skip`] does; the
/// test still passes or fails on what it did check.
pub fn skip_part(test: &str, why: &str) {
    note(format!("SKIPPED part of {test}: {why}"), &SKIPPED_PARTS);
}

fn note(said: String, list: &Mutex<Vec<String>>) {
    let line = format!("{said}\n");
    // Straight to the terminal: `println!` inside a passing test is captured and never shown.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os("FLEETCTL_TEST_SKIPS") {
        record(std::path::Path::new(&path), &line);
    }
    list.lock().unwrap_or_else(|e| e.into_inner()).push(said);
    // SAFETY: atexit takes a plain function pointer; `closing_line` is one, and runs once,
    // after libtest has printed its own result and every test thread has finished.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(closing_line);
    });
}

/// Appends one skip line to the file at `path`. One `write` per line on an `O_APPEND` file,
/// so tests skipping at once do not interleave.
pub fn record(path: &std::path::Path, line: &str) {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
    if let Err(e) = file.and_then(|mut f| f.write_all(line.as_bytes())) {
        panic!("cannot record a skip in {}: {e}", path.display());
    }
}

/// After libtest's `test result: ok. N passed`, what that line leaves out.
extern "C" fn closing_line() {
    let count = |list: &Mutex<Vec<String>>| list.lock().unwrap_or_else(|e| e.into_inner()).len();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {} of the tests reported ok above did not run, and {} ran only in part (their SKIPPED lines say why)",
        count(&SKIPPED),
        count(&SKIPPED_PARTS)
    );
}
