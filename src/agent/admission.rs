//! Admission control: whether the fleet has room for one more agent. Spawns decide one at a
//! time under the admission ledger's lock ([`fleet_core::admission`]), and each counts the
//! agents admitted just before it at what they are expected to take, not only at what they
//! use yet: an agent starts with next to nothing and grows in its first seconds.

use crate::{
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::Result;
use fleet_core::{
    admission::{self, Entry, Ledger},
    cgroup::Limits,
    event::{Event, Refusal},
    id::AgentId,
    meminfo::{Budget, percent_1dp},
    size::{Limit, format_iec},
};
use std::time::Duration;

/// What a starting agent is expected to take at least, unless `agent.start_reserve` in the
/// config file says otherwise: about what a runtime such as node or python takes to start.
/// Lower when the agent's own memory.high or memory.max is lower.
pub const START_RESERVE: u64 = 32 << 20;

/// How long an agent counts as starting: until it has run this long, or its own use has
/// passed its reserve, whichever comes first.
pub const START_WINDOW: Duration = Duration::from_secs(10);

/// The reserve an agent with `limits` starts with: `base` (the configured reserve, else
/// [`START_RESERVE`]), capped by its limits.
pub fn start_reserve(limits: &Limits, base: u64) -> u64 {
    [limits.memory_high, limits.memory_max]
        .into_iter()
        .filter_map(|l| match l {
            Limit::Bytes(b) => Some(b),
            Limit::Max => None,
        })
        .fold(base, u64::min)
}

/// An admitted spawn. Its line stays in the ledger once the agent has started
/// ([`Admitted::started`]); a spawn that fails after admission takes it out again, so the
/// reservation does not keep others out for nothing.
pub struct Admitted<'a> {
    ctx: &'a Ctx,
    id: AgentId,
    /// The budget as admission measured it.
    pub budget: Budget,
    armed: bool,
}

impl Admitted<'_> {
    /// The agent has started: its reservation stays until it has grown or aged.
    pub fn started(mut self) {
        self.armed = false;
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut ledger) = Ledger::lock(&self.ctx.dirs.admission_path()) {
            let pid = std::process::id() as i32;
            ledger.entries.retain(|e| !(e.pid == pid && e.id == self.id));
            let _ = ledger.save();
        }
    }
}

/// Admits agent `id` with `limits`, or refuses with exit 75 (and a `spawn_refused` event)
/// when the fleet's use, with every starting agent counted at its reserve and this one too,
/// would reach `threshold` percent of the budget.
pub fn admit<'a>(ctx: &'a Ctx, id: &AgentId, limits: &Limits, threshold: u8) -> Result<Admitted<'a>> {
    let mut ledger = Ledger::lock(&ctx.dirs.admission_path())?;
    let now = admission::now();
    let before = ledger.entries.len();
    ledger.entries.retain(|e| admission::young(e.at, now, START_WINDOW));
    let budget = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let own = start_reserve(limits, ctx.agent.start_reserve);
    let counted = |starting: u64| budget.used.saturating_add(starting).saturating_add(own);
    let fits = |starting: u64| percent(counted(starting), budget.total) < f64::from(threshold);
    let mut starting: u64 = ledger.entries.iter().map(|e| e.reserve).sum();
    if !fits(starting) {
        // Only near the threshold is it worth one read per starting agent: what each one
        // already uses is in the measured use, so only the rest of its reserve is added.
        let outstanding: Vec<Option<u64>> = ledger.entries.iter().map(|e| outstanding(ctx, e)).collect();
        let mut kept = outstanding.iter();
        ledger.entries.retain(|_| kept.next().is_some_and(Option::is_some));
        starting = outstanding.into_iter().flatten().sum();
    }
    if !fits(starting) {
        if ledger.entries.len() != before {
            let _ = ledger.save();
        }
        drop(ledger);
        return Err(refuse(ctx, id, &budget, starting, own, threshold));
    }
    ledger.entries.push(Entry { at: now, reserve: own, pid: std::process::id() as i32, id: id.clone() });
    ledger.save()?;
    Ok(Admitted { ctx, id: id.clone(), budget, armed: true })
}

/// What a starting agent still adds to the measured use: the part of its reserve it does not
/// use yet. `None` when it no longer counts as starting: it has grown past its reserve, or it
/// is gone (no cgroup, and the spawn that was making it has ended).
fn outstanding(ctx: &Ctx, entry: &Entry) -> Option<u64> {
    match ctx.fleet.agent(&entry.id).memory_current() {
        Ok(used) => (used < entry.reserve).then(|| entry.reserve - used),
        Err(e) if e.cgroup_gone() => spawn_alive(entry.pid).then_some(entry.reserve),
        // Unreadable: count it whole rather than admit on a guess.
        Err(_) => Some(entry.reserve),
    }
}

/// Whether process `pid` exists (EPERM means it does).
fn spawn_alive(pid: i32) -> bool {
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 100.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// The exit-75 error for a fleet without room, after journaling the refusal.
fn refuse(ctx: &Ctx, id: &AgentId, budget: &Budget, starting: u64, own: u64, threshold: u8) -> anyhow::Error {
    let counted = budget.used.saturating_add(starting).saturating_add(own);
    let refusal = Event::SpawnRefused(Refusal::Memory {
        used_percent: budget.percent_1dp(),
        counted_percent: percent_1dp(counted, budget.total),
        threshold_percent: threshold,
    });
    // A refusal must be told even when the journal cannot take it (a full log dir).
    let _ = fleet_core::journal::append(&ctx.dirs.journal_path(), id, &refusal);
    let starting = match starting {
        0 => String::new(),
        n => format!(", {} expected of agents still starting", format_iec(n)),
    };
    Fail::error(
        Exit::Refused,
        format!(
            "refusing to spawn: fleet memory would be at {:.1} % of {} ({} used{starting}, {} for this agent), at or above the spawn threshold of {threshold} %; wait for agents to finish, or free memory with `fleetctl relief`",
            percent_1dp(counted, budget.total),
            format_iec(budget.total),
            format_iec(budget.used),
            format_iec(own),
        ),
    )
}

/// Journals a spawn refused because a lease pool (workspace slots, ports) is exhausted:
/// refusals for memory and for pools are counted alike.
pub fn note_pool_refusal(ctx: &Ctx, id: &AgentId, err: &anyhow::Error) {
    if crate::exit::exit_for(err) == Exit::Refused {
        let _ = fleet_core::journal::append(&ctx.dirs.journal_path(), id, &Event::SpawnRefused(Refusal::Pool));
    }
}

/// The warning for a memory limit the operator gave (flag or config file) that is above the
/// whole budget: the budget, not the limit, is what stops that agent, and when it runs out
/// the OOM kill may take another agent. The built-in default is not warned about: it was
/// not typed, and it would be repeated on every spawn into a small fleet.
pub fn limit_above_budget(ctx: &Ctx, flags: &fleet_cli::LimitArgs, limits: &Limits, budget: &Budget) -> Option<String> {
    let given = flags.memory_max.is_some() || ctx.agent.memory_max_configured;
    let Limit::Bytes(max) = limits.memory_max else { return None };
    if !given || max <= budget.total {
        return None;
    }
    let whose = match budget.source {
        fleet_core::meminfo::BudgetSource::FleetRoot => "the fleet's budget",
        fleet_core::meminfo::BudgetSource::Host => "the host's memory",
    };
    Some(format!(
        "warning: its memory limit ({}) is above {whose} ({}), so {whose} runs out first and the OOM kill then may take another agent; give a --memory-max of at most {} for a limit of its own",
        limits.memory_max,
        format_iec(budget.total),
        format_iec(budget.total)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_reserve_is_capped_by_the_agents_own_limits() {
        let limits = |max: Limit, high: Limit| Limits { memory_max: max, memory_high: high, ..Limits::default() };
        assert_eq!(start_reserve(&Limits::default(), START_RESERVE), START_RESERVE);
        assert_eq!(start_reserve(&limits(Limit::Max, Limit::Max), START_RESERVE), START_RESERVE);
        assert_eq!(start_reserve(&limits(Limit::Bytes(64 << 20), Limit::Bytes(16 << 20)), START_RESERVE), 16 << 20);
        assert_eq!(start_reserve(&limits(Limit::Bytes(8 << 20), Limit::Max), START_RESERVE), 8 << 20);
        // A configured reserve replaces the built-in one; 0 counts starting agents at their use.
        assert_eq!(start_reserve(&Limits::default(), 1 << 20), 1 << 20);
        assert_eq!(start_reserve(&Limits::default(), 0), 0);
    }
}
