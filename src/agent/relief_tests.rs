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
