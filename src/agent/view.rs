//! An agent as commands see it: its record, reconciled with what the kernel says now.
//! The record is what the supervisor last wrote; whether the supervisor is still alive (its
//! process, or the agent's lock held) decides if a "running" record is true or the agent is
//! orphaned.

use crate::context::Ctx;
use fleet_core::{
    id::AgentId,
    lock::HeldLocks,
    state::{AgentRecord, AgentState},
};
use std::{
    cell::OnceCell,
    path::{Path, PathBuf},
};

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

/// Whether agent `record` has a live supervisor: the supervisor process it names is alive
/// (its pid and start time), or, for a run that has not ended, the agent's lock is held (a
/// spawn in progress, before the record names its supervisor). `/proc/locks` alone is not
/// enough: the kernel renders it a page per read(2) and resumes by position, so while other
/// locks are being released (a `kill --all`) a held lock can be skipped. It is also costly,
/// so it is asked last and never for an ended run, whose lock, if held at all, belongs to
/// a new run of the id starting; `gc` tries that lock itself before it removes anything.
pub fn is_supervised(ctx: &Ctx, locks: &Locks, record: &AgentRecord) -> bool {
    record.supervisor.is_some_and(|s| s.is_alive(&ctx.proc_root))
        || (!record.state.is_terminal() && locks.held().contains(&ctx.dirs.lock_path(&record.id)))
}

/// `/proc/locks`, read at most once, and only when a record's supervisor process cannot
/// answer alone. Each read costs an RCU grace period on a host that has not just had one
/// (10-15 ms here): the kernel write-locks its global list of file locks to render it.
pub struct Locks<'a> {
    proc_root: &'a Path,
    held: OnceCell<HeldLocks>,
}

impl<'a> Locks<'a> {
    /// Nothing is read until a record needs it.
    pub fn new(proc_root: &'a Path) -> Locks<'a> {
        Locks { proc_root, held: OnceCell::new() }
    }

    fn held(&self) -> &HeldLocks {
        self.held.get_or_init(|| HeldLocks::read(self.proc_root))
    }
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
    let supervised = is_supervised(ctx, &Locks::new(&ctx.proc_root), &record);
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
    let locks = Locks::new(&ctx.proc_root);
    let (mut views, mut bad) = (Vec::new(), Vec::new());
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<AgentId>().ok()) else {
            continue;
        };
        let path = ctx.dirs.state_path(&id);
        match AgentRecord::load(&path) {
            Ok(Some(record)) => {
                let supervised = is_supervised(ctx, &locks, &record);
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
