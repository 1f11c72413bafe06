//! cgroup v1's stand-in for `memory.oom.group`: kill the whole agent when the OOM killer
//! took one of its processes, and only then.
//!
//! The v1 OOM notification reaches every cgroup below the one that ran out, so when the
//! fleet's budget runs out every agent's supervisor hears of it, though the kernel kills
//! one process. It also comes before the kernel has chosen its victim. So each supervisor
//! reads its own cgroup's `oom_kill` counter (v1 counts a kill in the victim's cgroup only)
//! for a while after a notification, and kills the rest of its agent when the counter
//! rises: its agent was the victim, which is also always the case when the agent's own
//! limit ran out (the victim of a cgroup's OOM is chosen inside that cgroup). See
//! `fleet_core::cgroup::OomWatch`.

use fleet_core::cgroup::OomWatch;
use std::{
    os::fd::BorrowedFd,
    time::{Duration, Instant},
};

/// The first wait before reading the counter again: the kernel usually kills its victim
/// microseconds after it notifies.
const FIRST_CHECK: Duration = Duration::from_millis(1);
/// Waits double up to this, so the window costs a few dozen reads.
const MAX_CHECK: Duration = Duration::from_millis(100);
/// How long after the last notification a kill still counts as that OOM's. The kernel
/// chooses under a host-wide lock and prints the OOM report (every task of the cgroup that
/// ran out) before it kills, which a loaded host or a slow console can stretch to seconds.
const WINDOW: Duration = Duration::from_secs(5);

/// A run's OOM notification: the descriptor the driver polls and the counter it reads.
/// What to make of them is [`Verdicts`], which the state machine keeps.
pub struct OomGroup {
    watch: OomWatch,
}

/// The decisions on counter readings, apart from the descriptor they come from: pure, so
/// the supervisor's state machine holds it and its tests step it without a kernel.
#[derive(Debug, Default)]
pub struct Verdicts {
    pending: Option<Pending>,
    /// The cgroup's `oom_kill` as last acted on.
    kills_seen: u64,
}

/// A notification heard, whose victim is not known yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The last notification.
    heard: Instant,
    next_check: Instant,
    wait: Duration,
}

/// What to do about the notifications heard so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing pending, or not known yet: look again at [`Verdicts::next_check`].
    Wait,
    /// The OOM killer took `kills` process(es) of this agent in all: kill the rest.
    KillGroup { kills: u64 },
    /// The window passed and no process of this agent was taken: the memory ran out above
    /// it and the victim was another cgroup's.
    Spared,
}

impl OomGroup {
    pub fn new(watch: OomWatch) -> OomGroup {
        OomGroup { watch }
    }

    /// The notification descriptor, to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.watch.fd()
    }

    /// Called when the descriptor is readable: consumes the notifications; true if there
    /// were any.
    pub fn drain(&self) -> bool {
        self.watch.drain()
    }

    /// The cgroup's `oom_kill` counter now; None when it cannot be read (the run's end
    /// reads it again).
    pub fn kills(&self) -> Option<u64> {
        self.watch.kills().ok()
    }
}

impl Verdicts {
    /// When the counter should be read again, if a notification is pending.
    pub fn next_check(&self) -> Option<Instant> {
        self.pending.map(|p| p.next_check)
    }

    /// The agent's OOM kills as last read.
    pub fn kills_seen(&self) -> u64 {
        self.kills_seen
    }

    /// A notification was heard at `now`: (re)starts the window.
    pub fn heard(&mut self, now: Instant) {
        self.pending = Some(Pending { heard: now, next_check: now, wait: FIRST_CHECK });
    }

    /// The decision on one reading of the counter; an unreadable counter (None) reads as
    /// unchanged.
    pub fn step(&mut self, kills: Option<u64>, now: Instant) -> Decision {
        let Some(p) = self.pending else { return Decision::Wait };
        let kills = kills.unwrap_or(self.kills_seen);
        if kills > self.kills_seen {
            self.kills_seen = kills;
            self.pending = None;
            return Decision::KillGroup { kills };
        }
        if now.duration_since(p.heard) < WINDOW {
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

    /// Steps through the window reading `kills` each time; returns the decision and when.
    fn run_window(v: &mut Verdicts, kills: impl Fn(Instant) -> u64) -> (Decision, Instant, u32) {
        let mut reads = 0;
        loop {
            let now = v.pending.map(|p| p.next_check).expect("pending");
            reads += 1;
            match v.step(Some(kills(now)), now) {
                Decision::Wait => {}
                d => return (d, now, reads),
            }
        }
    }

    #[test]
    fn an_oom_above_with_the_victim_elsewhere_spares_the_agent_after_the_window() {
        let t0 = Instant::now();
        let mut v = Verdicts::default();
        v.heard(t0);
        let (d, at, reads) = run_window(&mut v, |_| 0);
        assert_eq!(d, Decision::Spared);
        assert!(at.duration_since(t0) >= WINDOW);
        // 1, 2, 4 ... 64 ms, then every 100 ms.
        assert!(reads < 60, "{reads} reads");
        assert!(v.pending.is_none());
        // Nothing heard, nothing decided.
        assert_eq!(v.step(Some(5), at), Decision::Wait);
    }

    #[test]
    fn a_kill_late_in_the_window_still_kills_the_group() {
        let t0 = Instant::now();
        let mut v = Verdicts::default();
        v.heard(t0);
        let late = t0 + Duration::from_secs(3);
        let (d, at, _) = run_window(&mut v, |now| u64::from(now >= late));
        assert_eq!(d, Decision::KillGroup { kills: 1 });
        assert!(at >= late && at < late + MAX_CHECK + Duration::from_millis(1));
    }

    #[test]
    fn each_notification_acts_only_on_a_further_kill() {
        let t0 = Instant::now();
        let mut v = Verdicts::default();
        v.heard(t0);
        assert_eq!(v.step(Some(1), t0), Decision::KillGroup { kills: 1 });
        v.heard(t0);
        assert_eq!(run_window(&mut v, |_| 1).0, Decision::Spared);
        v.heard(t0);
        assert_eq!(v.step(Some(3), t0), Decision::KillGroup { kills: 3 });
    }

    #[test]
    fn a_new_notification_restarts_the_window() {
        let t0 = Instant::now();
        let mut v = Verdicts::default();
        v.heard(t0);
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(v.step(Some(0), t1), Decision::Wait);
        v.heard(t1);
        let (d, at, _) = run_window(&mut v, |_| 0);
        assert_eq!(d, Decision::Spared);
        assert!(at.duration_since(t1) >= WINDOW);
    }
}
