//! What `memory` shows: each live agent's memory against the fleet budget, sorted;
//! `--json` schema 1 (`docs/memory-json.md`).

use super::{AgentSample, Detail};
use crate::context::Ctx;
use anyhow::Result;
use fleet_cli::MemorySort;
use fleet_core::{
    cgroup::MemoryEvents,
    labels::Selector,
    meminfo::{Budget, percent_1dp},
    size::Limit,
    state::AgentState,
};
use serde::Serialize;

/// The `--json` schema version.
pub const MEMORY_SCHEMA: u32 = 1;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct MemoryReport {
    /// [`MEMORY_SCHEMA`].
    pub schema: u32,
    /// Sorted rows.
    pub agents: Vec<AgentMemory>,
    /// The totals row and the budget.
    pub totals: Totals,
}

/// One agent.
#[derive(Debug, Serialize)]
pub struct AgentMemory {
    pub id: String,
    pub state: AgentState,
    pub current_bytes: u64,
    /// What admission counts it for while it uses less (`--memory-reserve`).
    pub reserve_bytes: Option<u64>,
    pub high_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub percent_of_max: Option<f64>,
    pub peak_bytes: Option<u64>,
    pub events: MemoryEvents,
    pub pressure_some_avg10: f64,
    pub pressure_full_avg10: f64,
    pub protect: bool,
}

/// Totals against the budget.
#[derive(Debug, Serialize)]
pub struct Totals {
    pub agents: usize,
    pub current_bytes: u64,
    pub budget_bytes: u64,
    pub used_bytes: u64,
    pub used_percent: f64,
    pub spawn_threshold: u8,
    pub kill_threshold: u8,
}

/// Measures the budget, then every live agent (those `selector` matches, if given) at
/// [`Detail::Memory`], rows sorted `by`. The totals are those of the rows shown; the budget's
/// use is the whole fleet's.
pub fn report(ctx: &Ctx, by: MemorySort, selector: Option<&Selector>) -> Result<MemoryReport> {
    let budget = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let views = super::live_sampled(ctx, Detail::Memory, |r| selector.is_none_or(|s| s.matches(&r.labels)))?
        .into_iter()
        .filter(|(v, _)| selector.is_none_or(|s| crate::agent::select::matches(s, v)))
        .collect();
    let mut agents: Vec<AgentMemory> =
        super::measured(super::agents_with(ctx, views, Detail::Memory)).iter().map(row).collect();
    sort(&mut agents, by);
    Ok(MemoryReport {
        schema: MEMORY_SCHEMA,
        totals: Totals {
            agents: agents.len(),
            current_bytes: agents.iter().map(|a| a.current_bytes).sum(),
            budget_bytes: budget.total,
            used_bytes: budget.used,
            used_percent: budget.percent_1dp(),
            spawn_threshold: ctx.spawn_threshold(),
            kill_threshold: ctx.kill_threshold(),
        },
        agents,
    })
}

fn row(s: &AgentSample) -> AgentMemory {
    let c = &s.cgroup;
    let current = c.current.unwrap_or(0);
    let max = c.max.and_then(Limit::bytes);
    AgentMemory {
        id: s.view.record.id.to_string(),
        state: s.view.state,
        current_bytes: current,
        // What admission counts: a reservation ends with its run's supervisor.
        reserve_bytes: s.view.record.memory_reserve.filter(|_| s.view.supervised && !s.view.state.is_terminal()),
        high_bytes: c.high.and_then(Limit::bytes),
        max_bytes: max,
        percent_of_max: max.map(|m| percent_1dp(current, m)),
        peak_bytes: c.peak,
        events: c.events,
        pressure_some_avg10: c.pressure.some_avg10,
        pressure_full_avg10: c.pressure.full_avg10,
        protect: s.view.record.protect,
    }
}

/// Largest first by `by`; ties, and `--sort id`, by id as a person counts (a2 before a10).
fn sort(rows: &mut [AgentMemory], by: MemorySort) {
    rows.sort_by(|a, b| fleet_core::id::natural_cmp(&a.id, &b.id));
    let desc = |f: fn(&AgentMemory) -> f64| move |a: &AgentMemory, b: &AgentMemory| f(b).total_cmp(&f(a));
    match by {
        MemorySort::Current => rows.sort_by(desc(|a| a.current_bytes as f64)),
        MemorySort::Percent => rows.sort_by(desc(|a| a.percent_of_max.unwrap_or(0.0))),
        MemorySort::Peak => rows.sort_by(desc(|a| a.peak_bytes.unwrap_or(0) as f64)),
        MemorySort::OomKills => rows.sort_by(desc(|a| a.events.oom_kill as f64)),
        MemorySort::Pressure => rows.sort_by(desc(|a| a.pressure_some_avg10)),
        MemorySort::Id => {}
    }
}
