//! Measuring every live agent's memory once, for `memory`, `relief` (and later the watcher).

use crate::{
    agent::view::{self, AgentView},
    context::Ctx,
};
use anyhow::Result;
use fleet_core::cgroup::{Limits, MemoryEvents, MemoryStats, Pressure};

/// One live agent and what its cgroup says now.
#[derive(Debug, Clone)]
pub struct AgentUsage {
    /// The agent.
    pub view: AgentView,
    /// Its memory now.
    pub stats: MemoryStats,
    /// Its limits, from the kernel.
    pub limits: Option<Limits>,
    /// Its memory event counters.
    pub events: MemoryEvents,
    /// Its memory pressure.
    pub pressure: Pressure,
}

impl AgentUsage {
    /// What killing it would free: usage minus page cache the kernel can drop anyway.
    pub fn reclaimable_by_kill(&self) -> u64 {
        self.stats.current.saturating_sub(self.stats.inactive_file)
    }
}

/// Every agent whose cgroup exists and is not ended, measured.
pub fn measure_live(ctx: &Ctx) -> Result<Vec<AgentUsage>> {
    let (views, _) = view::load_all(ctx)?;
    let mut out = Vec::new();
    for v in views.into_iter().filter(|v| !v.state.is_terminal()) {
        let cgroup = ctx.fleet.agent(&v.record.id);
        // An agent between restarts has no cgroup: nothing to measure or free.
        let Ok(stats) = cgroup.memory_stats() else { continue };
        out.push(AgentUsage {
            limits: cgroup.read_limits().ok(),
            events: cgroup.memory_events().unwrap_or_default(),
            pressure: cgroup.memory_pressure().unwrap_or_default(),
            stats,
            view: v,
        });
    }
    Ok(out)
}
