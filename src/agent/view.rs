//! An agent as commands see it: its record, reconciled with what the kernel says now.
//! The record is what the supervisor last wrote; whether the supervisor still holds the
//! agent's lock decides if a "running" record is true or the agent is orphaned.

use crate::context::Ctx;
use fleet_core::{
    id::AgentId,
    lock::HeldLocks,
    state::{AgentRecord, AgentState},
};
use std::path::PathBuf;

/// One agent, reconciled.
#[derive(Debug, Clone)]
pub struct AgentView {
    /// The record on disk.
    pub record: AgentRecord,
    /// The state to show: the record's, or `orphaned` when nobody holds its lock.
    pub state: AgentState,
    /// Whether its supervisor (or a spawn in progress) holds the lock.
    pub supervised: bool,
}

/// A record that could not be read, named for the operator.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// Whether agent `record` has a live supervisor: its lock is held, or the supervisor process
/// it names is alive. `/proc/locks` alone is not enough: the kernel renders it a page per
/// read(2) and resumes by position, so while other locks are being released (a `kill --all`)
/// a held lock can be skipped. The supervisor's pid and start time cannot be misread.
pub fn is_supervised(ctx: &Ctx, held: &HeldLocks, record: &AgentRecord) -> bool {
    held.contains(&ctx.dirs.lock_path(&record.id))
        || (!record.state.is_terminal() && record.supervisor.is_some_and(|s| s.is_alive(&ctx.proc_root)))
}

/// Derives the state to show from a record and whether its lock is held.
pub fn reconcile(record: AgentRecord, supervised: bool) -> AgentView {
    let state = if !record.state.is_terminal() && !supervised { AgentState::Orphaned } else { record.state };
    AgentView { record, state, supervised }
}

/// Loads agent `id`, if it has a record.
pub fn load_one(ctx: &Ctx, id: &AgentId) -> anyhow::Result<Option<AgentView>> {
    let Some(record) = AgentRecord::load(&ctx.dirs.state_path(id))? else {
        return Ok(None);
    };
    let held = HeldLocks::read(&ctx.proc_root);
    let supervised = is_supervised(ctx, &held, &record);
    Ok(Some(reconcile(record, supervised)))
}

/// Loads every agent with a record, sorted by id, and the records that could not be read.
pub fn load_all(ctx: &Ctx) -> anyhow::Result<(Vec<AgentView>, Vec<BadRecord>)> {
    let dir = ctx.dirs.agents_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot list {}", dir.display())));
        }
    };
    let held = HeldLocks::read(&ctx.proc_root);
    let (mut views, mut bad) = (Vec::new(), Vec::new());
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<AgentId>().ok()) else {
            continue;
        };
        let path = ctx.dirs.state_path(&id);
        match AgentRecord::load(&path) {
            Ok(Some(record)) => {
                let supervised = is_supervised(ctx, &held, &record);
                views.push(reconcile(record, supervised))
            }
            // A directory with a lock but no record yet: a spawn in progress, or one that
            // was killed before writing; `status` has nothing to show for it.
            Ok(None) => {}
            Err(e) => bad.push(BadRecord { path, error: e.to_string() }),
        }
    }
    views.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    Ok((views, bad))
}
