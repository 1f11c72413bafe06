//! Choosing relief's victims: a pure function over measured agents, so "the fewest kills
//! that reach the target" and "protected agents are never chosen" are unit-tested rules.

use fleet_cli::ReliefOrder;
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
mod tests {
    use super::*;
    use std::time::Duration;

    fn c(id: &str, mib: u64, age_s: u64, protected: bool) -> Candidate {
        Candidate {
            id: id.into(),
            bytes: mib << 20,
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age_s),
            protected,
            growth: 0,
        }
    }

    fn ids(p: &Plan) -> Vec<&str> {
        p.steps.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn largest_first_takes_the_fewest_and_spares_the_protected() {
        let agents = vec![c("a", 60, 10, false), c("b", 40, 20, false), c("c", 20, 30, false), c("d", 90, 40, true)];
        let p = plan(agents, 300 << 20, 210 << 20, ReliefOrder::Largest);
        assert_eq!(ids(&p), ["a", "b"]);
        assert!(p.reaches_target);
        assert_eq!(p.protected, ["d"]);
        assert_eq!(p.steps[1].freed_so_far, 100 << 20);
        assert_eq!(p.steps[1].projected_used, 200 << 20);
    }

    #[test]
    fn nothing_to_do_below_target() {
        let p = plan(vec![c("a", 60, 10, false)], 100, 200, ReliefOrder::Largest);
        assert!(p.steps.is_empty() && p.reaches_target);
    }

    #[test]
    fn only_protected_left_cannot_reach() {
        let p = plan(vec![c("a", 10, 10, false), c("d", 90, 40, true)], 100 << 20, 50 << 20, ReliefOrder::Largest);
        assert_eq!(ids(&p), ["a"]);
        assert!(!p.reaches_target);
    }

    #[test]
    fn newest_and_oldest_orders() {
        let agents = || vec![c("old", 10, 100, false), c("mid", 10, 50, false), c("new", 10, 1, false)];
        assert_eq!(ids(&plan(agents(), 100, 75, ReliefOrder::Newest)), ["new"]);
        assert_eq!(ids(&plan(agents(), 100 << 20, 75 << 20, ReliefOrder::Oldest)), ["old", "mid", "new"]);
    }

    /// Agents of (id, MiB, minutes run) at `now`.
    fn runs(now: SystemTime, agents: &[(&str, u64, u64)]) -> Vec<Candidate> {
        agents
            .iter()
            .map(|&(id, mib, minutes)| Candidate {
                id: id.into(),
                bytes: mib << 20,
                started_at: now - Duration::from_secs(minutes * 60),
                protected: false,
                growth: 0,
            })
            .collect()
    }

    #[test]
    fn least_work_weighs_memory_freed_against_run_time_lost() {
        let now = SystemTime::now();
        // Need 300 MiB. Largest takes the 2-hour 400 MiB agent (120 min lost); newest takes
        // the three young small ones and still needs more; least work takes the two that
        // free the most per minute lost: 200 MiB for 5 min and 150 MiB for 10 min.
        let fleet = || {
            runs(
                now,
                &[("big-old", 400, 120), ("mid-new", 200, 5), ("mid", 150, 10), ("tiny-new", 10, 1), ("small", 60, 30)],
            )
        };
        let order = |c: Vec<Candidate>| c.into_iter().map(|c| c.id).collect::<Vec<_>>();
        let picked = order(least_work(fleet(), 300 << 20, now));
        assert_eq!(picked[..2], ["mid-new", "mid"]);
        assert_eq!(ids(&plan(fleet(), 1000 << 20, 701 << 20, ReliefOrder::LeastWork)), ["mid-new", "mid"]);
        assert_eq!(ids(&plan(fleet(), 1000 << 20, 701 << 20, ReliefOrder::Largest)), ["big-old"]);
        // One run that covers all that is needed beats the better ratio that falls short:
        // for 50 MiB, x (45 MiB in 1 min) then z costs 6 min; z alone (50 MiB in 5) costs 5.
        let tail = || runs(now, &[("x", 45, 1), ("y", 100, 20), ("z", 50, 5)]);
        assert_eq!(order(least_work(tail(), 50 << 20, now)), ["z", "x", "y"]);
        assert_eq!(order(least_work(tail(), 40 << 20, now)), ["x", "z", "y"]);
        // Nothing needed: every agent keeps its place by the ratio alone.
        assert_eq!(order(least_work(fleet(), 0, now))[0], "mid-new");
    }

    #[test]
    fn growth_takes_the_runaway_first_then_the_largest() {
        let grown =
            |id, mib, grew_mib: u64, protected| Candidate { growth: grew_mib << 20, ..c(id, mib, 10, protected) };
        let agents = || {
            vec![
                grown("steady", 380, 0, false),
                grown("spiker", 150, 150, false),
                grown("small", 20, 0, false),
                grown("kept", 90, 200, true),
            ]
        };
        // The runaway alone reaches the target; largest would have taken the steady agent.
        assert_eq!(ids(&plan(agents(), 640 << 20, 500 << 20, ReliefOrder::Growth)), ["spiker"]);
        assert_eq!(ids(&plan(agents(), 640 << 20, 500 << 20, ReliefOrder::Largest)), ["steady"]);
        // Not enough: then the largest of those that did not grow; the protected grower never.
        let p = plan(agents(), 640 << 20, 200 << 20, ReliefOrder::Growth);
        assert_eq!(ids(&p), ["spiker", "steady"]);
        assert_eq!(p.protected, ["kept"]);
        // Nobody grew: exactly largest.
        let flat = vec![c("a", 10, 1, false), c("b", 30, 2, false), c("c", 20, 3, false)];
        assert_eq!(ids(&plan(flat, 60 << 20, 35 << 20, ReliefOrder::Growth)), ["b"]);
    }
}

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

/// Measures the budget and every live agent, and plans from them. Reclaimable page cache
/// (memory.stat, the costly read) is sampled only when the fleet is at or above the target,
/// where victims must be chosen; below it the plan is empty.
pub fn measure_and_plan(
    ctx: &crate::context::Ctx,
    relief: &Relief,
    extra_protect: &[fleet_core::id::AgentId],
) -> anyhow::Result<(fleet_core::meminfo::Budget, Plan)> {
    let (budget, candidates) = measure(ctx, relief, extra_protect)?;
    let target = budget.total * u64::from(relief.target_percent) / 100;
    Ok((budget, plan(candidates, budget.used, target, relief.order)))
}

/// The budget and, when the fleet is at or above the target, every live agent as a
/// candidate (none below it: nothing to choose).
fn measure(
    ctx: &crate::context::Ctx,
    relief: &Relief,
    extra_protect: &[fleet_core::id::AgentId],
) -> anyhow::Result<(fleet_core::meminfo::Budget, Vec<Candidate>)> {
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
            protected: u.view.record.protect || extra_protect.contains(&u.view.record.id),
            growth: relief
                .growth
                .get(u.view.record.id.as_str())
                .copied()
                .filter(|g| *g >= budget.total / GROWTH_NOISE_DIVISOR)
                .unwrap_or(0),
            id: u.view.record.id.to_string(),
        })
        .collect();
    Ok((budget, candidates))
}

/// Kills the plan's first victim, waits for its cgroup to empty, measures the fleet again
/// and re-plans, until the fleet is below the target or nothing is left to kill. Each kill
/// is a `relief_kill` journal event and is passed to `on_kill`.
///
/// After a kill only what it changed is measured again: the fleet's use (the budget, one
/// read), with the victim gone from the candidates; the other agents keep the sizes measured
/// at the start. Every agent is measured again only when those candidates cannot reach the
/// target (agents may have grown or started since), so "stuck" is always said of a fresh
/// measurement.
pub fn relieve(
    ctx: &crate::context::Ctx,
    relief: &Relief,
    extra_protect: &[fleet_core::id::AgentId],
    mut on_kill: impl FnMut(&Kill),
) -> anyhow::Result<Outcome> {
    use crate::agent::stop::{StopRequest, Stopped, stop_agent};
    let mut kills = 0;
    let (mut before, mut candidates) = measure(ctx, relief, extra_protect)?;
    let mut fresh = true;
    loop {
        let target = before.total * u64::from(relief.target_percent) / 100;
        if before.used < target {
            return Ok(Outcome::Reached { kills, budget: before });
        }
        let current = plan(candidates.clone(), before.used, target, relief.order);
        let Some(step) = current.steps.first() else {
            if fresh {
                return Ok(Outcome::Stuck { message: stuck_message(&current, &before, relief.target_percent, kills) });
            }
            (before, candidates) = measure(ctx, relief, extra_protect)?;
            fresh = true;
            continue;
        };
        let id: fleet_core::id::AgentId = step.id.parse().map_err(anyhow::Error::msg)?;
        candidates.retain(|c| c.id != step.id);
        let req = StopRequest {
            by: relief.by.clone(),
            detail: Some(format!("fleet at {:.1} %, target {} %", before.percent(), relief.target_percent)),
            grace: relief.grace,
            force: relief.grace.is_zero(),
        };
        let killed = matches!(stop_agent(ctx, &id, &req)?, Some(Stopped::Killed { .. }));
        let after = fleet_core::meminfo::Budget::measure(&ctx.fleet, &ctx.proc_root)?;
        fresh = false;
        if !killed {
            // Another operator (or the agent itself) ended it first: not our kill to report.
            // The fleet as it is now, and a new plan.
            before = after;
            continue;
        }
        kills += 1;
        let kill = fleet_core::event::Event::ReliefKill {
            by: relief.by.clone(),
            used_percent: before.percent_1dp(),
            target_percent: relief.target_percent,
            agent_bytes: step.bytes,
            freed_bytes: before.used.saturating_sub(after.used),
            used_after_percent: after.percent_1dp(),
        };
        let journaled = fleet_core::journal::append(&ctx.dirs.journal_path(), &id, &kill);
        if let Err(e) = journaled {
            // A full log disk must not stop relief half-way: the kill is done, and the next
            // may be needed.
            eprintln!("fleetctl: {id}: killed, but not in the event journal: {e:#}");
        }
        on_kill(&Kill { id, bytes: step.bytes, before, after });
        before = after;
    }
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
