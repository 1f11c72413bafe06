//! cgroup v1's stand-in for `memory.oom.group`: kill the whole agent when the OOM killer
//! took one of its processes, and only then.
//!
//! The v1 OOM notification reaches every cgroup below the one that ran out, so when the
//! fleet's budget runs out every agent's supervisor hears of it, though the kernel kills
//! one process. Each supervisor therefore waits for the episode to settle (`under_oom`
//! back to 0) and acts only if its own cgroup's `oom_kill` rose: its agent was the victim,
//! which is also always the case when the agent's own limit ran out (the victim of a
//! cgroup's OOM is chosen inside that cgroup). See `fleet_core::cgroup::OomWatch`.

use fleet_core::cgroup::{OomControl, OomWatch};
use std::{
    os::fd::BorrowedFd,
    time::{Duration, Instant},
};

/// The first wait before reading `memory.oom_control` again after a notification: the
/// kernel signals its victim microseconds after it notifies.
const FIRST_CHECK: Duration = Duration::from_millis(1);
/// Waits double up to this, so a long stretch of OOMs above the agent costs a few reads.
const MAX_CHECK: Duration = Duration::from_millis(50);
/// How long an episode may stay unsettled before the supervisor decides on what it sees
/// (`under_oom` stays set only while an OOM is handled, or where the OOM killer is off).
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// A run's OOM notification and what the supervisor has made of it so far.
pub struct OomGroup {
    watch: OomWatch,
    verdict: Verdicts,
}

/// The decisions on `memory.oom_control` readings, apart from the descriptor they come from.
#[derive(Debug, Default)]
struct Verdicts {
    pending: Option<Pending>,
    /// The cgroup's `oom_kill` as last acted on.
    kills_seen: u64,
}

/// An episode heard of and not yet settled.
#[derive(Debug, Clone, Copy)]
struct Pending {
    since: Instant,
    next_check: Instant,
    wait: Duration,
}

/// What to do about the notifications heard so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing pending, or not settled yet: look again at [`OomGroup::next_check`].
    Wait,
    /// The OOM killer took `kills` process(es) of this agent: kill the rest.
    KillGroup { kills: u64 },
    /// The memory ran out above the agent and the victim was another cgroup's.
    Spared,
}

impl OomGroup {
    pub fn new(watch: OomWatch) -> OomGroup {
        OomGroup { watch, verdict: Verdicts::default() }
    }

    /// The notification descriptor, to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.watch.fd()
    }

    /// When the supervisor should call [`OomGroup::decide`] again, if an episode is pending.
    pub fn next_check(&self) -> Option<Instant> {
        self.verdict.pending.map(|p| p.next_check)
    }

    /// The agent's OOM kills as counted by the kernel when last acted on.
    pub fn kills_seen(&self) -> u64 {
        self.verdict.kills_seen
    }

    /// Called when the descriptor is readable: consumes the notifications and starts
    /// waiting for the episode to settle.
    pub fn notified(&mut self, now: Instant) {
        if self.watch.drain() {
            self.verdict.heard(now);
        }
    }

    /// Reads `memory.oom_control` if an episode is due for a look, and decides. An
    /// unreadable file counts as settled with no kill: the run's end reads the counter again.
    pub fn decide(&mut self, now: Instant) -> Decision {
        match self.next_check() {
            Some(at) if now >= at => {
                let control = self.watch.control().unwrap_or_default();
                self.verdict.step(control, now)
            }
            _ => Decision::Wait,
        }
    }
}

impl Verdicts {
    fn heard(&mut self, now: Instant) {
        if self.pending.is_none() {
            self.pending = Some(Pending { since: now, next_check: now, wait: FIRST_CHECK });
        }
    }

    /// The decision on one reading of `memory.oom_control`.
    fn step(&mut self, control: OomControl, now: Instant) -> Decision {
        let Some(p) = self.pending else { return Decision::Wait };
        if control.oom_kill > self.kills_seen {
            // The victim is ours: act at once, even while the episode is still being handled.
            self.kills_seen = control.oom_kill;
            self.pending = None;
            return Decision::KillGroup { kills: control.oom_kill };
        }
        if control.under_oom && now.duration_since(p.since) < SETTLE_LIMIT {
            self.pending = Some(Pending { next_check: now + p.wait, wait: (p.wait * 2).min(MAX_CHECK), ..p });
            return Decision::Wait;
        }
        self.pending = None;
        Decision::Spared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(under_oom: bool, oom_kill: u64) -> OomControl {
        OomControl { under_oom, oom_kill }
    }

    #[test]
    fn an_oom_above_with_the_victim_elsewhere_spares_the_agent() {
        let t0 = Instant::now();
        let mut v = Verdicts::default();
        v.heard(t0);
        // Still being handled: look again soon, then less often.
        assert_eq!(v.step(control(true, 0), t0), Decision::Wait);
        assert_eq!(v.pending.map(|p| p.next_check), Some(t0 + FIRST_CHECK));
        let t1 = t0 + FIRST_CHECK;
        assert_eq!(v.step(control(true, 0), t1), Decision::Wait);
        assert_eq!(v.pending.map(|p| p.next_check), Some(t1 + FIRST_CHECK * 2));
        // Settled, and no process of ours was taken.
        assert_eq!(v.step(control(false, 0), t1 + Duration::from_millis(3)), Decision::Spared);
        assert!(v.pending.is_none());
        // Nothing heard, nothing decided.
        assert_eq!(v.step(control(false, 5), t1), Decision::Wait);
    }

    #[test]
    fn our_own_kill_counts_even_before_the_episode_settles() {
        let t0 = Instant::now();
        let mut v = Verdicts::default();
        v.heard(t0);
        assert_eq!(v.step(control(true, 1), t0), Decision::KillGroup { kills: 1 });
        // The next episode acts only on a further kill.
        v.heard(t0);
        assert_eq!(v.step(control(false, 1), t0), Decision::Spared);
        v.heard(t0);
        assert_eq!(v.step(control(false, 3), t0), Decision::KillGroup { kills: 3 });
    }

    #[test]
    fn waits_back_off_and_an_unsettled_episode_ends_in_a_decision() {
        let t0 = Instant::now();
        let mut v = Verdicts::default();
        v.heard(t0);
        let mut now = t0;
        let mut reads = 0;
        while v.step(control(true, 0), now) == Decision::Wait {
            now = v.pending.map(|p| p.next_check).expect("pending while waiting");
            reads += 1;
        }
        assert!(now.duration_since(t0) >= SETTLE_LIMIT);
        // 1, 2, 4, ... 32 ms, then every 50 ms: about a hundred reads in five seconds.
        assert!(reads < 110, "{reads} reads");
    }
}
