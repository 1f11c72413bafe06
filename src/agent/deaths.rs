//! A supervisor's death, journaled once by whichever command sees it first.
//!
//! There is no daemon to notice a supervisor dying (SIGKILL, a crash): the next command
//! that reads the agent's record does (`agent::view`). Several commands may see it at the
//! same moment (a `status` loop, the watcher, a `kill`), so the first to create a marker
//! file named after that supervisor (pid and start time, so a later run of the id is never
//! mistaken for it) writes the `supervisor_died` event; the others find the marker and
//! write nothing. The markers go with the agent's state directory (`gc`).
//!
//! The same goes for the end of such a run once its processes are gone: the first command
//! to see it journals its `exit` ([`journal_end`]), so the journal and the metrics counting
//! it do not wait for a `kill` or `gc` to settle the record. Those settle the record later
//! under the id's lock and journal the end only if nobody has.

use crate::context::Ctx;
use fleet_core::{
    event::{Event, Exit},
    id::AgentId,
    journal,
    paths::Dirs,
    procs::ProcessRef,
    state::AgentRecord,
};
use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
};

/// The marker that says `what` (`supervisor-died`, `ended`) of the run of agent `record`
/// under `supervisor` is journaled.
fn marker(dirs: &Dirs, id: &AgentId, supervisor: ProcessRef, what: &str) -> PathBuf {
    dirs.agent_dir(id).join(format!("{what}.{}.{}", supervisor.pid, supervisor.start_ticks))
}

/// Claims the journaling of the end of agent `id`'s run under `supervisor` for the caller:
/// the supervisor itself does, before it journals the end it observed, so that no reader
/// adds an unobserved one should it die before its record is saved. False when the marker
/// cannot be made (a full state disk): the end is journaled all the same.
pub fn claim_end(dirs: &Dirs, id: &AgentId, supervisor: ProcessRef) -> bool {
    make(&marker(dirs, id, supervisor, "ended"))
}

/// Makes `marker`; false when it was there already (or cannot be made).
fn make(marker: &Path) -> bool {
    OpenOptions::new().write(true).create_new(true).open(marker).is_ok()
}

/// Appends `event` once per marker: whoever creates the marker writes the line. Returns
/// whether this call did (false: journaled already, or the state dir cannot take even an
/// empty file). A failed append removes the marker again, so the next command tries.
fn once(ctx: &Ctx, marker: PathBuf, record: &AgentRecord, event: &Event) -> fleet_core::Result<bool> {
    if !make(&marker) {
        return Ok(false);
    }
    journal::append(&ctx.dirs.journal_path(), &record.id, event).inspect_err(|_| {
        let _ = std::fs::remove_file(&marker);
    })?;
    Ok(true)
}

/// Journals the end of agent `record`'s run under its dead `supervisor`, unless some command
/// already did. Returns whether this call did.
pub fn journal_end(ctx: &Ctx, record: &AgentRecord, supervisor: ProcessRef, exit: Exit) -> fleet_core::Result<bool> {
    once(ctx, marker(&ctx.dirs, &record.id, supervisor, "ended"), record, &Event::Exit(exit))
}

/// Journals that `supervisor` died while agent `record`'s run had not ended, unless some
/// command already did; `agent_alive` is whether the agent's cgroup still had processes.
/// Nothing is said when it cannot be written: the next command tries again (a full disk is
/// named by the commands that write for the operator, not by every reader).
pub fn note(ctx: &Ctx, record: &AgentRecord, supervisor: ProcessRef, agent_alive: bool) {
    let died = Event::SupervisorDied {
        supervisor_pid: supervisor.pid,
        agent_alive,
        agent_pid: record.pid,
        state: record.state,
    };
    let _ = once(ctx, marker(&ctx.dirs, &record.id, supervisor, "supervisor-died"), record, &died);
}
