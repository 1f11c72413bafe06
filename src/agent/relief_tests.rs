//! Relief's planning rules, from made-up fleets: the fewest kills, the protected spared, each order.

use super::*;
use std::time::Duration;

fn c(id: &str, mib: u64, age_s: u64, protected: bool) -> Candidate {
    Candidate {
        id: id.into(),
        bytes: mib << 20,
        started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age_s),
        protected,
        growth: 0,
        save: None,
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
            save: None,
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
    let grown = |id, mib, grew_mib: u64, protected| Candidate { growth: grew_mib << 20, ..c(id, mib, 10, protected) };
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

fn budget(used_mib: u64) -> fleet_core::meminfo::Budget {
    fleet_core::meminfo::Budget {
        total: 1000 << 20,
        used: used_mib << 20,
        source: fleet_core::meminfo::BudgetSource::FleetRoot,
        swap_total: 0,
        swap_used: 0,
    }
}

#[test]
fn kills_made_together_share_the_measured_drop_by_size_and_end_where_it_was_measured() {
    let id = |s: &str| s.parse::<fleet_core::id::AgentId>().unwrap();
    // 60 and 30 MiB killed together; the fleet went from 500 to 412 MiB (88 freed).
    let kills = apportion(vec![(id("a"), 60 << 20), (id("b"), 30 << 20)], &budget(500), &budget(412));
    let names: Vec<&str> = kills.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(names, ["a", "b"], "in the plan's order");
    let freed: Vec<u64> = kills.iter().map(|k| k.before.used - k.after.used).collect();
    assert_eq!(freed.iter().sum::<u64>(), 88 << 20, "the shares add up to the measured drop");
    assert!(freed[0] > freed[1], "the larger victim freed more: {freed:?}");
    assert_eq!(kills[0].before.used, 500 << 20);
    assert_eq!(kills[0].after.used, kills[1].before.used, "each kill starts where the one before ended");
    assert_eq!(kills[1].after, budget(412), "the last ends at the measurement");
    // One kill alone is exactly what was measured; a fleet that grew meanwhile freed nothing.
    let one = apportion(vec![(id("a"), 60 << 20)], &budget(500), &budget(441));
    assert_eq!((one[0].before, one[0].after), (budget(500), budget(441)));
    let grew = apportion(vec![(id("a"), 60 << 20), (id("b"), 1)], &budget(500), &budget(520));
    assert!(grew.iter().all(|k| k.before.used.saturating_sub(k.after.used) == 0), "{grew:?}");
    assert!(apportion(Vec::new(), &budget(500), &budget(400)).is_empty());
}

#[test]
fn a_round_kills_half_the_plan_and_the_last_ones_alone() {
    let rounds: Vec<usize> = [1, 2, 3, 103].into_iter().map(round_size).collect();
    assert_eq!(rounds, [1, 1, 2, 52]);
    // Plans that shrink as the rounds go: a hundred kills in a handful of rounds.
    let (mut left, mut count) = (103, 0);
    while left > 0 {
        left -= round_size(left);
        count += 1;
    }
    assert_eq!(count, 7);
}
