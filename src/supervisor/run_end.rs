//! Ending a run and an agent: killing what is left of a run, removing the scratch dir, and
//! recording the end so that it reaches the disk even when the disk is full.
//!
//! Kept apart from the state machine; the record's fields and the journal-then-record order
//! are `agent::ending`'s, which `kill` uses for an orphan's end too.

use fleet_core::{
    cgroup::{Cgroup, KILL_SETTLE},
    event::Exit,
    id::AgentId,
    paths::{Dirs, remove_dir_tree},
    state::AgentRecord,
};
use std::{path::Path, time::Duration};

/// The first and the longest wait between tries to record an agent's end on a full disk.
const FINAL_RETRY_FIRST: Duration = Duration::from_millis(100);
const FINAL_RETRY_MAX: Duration = Duration::from_secs(5);

/// After a run's main process ended: kills what is left in its cgroup and waits (up to
/// [`KILL_SETTLE`]) for it to go. False if processes remain.
pub fn kill_rest(cgroup: &Cgroup) -> bool {
    if !cgroup.populated().unwrap_or(false) {
        return true;
    }
    let _ = cgroup.kill();
    cgroup.wait_empty(KILL_SETTLE).unwrap_or(false)
}

/// Removes the agent's scratch dir: tmpfs pages outlive the cgroup they were charged to,
/// and left behind they would leak host memory. Err says why it could not be removed.
pub fn remove_scratch(dir: Option<&Path>) -> Result<(), String> {
    match dir {
        Some(dir) => remove_dir_tree(dir).map_err(|e| format!("cannot remove the scratch dir {}: {e}", dir.display())),
        None => Ok(()),
    }
}

/// Journals the `exit` event, then saves the final record, each until it succeeds. Both
/// must reach the disk: without the event the run never ends in the journal, and without
/// the record every reader takes the run for one whose supervisor died and records its end
/// a second time. So on a full disk the supervisor waits for room, holding the id's lock
/// and leases (its agent is already gone), and says so once through `note`.
pub fn record_end(dirs: &Dirs, id: &AgentId, record: &AgentRecord, exit: Exit, mut note: impl FnMut(&str)) {
    if let Some(me) = record.supervisor {
        crate::agent::deaths::claim_end(dirs, id, me);
    }
    let mut exit = Some(exit);
    let mut wait = FINAL_RETRY_FIRST;
    let mut told = false;
    loop {
        match crate::agent::ending::write(dirs, record, &mut exit) {
            Ok(()) => return,
            Err(e) if !told => {
                told = true;
                note(&format!("cannot record the agent's end yet ({e:#}); retrying until there is room"));
            }
            Err(_) => {}
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(FINAL_RETRY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_scratch_dir_is_no_error_and_an_unremovable_one_is_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(remove_scratch(None), Ok(()));
        assert_eq!(remove_scratch(Some(&tmp.path().join("gone"))), Ok(()));
        let dir = tmp.path().join("scratch");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        assert_eq!(remove_scratch(Some(&dir)), Ok(()));
        assert!(!dir.exists());
        // A regular file where the dir should be cannot be removed as a dir.
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").expect("file");
        let why = remove_scratch(Some(&file)).expect_err("not a dir");
        assert!(why.contains("file"), "{why}");
    }
}
