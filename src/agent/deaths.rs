//! A supervisor's death, journaled once by whichever command sees it first.
//!
//! There is no daemon to notice a supervisor dying (SIGKILL, a crash): the next command
//! that reads the agent's record does (`agent::view`). Several commands may see it at the
//! same moment (a `status` loop, the watcher, a `kill`), so the first to create a marker
//! file named after that supervisor (pid and start time, so a later run of the id is never
//! mistaken for it) writes the `supervisor_died` event; the others find the marker and
//! write nothing. The markers go with the agent's state directory (`gc`).

use crate::context::Ctx;
use fleet_core::{journal, procs::ProcessRef, state::AgentRecord};
use serde_json::json;
use std::{fs::OpenOptions, path::PathBuf};

/// The marker that says the death of `supervisor` of agent `record` is journaled.
fn marker(ctx: &Ctx, record: &AgentRecord, supervisor: ProcessRef) -> PathBuf {
    ctx.dirs.agent_dir(&record.id).join(format!("supervisor-died.{}.{}", supervisor.pid, supervisor.start_ticks))
}

/// Journals that `supervisor` died while agent `record`'s run had not ended, unless some
/// command already did; `agent_alive` is whether the agent's cgroup still had processes.
/// Nothing is said when it cannot be written: the next command tries again (a full disk is
/// named by the commands that write for the operator, not by every reader).
pub fn note(ctx: &Ctx, record: &AgentRecord, supervisor: ProcessRef, agent_alive: bool) {
    let marker = marker(ctx, record, supervisor);
    if OpenOptions::new().write(true).create_new(true).open(&marker).is_err() {
        return; // journaled already, or the state dir cannot take even an empty file
    }
    let detail = json!({
        "supervisor_pid": supervisor.pid,
        "agent_alive": agent_alive,
        "agent_pid": record.pid,
        "state": record.state,
    });
    if journal::append(&ctx.dirs.journal_path(), "supervisor_died", &record.id, detail).is_err() {
        let _ = std::fs::remove_file(&marker);
    }
}
