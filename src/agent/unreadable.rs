//! Agents without a readable record: a truncated or corrupt `state.json`, or none at all (a
//! cgroup made by `cgroup-create`). The cgroup is the truth for killing and measuring, so
//! such an agent is seen through it: it exists while its cgroup does, its memory is its
//! cgroup's, and `kill`, `memory`, relief and the watcher act on it like on any other. What
//! only the record knew (workspace, command, deadlines, `--protect`) is unknown.
//!
//! The bad record is named once per command on stderr ([`name_once`]); `status` names it in
//! its report instead.

use crate::{
    agent::view::{AgentView, Witnesses},
    context::Ctx,
};
use fleet_core::{
    id::AgentId,
    lock::read_holder,
    procs::ProcessRef,
    state::{AgentRecord, AgentState},
};
use std::{collections::BTreeSet, path::Path, sync::Mutex, time::SystemTime};

/// What stands for the error of an agent that has a cgroup and no record at all.
pub const NO_RECORD: &str =
    "it has no record (a cgroup made by `cgroup-create`, or a spawn that died before writing one)";

/// "record state.json cannot be read (cannot parse …: EOF while parsing …)".
pub fn describe(path: &Path, error: &fleet_core::Error) -> String {
    use std::error::Error as _;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match error.source() {
        Some(source) => format!("record {name} cannot be read ({error}: {source})"),
        None => format!("record {name} cannot be read ({error})"),
    }
}

/// Agent `id` as its cgroup and lock tell it, with `why` it has no record to go by. Returns
/// the view and whether anything is there to act on (processes in the cgroup, or the lock
/// held): a bad record with neither is an agent that ended, only named.
///
/// Its state: `running` with processes and the lock held, `orphaned` with processes and no
/// holder, `starting` with a holder and no processes (a restart backoff), else `orphaned`
/// with nothing to act on. Its supervisor is the holder the lock file names, if the lock is
/// held by a supervisor: `kill` wakes it, and it records the end itself, over the bad file,
/// from the record it keeps in memory.
pub fn from_cgroup(ctx: &Ctx, witnesses: &Witnesses, id: &AgentId, why: String) -> (AgentView, bool) {
    let cgroup = ctx.fleet.agent(id);
    let populated = cgroup.populated().unwrap_or(false);
    let lock = ctx.dirs.lock_path(id);
    let held = witnesses.held().contains(&lock);
    let supervisor = held
        .then(|| read_holder(&lock))
        .flatten()
        .filter(|h| h.role == "supervisor")
        .and_then(|h| ProcessRef::of(&ctx.proc_root, h.pid));
    let state = match (populated, held) {
        (true, true) => AgentState::Running,
        (false, true) => AgentState::Starting,
        _ => AgentState::Orphaned,
    };
    let made = cgroup.created_at();
    let scratch = crate::agent::leases::scratch_dir(ctx, id);
    let record = AgentRecord {
        state,
        supervisor,
        created_at: made.unwrap_or(SystemTime::UNIX_EPOCH),
        started_at: made.filter(|_| populated),
        scratch: scratch.exists().then_some(scratch),
        stalled_since: None,
        save_signal: None,
        ..AgentRecord::new(
            id.clone(),
            cgroup.read_limits().unwrap_or_default(),
            cgroup.unified.clone(),
            ctx.dirs.log_path(id),
        )
    };
    let view = AgentView { record: Box::new(record), state, supervised: held, record_error: Some(why) };
    (view, populated || held)
}

/// Names agent `id`'s missing or unreadable record on stderr, once per command however often
/// the command looks (relief measures again after every kill).
pub fn name_once(id: &AgentId, why: &str) {
    static NAMED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = NAMED.lock().map(|mut named| named.insert(id.to_string())).unwrap_or(true);
    if first {
        eprintln!("fleetctl: agent {id}: {why}; acting on its cgroup");
    }
}
