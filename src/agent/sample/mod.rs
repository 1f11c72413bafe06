//! The agent sampler: the one place that decides which of an agent's cgroup files a command
//! reads. Each view asks for a [`Detail`] and gets exactly the files that level names, so the
//! hot paths (`status`, `memory`, `metrics`, the watcher's refresh) never parse
//! `memory.stat`; only relief, when it must choose victims, reads reclaimable page cache.
//!
//! One-shot commands sample through [`load_sampled`] (each agent's cgroup read right after its
//! record) or [`agents`] over [`live_views`]; the watcher keeps a
//! [`LightSampler`], the lightest level, whose usage files stay open between refreshes.
//! What a sample of an agent is ([`AgentSample`], and the `status` and `memory` reports built
//! from samples) lives here too; `render/` only formats it.

mod light;
pub mod memory;
pub mod metrics;
pub mod status;
#[cfg(test)]
mod tests;

pub use light::{Light, LightSampler};

use crate::{
    agent::view::{self, AgentView},
    context::Ctx,
};
use anyhow::Result;
use fleet_core::{
    cgroup::{Cgroup, HeldParent, Limits, MemoryEvents, Pressure},
    size::Limit,
    state::AgentRecord,
};

/// How much of an agent's cgroup a sample reads: what its view shows, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `status`: memory now, its peak and limit, tasks, and CPU time once the run started.
    Status,
    /// `metrics`: what `status` reads but CPU time, which it does not export.
    Metrics,
    /// `memory`: memory now, peak, limit, `memory.high`, the event counters and pressure.
    Memory,
    /// Relief choosing victims: memory now and the page cache the kernel can drop anyway
    /// (which parses `memory.stat`, so nothing else asks for it).
    Relief,
}

/// One agent's cgroup as sampled: what the level did not read, or could not, is `None`
/// (zero for counters and pressure).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupSample {
    /// Memory charged now; `None` also when the cgroup is gone (an agent between restarts).
    pub current: Option<u64>,
    /// Most memory ever charged, where the kernel tracks it.
    pub peak: Option<u64>,
    /// The hard limit as the kernel keeps it (from the record where there is one: [`Recorded`]).
    pub max: Option<Limit>,
    /// `memory.high` (v1: the soft limit), as `max` is.
    pub high: Option<Limit>,
    /// Memory event counters.
    pub events: MemoryEvents,
    /// Memory pressure.
    pub pressure: Pressure,
    /// Tasks in the cgroup.
    pub pids: Option<u64>,
    /// CPU time used, in microseconds.
    pub cpu_usec: Option<u64>,
    /// Reclaimable page cache (`inactive_file`).
    pub inactive_file: u64,
}

/// One agent: its reconciled view and its cgroup as sampled (nothing read for an agent whose
/// run has ended).
#[derive(Debug, Clone)]
pub struct AgentSample {
    /// The agent.
    pub view: AgentView,
    /// Its cgroup.
    pub cgroup: CgroupSample,
}

impl AgentSample {
    /// What killing it would free: usage minus page cache the kernel can drop anyway.
    pub fn reclaimable_by_kill(&self) -> u64 {
        self.cgroup.current.unwrap_or(0).saturating_sub(self.cgroup.inactive_file)
    }
}

/// What a sample takes from the agent's record instead of its cgroup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded {
    /// Its run has started: CPU time is read only then.
    pub started: bool,
    /// The limits spawn wrote into its cgroup, for an agent whose record was read and that
    /// cannot write its cgroup's files: nothing in fleetctl changes them afterwards (a
    /// restart writes the same ones again), so they are shown as the kernel keeps them
    /// ([`Limit::as_kernel_keeps`]) instead of read back, a file fewer per agent. `None` (an
    /// agent seen through its cgroup, or one running as root or as the fleet's owner): read
    /// from the kernel.
    pub limits: Option<Limits>,
}

/// Reads one agent's cgroup at `detail`, taking from its record what it `recorded`. Each
/// level opens only its own files; the unit tests list them. With `parent` (the fleet's
/// `agents` cgroup held open) each file is found from there instead of from the root: the
/// same files.
pub fn read_under(cgroup: &Cgroup, parent: Option<&HeldParent>, detail: Detail, recorded: Recorded) -> CgroupSample {
    let none = CgroupSample::default();
    let cgroup = cgroup.read_with(parent);
    let max = || match recorded.limits {
        Some(limits) => Some(limits.memory_max.as_kernel_keeps()),
        None => cgroup.memory_max().ok(),
    };
    match detail {
        Detail::Status | Detail::Metrics => {
            let mut s = match cgroup.memory_use() {
                Ok(m) => CgroupSample { current: Some(m.current), peak: m.peak, max: max(), ..none },
                Err(_) => none,
            };
            if detail == Detail::Status && recorded.started {
                s.cpu_usec = cgroup.cpu_usage_usec().ok();
            }
            s.pids = cgroup.pids_current().ok();
            s
        }
        Detail::Memory => {
            // An agent between restarts has no cgroup: nothing more to read.
            let Ok(m) = cgroup.memory_use() else { return none };
            let high = match recorded.limits {
                Some(limits) => Some(limits.memory_high.as_kernel_keeps()),
                None => cgroup.memory_high().ok(),
            };
            CgroupSample {
                current: Some(m.current),
                peak: m.peak,
                max: max(),
                high,
                events: cgroup.memory_events(recorded.limits.as_ref()).unwrap_or_default(),
                pressure: cgroup.memory_pressure().unwrap_or_default(),
                ..none
            }
        }
        Detail::Relief => {
            let Ok(current) = cgroup.memory_current() else { return none };
            CgroupSample { current: Some(current), inactive_file: cgroup.inactive_file().unwrap_or(0), ..none }
        }
    }
}

/// A view, and its cgroup if [`load_sampled`] read it with its record.
pub type Sampled = view::Then<CgroupSample>;

/// Samples `views` at `detail`, keeping their order: the cgroups of live agents are read
/// (spread over a few threads), ended ones are not.
pub fn agents(ctx: &Ctx, views: Vec<AgentView>, detail: Detail) -> Vec<AgentSample> {
    agents_with(ctx, views.into_iter().map(|v| (v, None)).collect(), detail)
}

/// [`agents`] over views some of which were sampled as they were loaded ([`load_sampled`]).
/// Such a sample is kept when the view is live and supervised (an orphan is read again, now
/// that it is known to be one); a view whose record was read again came without one. The
/// other live views are read now.
pub fn agents_with(ctx: &Ctx, views: Vec<Sampled>, detail: Detail) -> Vec<AgentSample> {
    let early = |(v, early): &Sampled| (*early).filter(|_| v.supervised);
    let todo: Vec<&AgentView> =
        views.iter().filter(|pair| !pair.0.state.is_terminal() && early(pair).is_none()).map(|(v, _)| v).collect();
    // Every agent's files through the `agents` directories held open; if they cannot be
    // opened (no agent yet), by path.
    let parent = (!todo.is_empty()).then(|| HeldParent::open(&ctx.fleet.agents()).ok()).flatten();
    let mut read_now = crate::agent::par_map(&todo, |v| {
        read_under(
            &ctx.fleet.agent(&v.record.id),
            parent.as_ref(),
            detail,
            recorded(&v.record, v.record_error.is_none()),
        )
    })
    .into_iter();
    views
        .into_iter()
        .map(|pair| {
            let cgroup = match early(&pair) {
                _ if pair.0.state.is_terminal() => CgroupSample::default(),
                Some(sample) => sample,
                None => read_now.next().expect("one sample read for each live view without one"),
            };
            AgentSample { view: pair.0, cgroup }
        })
        .collect()
}

/// Every agent ([`view::load_all`]), with the cgroups of those whose record says their run
/// has not ended and that `pick` chooses sampled at `detail` by the thread that read the
/// record, in the same pass ([`view::load_all_then`]). [`agents_with`] reads the rest.
pub fn load_sampled(
    ctx: &Ctx,
    detail: Detail,
    pick: impl Fn(&AgentRecord) -> bool + Sync,
) -> Result<(Vec<Sampled>, Vec<view::BadRecord>)> {
    // Opened by the first record picked: none may be (`status --state …`).
    let parent = std::sync::OnceLock::new();
    view::load_all_then(ctx, |record| {
        (!record.state.is_terminal() && pick(record)).then(|| {
            let parent = parent.get_or_init(|| HeldParent::open(&ctx.fleet.agents()).ok());
            read_under(&ctx.fleet.agent(&record.id), parent.as_ref(), detail, recorded(record, true))
        })
    })
}

/// What a sample takes from `record`: its limits only when the record was read (`read`),
/// not stood in for by its cgroup, and its agent cannot rewrite them.
fn recorded(record: &AgentRecord, read: bool) -> Recorded {
    Recorded {
        started: record.started_at.is_some(),
        limits: (read && cannot_rewrite_its_limits(record.user.as_deref())).then_some(record.limits),
    }
}

/// Whether an agent running as `user` (its record's `uid:gid`) cannot write its own cgroup's
/// limit files: it is neither root nor the user who owns the fleet's cgroups (on a delegated
/// fleet run by a user, that user: the files of cgroups it made are its own). For the others,
/// and where the record does not say, the limits are read from the kernel.
fn cannot_rewrite_its_limits(user: Option<&str>) -> bool {
    let uid = user.and_then(|u| u.split(':').next()).and_then(|u| u.parse::<u32>().ok());
    // Asked of the kernel once per command, not once per agent on `status`'s hot path.
    static OWNER: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let owner = *OWNER.get_or_init(|| nix::unistd::geteuid().as_raw());
    uid.is_some_and(|uid| uid != 0 && uid != owner)
}

/// Every agent whose run has not ended, with a readable record or not: the ones `memory`,
/// relief and the guard act on. An agent whose record cannot be read is named on stderr,
/// once per command.
pub fn live_views(ctx: &Ctx) -> Result<Vec<AgentView>> {
    let (views, bad) = view::load_all(ctx)?;
    Ok(live(views.into_iter().map(|v| (v, ())).collect(), &bad).into_iter().map(|(v, _)| v).collect())
}

/// [`live_views`] with those `pick` chooses sampled at `detail` ([`load_sampled`]).
pub fn live_sampled(ctx: &Ctx, detail: Detail, pick: impl Fn(&AgentRecord) -> bool + Sync) -> Result<Vec<Sampled>> {
    let (views, bad) = load_sampled(ctx, detail, pick)?;
    Ok(live(views, &bad))
}

fn live<S>(views: Vec<(AgentView, S)>, bad: &[view::BadRecord]) -> Vec<(AgentView, S)> {
    // Agents whose record cannot be read are measured through their cgroups, and named.
    for b in bad.iter().filter(|b| views.iter().any(|(v, _)| v.record.id == b.id)) {
        crate::agent::unreadable::name_once(&b.id, &b.error);
    }
    views.into_iter().filter(|(v, _)| !v.state.is_terminal()).collect()
}

/// The samples whose cgroup could be measured: without the agents between restarts, which
/// have none, so nothing to show or free there.
pub fn measured(samples: Vec<AgentSample>) -> Vec<AgentSample> {
    samples.into_iter().filter(|s| s.cgroup.current.is_some()).collect()
}
