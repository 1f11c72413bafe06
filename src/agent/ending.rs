//! A run's end, recorded one way: the final record's fields, then the `exit` event journaled
//! first and the record saved last, so whoever sees the final state can also find the event
//! that explains it. The supervisor records the ends it observes; `agent::stop` those of runs
//! whose supervisor is gone (for `kill`, relief, `spawn` and `gc`).

use fleet_core::{
    event::{Event, Exit},
    journal,
    paths::Dirs,
    state::{AgentRecord, AgentState},
};
use std::time::SystemTime;

/// Marks `record` ended for good, now: its final state, cause and killer; no process, no
/// restart pending.
pub fn close(record: &mut AgentRecord, state: AgentState, cause: String, killed_by: Option<String>) {
    record.state = state;
    record.cause = Some(cause);
    record.killed_by = killed_by;
    record.pid = None;
    record.ended_at = Some(SystemTime::now());
    record.next_restart_at = None;
    record.stalled_since = None;
}

/// Journals `exit` (unless it is `None`: journaled already, or not to be), then saves the
/// final `record`. `exit` is taken once it is in the journal, so a call again after a failed
/// save (a full disk) does not journal the end twice.
pub fn write(dirs: &Dirs, record: &AgentRecord, exit: &mut Option<Exit>) -> fleet_core::Result<()> {
    if let Some(end) = exit {
        journal::append(&dirs.journal_path(), &record.id, &Event::Exit(end.clone()))?;
        *exit = None;
    }
    record.save(&dirs.state_path(&record.id))?;
    // Its memory is free: a spawn waiting in line for memory may fit now.
    fleet_core::queue::wake(&fleet_core::queue::dir(&dirs.state));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::{cgroup::Limits, journal::read};

    fn dirs(root: &std::path::Path) -> Dirs {
        Dirs { state: root.join("state"), log: root.join("log") }
    }

    fn record(dirs: &Dirs) -> AgentRecord {
        let id: fleet_core::id::AgentId = "a1".parse().expect("id");
        let mut r = AgentRecord::new(id.clone(), Limits::default(), "/cg/a1".into(), dirs.log_path(&id));
        r.state = AgentState::Starting;
        r.pid = Some(41);
        r.next_restart_at = Some(SystemTime::now());
        r
    }

    #[test]
    fn close_leaves_no_process_and_no_restart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut r = record(&dirs(tmp.path()));
        close(&mut r, AgentState::Killed, "killed by user".into(), Some("user".into()));
        assert_eq!((r.state, r.pid, r.next_restart_at), (AgentState::Killed, None, None));
        assert_eq!((r.cause.as_deref(), r.killed_by.as_deref()), (Some("killed by user"), Some("user")));
        assert!(r.ended_at.is_some());
    }

    #[test]
    fn the_event_goes_first_and_once_and_the_record_last() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = dirs(tmp.path());
        let mut r = record(&dirs);
        close(&mut r, AgentState::Failed, "gone".into(), None);
        let mut exit = Some(Exit::unsupervised(AgentState::Failed, None, "gone"));
        // No state dir to save into: the event is in, the record is not, and the end waits.
        std::fs::write(tmp.path().join("state"), "not a directory").expect("block the state dir");
        assert!(write(&dirs, &r, &mut exit).is_err());
        assert_eq!(exit, None, "journaled");
        std::fs::remove_file(tmp.path().join("state")).expect("unblock");
        std::fs::create_dir_all(dirs.agent_dir(&r.id)).expect("state dir");
        write(&dirs, &r, &mut exit).expect("the retry saves");
        let (lines, bad) = read(&dirs.journal_path()).expect("read");
        assert_eq!((lines.len(), bad.len()), (1, 0), "one exit, not two");
        assert_eq!(lines[0].event, Some(Event::Exit(Exit::unsupervised(AgentState::Failed, None, "gone"))));
        let saved = AgentRecord::load(&dirs.state_path(&r.id)).expect("load").expect("a record");
        assert_eq!((saved.state, saved.cause), (AgentState::Failed, Some("gone".to_string())));
    }
}
