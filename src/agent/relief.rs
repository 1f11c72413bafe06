//! Choosing relief's victims: a pure function over measured agents, so "the fewest kills
//! that reach the target" and "protected agents are never chosen" are unit-tested rules.

use fleet_cli::{Protected, ReliefOrder};
use serde::Serialize;
use std::time::SystemTime;

/// An agent relief may consider, as measured.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its id.
    pub id: String,
    /// Memory it holds that killing it would free (usage minus reclaimable cache).
    pub bytes: u64,
    /// When its current run started.
    pub started_at: SystemTime,
    /// Spawned with --protect, or named with relief's --protect.
    pub protected: bool,
    /// How much it grew over the watcher's recent window (0 when unknown or within noise).
    pub growth: u64,
    /// Its main process and the signal it asked for before a kill (`spawn --save-signal`).
    pub save: Option<(i32, String)>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The victim.
    pub id: String,
    /// Its memory.
    pub bytes: u64,
    /// Freed by this and the earlier steps.
    pub freed_so_far: u64,
    /// Fleet use after this step, projected.
    pub projected_used: u64,
}

/// A plan to bring `used` down to `target` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The victims in order.
    pub steps: Vec<Step>,
    /// Whether the steps reach the target.
    pub reaches_target: bool,
    /// Agents spared because they are protected.
    pub protected: Vec<String>,
}

/// Plans the kills. With `Largest`, taking the biggest agents first gives the fewest kills
/// that free enough: no other choice of k agents frees more than the k largest. `Growth`
/// takes the agents that grew first and falls back to the largest among the rest, so with
/// no runaway it is `Largest`. `LeastWork` is [`least_work`].
pub fn plan(mut candidates: Vec<Candidate>, used: u64, target: u64, order: ReliefOrder) -> Plan {
    let protected: Vec<String> = candidates.iter().filter(|c| c.protected).map(|c| c.id.clone()).collect();
    candidates.retain(|c| !c.protected);
    if order == ReliefOrder::LeastWork {
        candidates = least_work(candidates, used.saturating_sub(target.saturating_sub(1)), SystemTime::now());
    }
    match order {
        ReliefOrder::Largest => candidates.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.id.cmp(&b.id))),
        ReliefOrder::Newest => candidates.sort_by_key(|c| std::cmp::Reverse(c.started_at)),
        ReliefOrder::Oldest => candidates.sort_by_key(|c| c.started_at),
        ReliefOrder::Growth => candidates
            .sort_by(|a, b| b.growth.cmp(&a.growth).then_with(|| b.bytes.cmp(&a.bytes)).then_with(|| a.id.cmp(&b.id))),
        // Already in its order.
        ReliefOrder::LeastWork => {}
    }
    let mut steps = Vec::new();
    let mut freed = 0u64;
    for c in candidates {
        if used.saturating_sub(freed) < target {
            break;
        }
        freed += c.bytes;
        steps.push(Step { id: c.id, bytes: c.bytes, freed_so_far: freed, projected_used: used.saturating_sub(freed) });
    }
    Plan { reaches_target: used.saturating_sub(freed) < target, steps, protected }
}

/// The work a kill loses: how long the agent's run has gone on, in seconds, at least one
/// (a run that has just started still loses its start-up).
fn work_lost(c: &Candidate, now: SystemTime) -> u64 {
    now.duration_since(c.started_at).map_or(0, |d| d.as_secs()).max(1)
}

/// `candidates` in the order that frees `need` bytes losing the least run time: a greedy
/// cover by memory freed per second of run time lost (the classic approximation of this
/// knapsack), except that where one agent alone covers what is still needed for no more run
/// time than the greedy would lose doing it, that one is next, so the last kill is never a
/// string of small agents where one short run would do. The rest follow by the same ratio
/// (the plan stops at the target). `now` is when run time is counted to.
pub fn least_work(mut candidates: Vec<Candidate>, need: u64, now: SystemTime) -> Vec<Candidate> {
    // Bytes per second lost, compared without division: a/x > b/y <=> a*y > b*x.
    candidates.sort_by(|a, b| {
        let (wa, wb) = (u128::from(work_lost(a, now)), u128::from(work_lost(b, now)));
        (u128::from(b.bytes) * wa).cmp(&(u128::from(a.bytes) * wb)).then_with(|| a.id.cmp(&b.id))
    });
    let mut ordered = Vec::with_capacity(candidates.len());
    let mut still = need;
    while still > 0 && !candidates.is_empty() {
        let cover = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.bytes >= still)
            .min_by_key(|(_, c)| (work_lost(c, now), std::cmp::Reverse(c.bytes)))
            .map(|(i, c)| (i, work_lost(c, now)));
        let take = match cover {
            Some((i, lost)) if lost <= greedy_cost(&candidates, still, now) => i,
            _ => 0,
        };
        let c = candidates.remove(take);
        still = still.saturating_sub(c.bytes);
        ordered.push(c);
    }
    ordered.extend(candidates);
    ordered
}

/// The run time the ratio order loses covering `need` from `sorted` (taken in order).
fn greedy_cost(sorted: &[Candidate], need: u64, now: SystemTime) -> u64 {
    let (mut freed, mut lost) = (0u64, 0u64);
    for c in sorted {
        if freed >= need {
            break;
        }
        freed += c.bytes;
        lost += work_lost(c, now);
    }
    lost
}

#[cfg(test)]
#[path = "relief_tests.rs"]
mod tests;

/// Who is relieving memory, and how.
#[derive(Debug, Clone)]
pub struct Relief {
    /// Stop below this percentage of the budget.
    pub target_percent: u8,
    /// Victim order.
    pub order: ReliefOrder,
    /// `relief` or `watch`: recorded as the killer.
    pub by: String,
    /// SIGTERM-to-kill grace; zero kills at once.
    pub grace: std::time::Duration,
    /// How long a victim that asked for a signal before its kill has to save its state.
    pub save_grace: std::time::Duration,
    /// Each agent's growth over a recent window, by id, for [`ReliefOrder::Growth`]: the
    /// watcher's samples (`sample::LightSampler::growth`); empty for one-shot relief.
    pub growth: std::collections::HashMap<String, u64>,
}

/// Growth below this share of the budget (1/100) is noise, not a runaway: page cache comes
/// and goes, and an allocator returns and takes memory back. Such agents rank by size.
const GROWTH_NOISE_DIVISOR: u64 = 100;

/// One kill relief made.
#[derive(Debug, Clone)]
pub struct Kill {
    /// The victim.
    pub id: fleet_core::id::AgentId,
    /// What it held.
    pub bytes: u64,
    /// The budget just before.
    pub before: fleet_core::meminfo::Budget,
    /// The budget once its cgroup was empty.
    pub after: fleet_core::meminfo::Budget,
}

/// How a relief ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Below the target after this many kills.
    Reached {
        /// Kills made.
        kills: usize,
        /// The budget at the end.
        budget: fleet_core::meminfo::Budget,
    },
    /// The target cannot be reached; the message says why.
    Stuck {
        /// Why.
        message: String,
    },
}

/// Whether `--protect` (an id or a label selector) spares the agent of `record`.
fn protects(protected: &Protected, record: &fleet_core::state::AgentRecord) -> bool {
    match protected {
        Protected::Id(id) => *id == record.id,
        Protected::Selector(selector) => selector.matches(&record.labels),
    }
}

/// The budget and the candidates measured under it.
pub struct Measured(fleet_core::meminfo::Budget, Vec<Candidate>);

impl Measured {
    /// The budget measured.
    pub fn budget(&self) -> &fleet_core::meminfo::Budget {
        &self.0
    }

    /// The plan from this measurement.
    pub fn plan(&self, relief: &Relief) -> Plan {
        let target = self.0.total * u64::from(relief.target_percent) / 100;
        plan(self.1.clone(), self.0.used, target, relief.order)
    }
}

/// The budget and, when the fleet is at or above the target, every live agent as a
/// candidate (none below it: nothing to choose). Reclaimable page cache (memory.stat, the
/// costly read) is sampled only then, where victims must be chosen.
pub fn measure(ctx: &crate::context::Ctx, relief: &Relief, extra_protect: &[Protected]) -> anyhow::Result<Measured> {
    use crate::agent::sample::{self, Detail};
    let budget = fleet_core::meminfo::Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let target = budget.total * u64::from(relief.target_percent) / 100;
    // Read (and unreadable records named) either way, so every run of relief says the same.
    let live = sample::live_views(ctx)?;
    let live =
        if budget.used < target { Vec::new() } else { sample::measured(sample::agents(ctx, live, Detail::Relief)) };
    let candidates = live
        .into_iter()
        .map(|u| Candidate {
            bytes: u.reclaimable_by_kill(),
            started_at: u.view.record.started_at.unwrap_or(u.view.record.created_at),
            protected: u.view.record.protect || extra_protect.iter().any(|p| protects(p, &u.view.record)),
            growth: relief
                .growth
                .get(u.view.record.id.as_str())
                .copied()
                .filter(|g| *g >= budget.total / GROWTH_NOISE_DIVISOR)
                .unwrap_or(0),
            save: u.view.record.pid.zip(u.view.record.save_signal.clone()),
            id: u.view.record.id.to_string(),
        })
        .collect();
    Ok(Measured(budget, candidates))
}

/// Kills the first half of the plan's victims (from `start`, a measurement just made, or a
/// new one) side by side, waits for their cgroups to empty, measures the fleet again and
/// re-plans, until the fleet is below the target or nothing is left to kill. Each kill is a
/// `relief_kill` journal event and is passed to `on_kill`, in the plan's order.
///
/// A kill mostly waits (for the agent's processes to go, for its supervisor to record the
/// end and remove the cgroup), so a hundred kills one after another took over a second;
/// in rounds of half a plan ([`round_size`]) they take a fraction of that, and the plan,
/// the fewest kills that reach the target by the sizes measured, is corrected by a
/// measurement after each round. After a round only what it changed is measured again: the fleet's use
/// (the budget, one read), with the victims gone from the candidates; the other agents
/// keep the sizes measured at the start. Every agent is measured again only when those
/// candidates cannot reach the target (agents may have grown or started since), so "stuck"
/// is always said of a fresh measurement.
pub fn relieve(
    ctx: &crate::context::Ctx,
    relief: &Relief,
    extra_protect: &[Protected],
    start: Option<Measured>,
    mut on_kill: impl FnMut(&Kill),
) -> anyhow::Result<Outcome> {
    let mut kills = 0;
    let Measured(mut before, mut candidates) = match start {
        Some(measured) => measured,
        None => measure(ctx, relief, extra_protect)?,
    };
    let mut fresh = true;
    loop {
        let target = before.total * u64::from(relief.target_percent) / 100;
        if before.used < target {
            return Ok(Outcome::Reached { kills, budget: before });
        }
        let current = plan(candidates.clone(), before.used, target, relief.order);
        if current.steps.is_empty() {
            if fresh {
                return Ok(Outcome::Stuck { message: stuck_message(&current, &before, relief.target_percent, kills) });
            }
            Measured(before, candidates) = measure(ctx, relief, extra_protect)?;
            fresh = true;
            continue;
        }
        let round = &current.steps[..round_size(current.steps.len())];
        let victims: Vec<(&Step, Option<Candidate>)> =
            round.iter().map(|s| (s, candidates.iter().find(|c| c.id == s.id).cloned())).collect();
        candidates.retain(|c| round.iter().all(|s| s.id != c.id));
        let stopped = crate::agent::spread(&victims, KILLS_AT_ONCE, |(step, victim)| {
            kill_one(ctx, relief, &before, step, victim.as_ref())
        });
        let after = fleet_core::meminfo::Budget::measure(&ctx.fleet, &ctx.proc_root)?;
        fresh = false;
        // Kills another operator (or the agent itself) beat us to are not ours to report.
        let mut failed = None;
        let mut killed = Vec::new();
        for ((step, _), result) in victims.iter().zip(stopped) {
            match result {
                Ok(Some(id)) => killed.push((id, step.bytes)),
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        for kill in apportion(killed, &before, &after) {
            kills += 1;
            journal_kill(ctx, relief, &kill);
            on_kill(&kill);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        before = after;
    }
}

/// How many of a plan of `steps` kills one round makes: half, rounded up. A plan's sizes are
/// what each agent's cgroup holds, and a kill frees more (the agent's supervisor, the
/// kernel's memory for its cgroups): killing the whole plan at once killed 120 agents where
/// one at a time, measuring between, needed 103. Half a plan never reaches past what the
/// one-at-a-time loop would kill unless the sizes were off by half, the next round's plan
/// starts from a fresh measurement of the fleet's use, and the last kills are made one at a
/// time as before; a hundred kills take about eight rounds instead of a hundred.
fn round_size(steps: usize) -> usize {
    steps.div_ceil(2)
}

/// How many of a round's victims relief stops side by side: a stop mostly waits, for the
/// kernel and for the victim's supervisor.
const KILLS_AT_ONCE: crate::agent::Spread = crate::agent::Spread { workers: 16, batch: 1, inline_below: 2 };

/// Stops one planned victim (after its save signal and grace, if it asked for them);
/// `Some(id)` if this kill ended it, `None` if it had ended already.
fn kill_one(
    ctx: &crate::context::Ctx,
    relief: &Relief,
    before: &fleet_core::meminfo::Budget,
    step: &Step,
    victim: Option<&Candidate>,
) -> anyhow::Result<Option<fleet_core::id::AgentId>> {
    use crate::agent::stop::{StopRequest, Stopped, stop_agent};
    let id: fleet_core::id::AgentId = step.id.parse().map_err(anyhow::Error::msg)?;
    if let Some(victim) = victim {
        let _ = warn_before_kill(victim, &ctx.fleet.agent(&id), relief.save_grace, before);
    }
    let req = StopRequest {
        by: relief.by.clone(),
        detail: Some(format!("fleet at {:.1} %, target {} %", before.percent(), relief.target_percent)),
        grace: relief.grace,
        force: relief.grace.is_zero(),
    };
    let killed = matches!(stop_agent(ctx, &id, &req)?, Some(Stopped::Killed { .. }));
    Ok(killed.then_some(id))
}

/// The kills of one round, each with the fleet's use before and after it: the round's
/// measured drop (from `before` to `after`) shared out by what each victim held, in plan
/// order, so the kills add up to what was measured and the last one ends at `after`.
fn apportion(
    killed: Vec<(fleet_core::id::AgentId, u64)>,
    before: &fleet_core::meminfo::Budget,
    after: &fleet_core::meminfo::Budget,
) -> Vec<Kill> {
    let freed = before.used.saturating_sub(after.used);
    let held: u128 = killed.iter().map(|(_, bytes)| u128::from(*bytes)).sum();
    let last = killed.len().saturating_sub(1);
    let mut at = *before;
    let mut shared = 0u64;
    killed
        .into_iter()
        .enumerate()
        .map(|(i, (id, bytes))| {
            let share = match i == last {
                true => freed - shared,
                false if held == 0 => 0,
                false => (u128::from(freed) * u128::from(bytes) / held) as u64,
            };
            shared += share;
            let next = match i == last {
                true => *after,
                false => fleet_core::meminfo::Budget { used: at.used.saturating_sub(share), ..*after },
            };
            let kill = Kill { id, bytes, before: at, after: next };
            at = next;
            kill
        })
        .collect()
}

/// Journals one kill as a `relief_kill` event. A full log disk must not stop relief half-way:
/// the kill is done, and the next may be needed.
fn journal_kill(ctx: &crate::context::Ctx, relief: &Relief, kill: &Kill) {
    let event = fleet_core::event::Event::ReliefKill {
        by: relief.by.clone(),
        used_percent: kill.before.percent_1dp(),
        target_percent: relief.target_percent,
        agent_bytes: kill.bytes,
        freed_bytes: kill.before.used.saturating_sub(kill.after.used),
        used_after_percent: kill.after.percent_1dp(),
    };
    if let Err(e) = fleet_core::journal::append(&ctx.dirs.journal_path(), &kill.id, &event) {
        eprintln!("fleetctl: {}: killed, but not in the event journal: {e:#}", kill.id);
    }
}

/// While the fleet's use is below this share of its budget, a victim that asked for a
/// signal before its kill gets it and its save grace: the rest of the budget is room for
/// what it does meanwhile (on pure cgroup v2 the fleet root's `memory.high`, which the
/// guard's alarm sets at the kill threshold, throttles the fleet's growth toward it).
/// Above it the kill comes at once.
pub const SAVE_HEADROOM_PERCENT: f64 = 98.0;

/// Sends `victim` the signal it asked for before a kill and waits, up to `grace`, for its
/// cgroup to empty (an agent that saved its state may exit by itself), if the fleet has the
/// headroom ([`SAVE_HEADROOM_PERCENT`]). Returns whether it signalled.
fn warn_before_kill(
    victim: &Candidate,
    cgroup: &fleet_core::cgroup::Cgroup,
    grace: std::time::Duration,
    budget: &fleet_core::meminfo::Budget,
) -> anyhow::Result<bool> {
    use std::str::FromStr;
    let Some((pid, name)) = &victim.save else { return Ok(false) };
    if grace.is_zero() || budget.percent() >= SAVE_HEADROOM_PERCENT {
        return Ok(false);
    }
    let Ok(signal) = nix::sys::signal::Signal::from_str(name) else { return Ok(false) };
    // The pid is the record's: signal it only while it is still in the agent's cgroup, so a
    // recycled pid elsewhere is never hit.
    if !cgroup.procs().unwrap_or_default().contains(pid) {
        return Ok(false);
    }
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal).is_err() {
        return Ok(false);
    }
    cgroup.wait_empty(grace)?;
    Ok(true)
}

/// Why a plan cannot reach its target, in one line.
pub fn stuck_message(p: &Plan, budget: &fleet_core::meminfo::Budget, target: u8, kills: usize) -> String {
    let why = if p.protected.is_empty() {
        "no agents are left to kill".to_string()
    } else {
        format!("only protected agents are left ({})", p.protected.join(", "))
    };
    let projected = p.steps.last().map(|s| s.projected_used).unwrap_or(budget.used);
    format!(
        "cannot reach {target} %: fleet at {:.1} % after {kills} kill(s), {:.1} % at best; {why}",
        budget.percent(),
        projected as f64 * 100.0 / budget.total.max(1) as f64
    )
}
