//! Admission control: whether the fleet has room for one more agent. Spawns decide one at a
//! time under the admission ledger's lock ([`fleet_core::admission`]), and each counts the
//! agents admitted just before it at what they are expected to take, not only at what they
//! use yet: an agent starts with next to nothing and grows in its first seconds.

use crate::{
    agent::queue::Line,
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::{Context, Result};
use fleet_core::{
    admission::{self, Entry, Ledger},
    cgroup::Limits,
    event::{Event, Refusal},
    id::AgentId,
    liveness::Listed,
    meminfo::{Budget, percent_1dp},
    procs::ProcessRef,
    queue::{self, Reason},
    size::{Limit, format_iec},
    timefmt::human_duration,
};
use std::{collections::HashSet, time::Duration};

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

/// What admission holds a spawn against: the spawn threshold, the agent cap, and the
/// agent's own lasting reservation.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Percent of the budget that fleet use, counted, must stay below.
    pub threshold: u8,
    /// The most agents the fleet may have, live ones and spawns at work; None: no cap.
    pub max_agents: Option<u32>,
    /// Bytes admission counts for this agent for as long as it lives (`--memory-reserve`).
    pub memory_reserve: Option<u64>,
    /// A restart replacing its own run: not refused for others waiting in line (it had its
    /// turn when it first started, and its old run is already stopped).
    pub replaces_run: bool,
}

/// An admitted spawn. Its line names this process as its owner until the supervisor takes it
/// over ([`Admitted::hand_to_supervisor`]), and stays in the ledger once the agent has started
/// ([`Admitted::started`]); a spawn that fails after admission takes it out again, so the
/// reservation does not keep others out for nothing (and one that dies leaves a line whose
/// owner is gone, which no reader counts).
pub struct Admitted<'a> {
    ctx: &'a Ctx,
    id: AgentId,
    /// The budget as admission measured it.
    pub budget: Budget,
    /// Its line is a lasting reservation (`--memory-reserve`).
    lasting: bool,
    /// This spawn, as its line names its owner.
    own: ProcessRef,
    armed: bool,
}

impl Admitted<'_> {
    /// The supervisor `pid` is about to start the agent: it owns the reservation from now on,
    /// so the reservation lasts as long as the agent's supervisor, not as this spawn.
    pub fn hand_to_supervisor(&self, pid: i32) -> Result<()> {
        let supervisor = ProcessRef::of(&self.ctx.proc_root, pid)
            .with_context(|| format!("{}: its supervisor (pid {pid}) is gone before the start", self.id))?;
        let own = self.own;
        let path = self.ctx.dirs.admission_path();
        if !self.lasting {
            return Ok(Ledger::hand_over(&path, &self.id, own, supervisor)?);
        }
        // A lasting line names its supervisor itself, for any fleetctl that reads it
        // (`fleet_core::admission`): one rewrite per reserving agent.
        let mut ledger = Ledger::lock(&path)?;
        for e in ledger.entries.iter_mut().filter(|e| e.id == self.id && e.owner() == Some(own)) {
            (e.pid, e.start_ticks) = (supervisor.pid, Some(supervisor.start_ticks));
        }
        ledger.save()?;
        Ok(())
    }

    /// The agent has started: its reservation stays until it has grown or aged (or, a
    /// lasting one, until its supervisor is gone).
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
            // Its own line, whoever owns it by now: this process, or the supervisor it was
            // handed to, which failed to start and was reaped before this runs.
            let own = Some(self.own);
            drop_gone(self.ctx, &mut ledger, |e| e.id == self.id);
            ledger.entries.retain(|e| !(e.id == self.id && e.owner() == own));
            let _ = ledger.save();
        }
        // What it held is free again: the next in line may fit now.
        queue::wake(&queue::dir(&self.ctx.dirs.state));
    }
}

/// Why admission said no, with the numbers for the message and the event.
pub enum Refused {
    /// The fleet's memory, counted, would reach the threshold.
    Memory { budget: Budget, starting: u64, own: u64, threshold: u8 },
    /// The fleet has `max` agents or more.
    Cap { agents: usize, max: u32 },
    /// Others wait in line ahead.
    Turn { ahead: usize },
    /// A lease pool is exhausted: the lease's own error.
    Pool(anyhow::Error),
}

impl Refused {
    /// What a waiter waits for.
    pub fn reason(&self) -> Reason {
        match self {
            Refused::Memory { .. } => Reason::Memory,
            Refused::Cap { .. } => Reason::Cap,
            Refused::Turn { .. } => Reason::Turn,
            Refused::Pool(_) => Reason::Pool,
        }
    }

    /// Whether waiting cannot help: this agent's own reserve alone reaches the threshold of
    /// the whole budget, so it would wait for ever.
    pub fn hopeless(&self) -> bool {
        matches!(self, Refused::Memory { budget, own, threshold, .. } if percent(*own, budget.total) >= f64::from(*threshold))
    }

    /// Journals the refusal and makes its exit-75 error; `waited` is how long it waited in
    /// line first, if it did.
    pub fn error(&self, ctx: &Ctx, id: &AgentId, waited: Option<Duration>) -> anyhow::Error {
        let (event, what) = match self {
            Refused::Memory { budget, starting, own, threshold } => {
                let counted = budget.used.saturating_add(*starting).saturating_add(*own);
                let starting = match starting {
                    0 => String::new(),
                    n => format!(", {} expected of agents still starting or reserved", format_iec(*n)),
                };
                (
                    Refusal::Memory {
                        used_percent: budget.percent_1dp(),
                        counted_percent: percent_1dp(counted, budget.total),
                        threshold_percent: *threshold,
                    },
                    format!(
                        "fleet memory would be at {:.1} % of {} ({} used{starting}, {} for this agent), at or above the spawn threshold of {threshold} %; wait for agents to finish, or free memory with `fleetctl relief`",
                        percent_1dp(counted, budget.total),
                        format_iec(budget.total),
                        format_iec(budget.used),
                        format_iec(*own),
                    ),
                )
            }
            Refused::Cap { agents, max } => (
                Refusal::Cap { agents: *agents, max_agents: *max as usize },
                format!(
                    "the fleet has {agents} agents, its maximum of {max} (max_agents); wait for agents to finish, or raise --max-agents"
                ),
            ),
            Refused::Turn { ahead } => (
                Refusal::Queue { waiting: *ahead },
                match waited {
                    None => {
                        format!("{ahead} spawn(s) wait in line (`fleetctl queue`); add --queue to wait behind them")
                    }
                    Some(_) => format!(
                        "{ahead} spawn(s) still wait ahead of it (`fleetctl queue`); give a longer --queue=TIMEOUT"
                    ),
                },
            ),
            Refused::Pool(err) => (Refusal::Pool, format!("{err:#}")),
        };
        // A refusal must be told even when the journal cannot take it (a full log dir).
        let _ = fleet_core::journal::append(&ctx.dirs.journal_path(), id, &Event::SpawnRefused(event));
        let after = match waited {
            Some(w) => format!(" after waiting {} in line", human_duration(w)),
            None => String::new(),
        };
        Fail::error(Exit::Refused, format!("refusing to spawn{after}: {what}"))
    }
}

/// Admits agent `id` with `limits` under `rules`, or refuses with exit 75 (and a
/// `spawn_refused` event) when the fleet's use, with every starting or reserving agent
/// counted at its reserve and this one too, would reach the threshold, or when the fleet has
/// its maximum of agents. With a `line` (`spawn --queue`) it waits its turn instead, first
/// come first served; a spawn without one is refused while others wait.
pub fn admit<'a>(
    ctx: &'a Ctx,
    id: &AgentId,
    limits: &Limits,
    rules: Rules,
    mut line: Option<&mut Line>,
) -> Result<Admitted<'a>> {
    // Read before the lock, which every spawn of a burst waits for in turn.
    let me = own_process(ctx)?;
    loop {
        if let Some(line) = line.as_deref_mut() {
            line.check_cancelled()?;
            if line.joined() {
                // The fleet's scope may have been stopped while it waited (exit 69, not an
                // io error from a fleet root that is gone).
                crate::systemd::scope::require(ctx)?;
            }
        }
        // A waiter behind others waits without the admission lock until it is the head:
        // only the head and newcomers take it.
        if let Some(line) = line.as_deref_mut() {
            line.wait_for_turn()?;
        }
        let mut ledger = Ledger::lock(&ctx.dirs.admission_path())?;
        // Again under the lock, which `kill` takes to mark a waiter: a waiter marked before
        // this point never decides, and one that decides is found admitted by `kill`.
        if let Some(line) = line.as_deref_mut() {
            line.check_cancelled()?;
        }
        let ahead = match line.as_deref() {
            Some(line) => line.ahead()?,
            None if rules.replaces_run => 0,
            None => queue::line(&queue::dir(&ctx.dirs.state))?.len(),
        };
        let verdict = match ahead {
            0 => decide(ctx, &mut ledger, id, me, limits, rules)?,
            ahead => Err(Refused::Turn { ahead }),
        };
        match (verdict, line.as_deref_mut()) {
            (Ok((budget, own)), _) => {
                let lasting = lasting_reserve(ctx, limits, rules).is_some();
                return Ok(Admitted { ctx, id: id.clone(), budget, lasting, own, armed: true });
            }
            (Err(refused), None) => {
                drop(ledger);
                return Err(refused.error(ctx, id, None));
            }
            (Err(refused), Some(_)) if refused.hopeless() => {
                drop(ledger);
                return Err(refused.error(ctx, id, None));
            }
            (Err(refused), Some(line)) => line.wait(Some(ledger), &refused)?,
        }
    }
}

/// The decision, under the ledger's lock: the budget as measured when admitted and this
/// spawn as its line names it (the line added to the ledger), or why not.
fn decide(
    ctx: &Ctx,
    ledger: &mut Ledger,
    id: &AgentId,
    me: ProcessRef,
    limits: &Limits,
    rules: Rules,
) -> Result<std::result::Result<(Budget, ProcessRef), Refused>> {
    let now = admission::now();
    let before = ledger.entries.len();
    ledger.entries.retain(|e| e.lasting || admission::young(e.at, now, START_WINDOW));
    // A lasting line outlives its spawn, and may outlive its agent by hours: every admission
    // drops those whose owner is gone, far below the threshold too. There it is housekeeping
    // only, so it costs one read of the fleet's `supervisors/` cgroup, not one of /proc per
    // line: a line whose owner pid is listed there is taken as alive (its supervisor, almost
    // always), only the others are asked of /proc. A start line leaves within 10 s anyway.
    // Where a line can change the decision (the agent cap, near the threshold), its owner is
    // checked exactly.
    let listed = match ledger.entries.iter().any(|e| e.lasting) {
        true => Listed::read(&ctx.fleet.supervisors()),
        false => Listed::default(),
    };
    let vouched = |e: &Entry| e.owner().is_some() && listed.lists(e.pid);
    let mut changed = drop_gone(ctx, ledger, |e| e.lasting && !vouched(e));
    changed |= ledger.entries.len() != before;
    if let Some(max) = rules.max_agents {
        let agents = count_agents(ctx, ledger, id, &mut changed)?;
        if agents >= max as usize {
            if changed {
                let _ = ledger.save();
            }
            return Ok(Err(Refused::Cap { agents, max }));
        }
    }
    let budget = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let reserve = lasting_reserve(ctx, limits, rules);
    let own = start_reserve(limits, ctx.agent.start_reserve).max(reserve.unwrap_or(0));
    let counted = |starting: u64| budget.used.saturating_add(starting).saturating_add(own);
    let fits = |starting: u64| percent(counted(starting), budget.total) < f64::from(rules.threshold);
    let mut starting: u64 = ledger.entries.iter().map(|e| e.reserve).sum();
    if !fits(starting) {
        // Only near the threshold is it worth a few reads per starting or reserving agent:
        // whether its owner lives (a reused pid is not its owner; those not vouched for were
        // asked above), and what it already uses, which is in the measured use, so only the
        // rest of its reserve is added.
        changed |= drop_gone(ctx, ledger, |e| !e.lasting || vouched(e));
        let outstanding: Vec<Option<u64>> = ledger.entries.iter().map(|e| outstanding(ctx, e)).collect();
        let mut kept = outstanding.iter();
        ledger.entries.retain(|_| kept.next().is_some_and(Option::is_some));
        starting = outstanding.into_iter().flatten().sum();
    }
    if !fits(starting) {
        if changed || ledger.entries.len() != before {
            let _ = ledger.save();
        }
        return Ok(Err(Refused::Memory { budget, starting, own, threshold: rules.threshold }));
    }
    let entry = Entry {
        at: now,
        reserve: own,
        pid: me.pid,
        start_ticks: Some(me.start_ticks),
        id: id.clone(),
        lasting: reserve.is_some(),
    };
    // Its line alone is appended when nothing else changed (the usual case in a burst).
    if changed || ledger.entries.len() != before {
        ledger.entries.push(entry);
        ledger.save()?;
    } else {
        ledger.append(entry)?;
    }
    Ok(Ok((budget, me)))
}

/// Takes out of `ledger` the entries `checked` picks whose owner is gone: a spawn that died or failed, a supervisor that ended (its agent's run is over, and
/// what it reserved with it). A line of an older fleetctl, which names a pid without its
/// start time, is adopted by its agent's live supervisor when it is lasting, and otherwise
/// by whatever process has its pid (a start reserve, for the rest of its 10 s at most). True
/// when anything changed.
fn drop_gone(ctx: &Ctx, ledger: &mut Ledger, checked: impl Fn(&Entry) -> bool) -> bool {
    ledger.drop_gone(&ctx.proc_root, checked, |e| match e.lasting {
        true => fleet_core::state::AgentRecord::load(&ctx.dirs.state_path(&e.id))
            .ok()
            .flatten()
            .filter(|r| !r.state.is_terminal())
            .and_then(|r| r.supervisor),
        false => ProcessRef::of(&ctx.proc_root, e.pid),
    })
}

/// This spawn, as a ledger entry names its owner.
fn own_process(ctx: &Ctx) -> Result<ProcessRef> {
    ctx.me().context("cannot read this process's start time")
}

/// The reservation an agent with `limits` keeps for as long as it lives: its
/// `--memory-reserve`, else the configured default, at most its own `memory.max`; None: off.
pub fn lasting_reserve(ctx: &Ctx, limits: &Limits, rules: Rules) -> Option<u64> {
    rules.memory_reserve.or(ctx.agent.memory_reserve).map(|r| match limits.memory_max {
        Limit::Bytes(max) => r.min(max),
        Limit::Max => r,
    })
}

/// The fleet's agents for the cap: those whose lock is held (a supervisor, or a spawn at
/// work), and those admitted whose spawn is still making them (their lines' owners checked
/// exactly, noted in `changed` when dropped); `id` itself not counted.
fn count_agents(ctx: &Ctx, ledger: &mut Ledger, id: &AgentId, changed: &mut bool) -> Result<usize> {
    let held = fleet_core::lock::HeldLocks::read(&ctx.proc_root);
    let mut agents: HashSet<AgentId> = match std::fs::read_dir(ctx.dirs.agents_dir()) {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<AgentId>().ok())
            .filter(|a| held.contains(&ctx.dirs.lock_path(a)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", ctx.dirs.agents_dir().display())),
    };
    // A line of an agent not counted yet counts while its owner lives: checked exactly,
    // lasting or starting (the lines of agents whose lock is held, most of them, need not be).
    *changed |= drop_gone(ctx, ledger, |e| !agents.contains(&e.id));
    agents.extend(ledger.entries.iter().map(|e| e.id.clone()));
    agents.remove(id);
    Ok(agents.len())
}

/// What a starting or reserving agent still adds to the measured use: the part of its
/// reserve it does not use yet. `None` when it no longer counts: a starting one has grown
/// past its reserve. (Entries whose owner is gone were dropped before.)
fn outstanding(ctx: &Ctx, entry: &Entry) -> Option<u64> {
    match ctx.fleet.agent(&entry.id).memory_current() {
        Ok(used) if entry.lasting => Some(entry.reserve.saturating_sub(used)),
        Ok(used) => (used < entry.reserve).then(|| entry.reserve - used),
        // No cgroup yet (its spawn is at work), or unreadable: count it whole rather than
        // admit on a guess.
        Err(_) => Some(entry.reserve),
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 100.0 } else { part as f64 * 100.0 / whole as f64 }
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
