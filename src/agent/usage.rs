//! Measuring every live agent's memory once, for `memory`, `relief` (and later the watcher).

use crate::{
    agent::view::{self, AgentView},
    context::Ctx,
};
use anyhow::Result;
use fleet_core::{
    cgroup::{MemoryEvents, MemoryStats, Pressure},
    size::Limit,
};

/// One live agent and what its cgroup says now.
#[derive(Debug, Clone)]
pub struct AgentUsage {
    /// The agent.
    pub view: AgentView,
    /// Its memory now.
    pub stats: MemoryStats,
    /// Its memory.high, from the kernel.
    pub high: Option<Limit>,
    /// Its memory event counters.
    pub events: MemoryEvents,
    /// Its memory pressure.
    pub pressure: Pressure,
    /// Its reclaimable page cache, when measured for relief.
    pub inactive_file: u64,
}

impl AgentUsage {
    /// What killing it would free: usage minus page cache the kernel can drop anyway.
    pub fn reclaimable_by_kill(&self) -> u64 {
        self.stats.current.saturating_sub(self.inactive_file)
    }
}

/// How much to read per agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Usage, limits, events, pressure.
    Report,
    /// The same plus reclaimable page cache (parses memory.stat), for choosing victims.
    Reclaim,
}

/// One agent's memory as the watcher's every refresh reads it: its cgroup name, usage and
/// (for the agents shown) its limit, without its state record.
#[derive(Debug, Clone)]
pub struct Light {
    /// The cgroup's (agent's) name.
    pub id: String,
    /// Memory charged now.
    pub current: u64,
    /// Its limit, if any (read only for the largest `top`).
    pub max: Option<u64>,
}

/// The cheap sample, largest first: one directory listing and one small read per agent, plus
/// the limit of the `top` largest.
pub fn sample_light(ctx: &Ctx, top: usize) -> Result<Vec<Light>> {
    let mut out = Vec::new();
    for name in ctx.fleet.agent_names()? {
        let Ok(id) = name.parse() else { continue };
        let Ok(current) = ctx.fleet.agent(&id).memory_current() else { continue };
        out.push(Light { id: name, current, max: None });
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.current));
    for l in out.iter_mut().take(top) {
        if let Ok(id) = l.id.parse() {
            l.max = ctx.fleet.agent(&id).memory_stats().ok().and_then(|s| s.max.bytes());
        }
    }
    Ok(out)
}

/// Every agent whose cgroup exists and is not ended, measured.
pub fn measure_live(ctx: &Ctx, detail: Detail) -> Result<Vec<AgentUsage>> {
    let (views, _) = view::load_all(ctx)?;
    let live: Vec<AgentView> = views.into_iter().filter(|v| !v.state.is_terminal()).collect();
    let measured = crate::agent::par_map(&live, |v| {
        let cgroup = ctx.fleet.agent(&v.record.id);
        // An agent between restarts has no cgroup: nothing to measure or free.
        let memory = cgroup.memory_detail().ok()?;
        Some(AgentUsage {
            stats: memory.stats,
            high: memory.high,
            events: memory.events,
            pressure: cgroup.memory_pressure().unwrap_or_default(),
            inactive_file: if detail == Detail::Reclaim { cgroup.inactive_file().unwrap_or(0) } else { 0 },
            view: v.clone(),
        })
    });
    let out: Vec<AgentUsage> = measured.into_iter().flatten().collect();
    Ok(out)
}
