//! What every command knows about agents: the supervisor's plan, how a process is placed in
//! an agent's cgroup, how an agent's live state is derived, how an agent is stopped, and how
//! its log is followed.

pub mod admission;
pub mod attach;
pub mod contain;
pub mod deaths;
pub mod ending;
pub mod environment;
pub mod follow;
pub mod growth;
pub mod identity;
pub mod leases;
pub mod ownership;
mod parallel;
pub mod place;
pub mod plan;
pub mod queue;
pub mod relief;
pub mod sample;
pub mod select;
pub mod spawn;
pub mod stall;
pub mod stop;
pub mod unreadable;
pub mod view;

pub use parallel::{Spread, par_map, par_map_owned, spread};

/// Whether agent `id` exists for the commands that act on one: it has a record or a cgroup.
pub fn exists(ctx: &crate::context::Ctx, id: &fleet_core::id::AgentId) -> bool {
    ctx.dirs.agent_dir(id).is_dir() || ctx.fleet.agent(id).exists()
}

/// Whether `path` exists, telling "not there" from "not allowed to look": a directory the
/// caller may not search is exit 77 with what to do, never "no such agent" or "not found".
pub fn readable_exists(path: &std::path::Path) -> anyhow::Result<bool> {
    use std::io::ErrorKind;
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(false),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(crate::exit::denied(path)),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

/// Takes a host-wide lock in the state dir (`relief.lock`, `watch.lock`) for the life of the
/// returned value, or fails with exit 4 naming who holds it.
pub fn take_host_lock(ctx: &crate::context::Ctx, role: &str, busy: &str) -> anyhow::Result<fleet_core::lock::Lock> {
    let path = ctx.dirs.state.join(format!("{role}.lock"));
    let Some(mut lock) = fleet_core::lock::Lock::try_acquire(&path)? else {
        let who = fleet_core::lock::read_holder(&path).map(|h| format!(" (pid {})", h.pid)).unwrap_or_default();
        return Err(crate::exit::Fail::error(crate::exit::Exit::Busy, format!("{busy}{who}")));
    };
    // The holder only names the pid in a refused caller's message; a full state dir must
    // not keep relief or the guard from running.
    let _ = lock.set_holder(role);
    Ok(lock)
}
