//! Every deadline the supervisor keeps, by name, in one place: the poll loop sleeps until
//! the earliest of them ([`Timers::next_deadline`]) and never polls on a timer.

use std::time::Instant;

/// The supervisor's named timers; None is unarmed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Timers {
    /// SIGUSR1 to the main process.
    pub soft_timeout: Option<Instant>,
    /// SIGTERM to every process of the agent, then the kill grace.
    pub hard_timeout: Option<Instant>,
    /// After a SIGTERM to every process (hard timeout, or the supervisor told to stop):
    /// `cgroup.kill`.
    pub kill_grace: Option<Instant>,
    /// After the main process ended: how long the rest of its output may take to arrive.
    pub output_drain: Option<Instant>,
    /// When to start the next run after a failure.
    pub restart_backoff: Option<Instant>,
    /// What waits until `spawn` has returned: opening the log, OOM protection, the move
    /// to `<root>/supervisors`, letting go of setup memory.
    pub housekeeping: Option<Instant>,
    /// cgroup v1: the next reading of the agent's `oom_kill` counter after an OOM
    /// notification (scheduled by [`super::oom_group::Verdicts`]).
    pub oom_check: Option<Instant>,
    /// When the agent's run of memory-pressure triggers becomes a stall.
    pub stall_due: Option<Instant>,
    /// When the pressure counts as eased: no trigger came for two windows.
    pub stall_eased: Option<Instant>,
}

impl Timers {
    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.soft_timeout,
            self.hard_timeout,
            self.kill_grace,
            self.output_drain,
            self.restart_backoff,
            self.housekeeping,
            self.oom_check,
            self.stall_due,
            self.stall_eased,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Disarms the timers of a run, once its main process has ended.
    pub fn end_run(&mut self) {
        self.soft_timeout = None;
        self.hard_timeout = None;
        self.kill_grace = None;
        self.oom_check = None;
        self.stall_due = None;
        self.stall_eased = None;
    }
}

/// Disarms `timer` and returns true if it was due at `now`.
pub fn fired(timer: &mut Option<Instant>, now: Instant) -> bool {
    match timer {
        Some(at) if now >= *at => {
            *timer = None;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_next_deadline_is_the_earliest_armed_timer() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.next_deadline(), None);
        timers.hard_timeout = Some(t0 + Duration::from_secs(9));
        timers.oom_check = Some(t0 + Duration::from_millis(1));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_millis(1)));
        timers.end_run();
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn a_timer_fires_once_and_only_when_due() {
        let t0 = Instant::now();
        let mut timer = Some(t0 + Duration::from_secs(1));
        assert!(!fired(&mut timer, t0));
        assert!(fired(&mut timer, t0 + Duration::from_secs(1)));
        assert!(!fired(&mut timer, t0 + Duration::from_secs(2)));
    }
}
