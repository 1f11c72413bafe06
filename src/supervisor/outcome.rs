//! Deciding how a run ended and whether to start it again: pure functions over what the
//! supervisor observed, so every rule is unit-tested without a kernel.

use crate::agent::plan::MAX_BACKOFF;
use fleet_core::{
    size::Limit,
    state::{AgentState, ExitInfo, KillRequest},
};
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// What the supervisor saw of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    /// How the main process ended.
    pub exit: ExitInfo,
    /// Who asked for the kill, if anyone (`kill`, relief, the watcher).
    pub kill_request: Option<KillRequest>,
    /// The supervisor itself was told to stop (SIGTERM with no request on file).
    pub stop_signal: bool,
    /// The hard timeout fired.
    pub hard_timeout: bool,
    /// OOM kills in the cgroup during this run.
    pub oom_kills: u64,
    /// The run's memory limit, for the cause.
    pub memory_max: Limit,
    /// Whether the run's usage reached its own limit ([`own_limit_reached`]). An OOM kill
    /// without it came from above: the fleet's budget or the host's memory.
    pub own_limit_hit: bool,
    /// The supervisor killed the run for stalling on memory (`--on-stall kill`): what the
    /// stall was, in words.
    pub stall_kill: Option<String>,
}

/// The verdict on a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The state to record.
    pub state: AgentState,
    /// Why, in words.
    pub cause: String,
    /// Who killed it, if someone did.
    pub killed_by: Option<String>,
}

/// Describes an exit the way a shell user thinks of it.
pub fn describe_exit(exit: &ExitInfo) -> String {
    match (exit.code, exit.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => {
            let name =
                nix::sys::signal::Signal::try_from(s).map(|s| s.as_str().to_string()).unwrap_or_else(|_| s.to_string());
            format!("killed by signal {s} ({name})")
        }
        _ => "ended".into(),
    }
}

/// How close to its limit a cgroup's peak must come to count as having reached it: the
/// kernel charges in batches of at most 64 pages (256 KiB).
const AT_LIMIT_SLACK: u64 = 1 << 20;

/// Whether a run reached its own memory limit: the kernel counted it (`max_events`: v2's
/// `max`, v1's failcnt, which v1 kernels no longer keep since 6.x), or its `peak` came
/// within [`AT_LIMIT_SLACK`] of `limit`. Nothing readable says nothing either way: the own
/// limit is blamed, as it always was.
pub fn own_limit_reached(max_events: Option<u64>, peak: Option<u64>, limit: Limit) -> bool {
    if max_events.is_none() && peak.is_none() {
        return true;
    }
    let counted = max_events.is_some_and(|n| n > 0);
    let peaked = match (peak, limit) {
        (Some(peak), Limit::Bytes(limit)) => peak + AT_LIMIT_SLACK >= limit,
        _ => false,
    };
    counted || peaked
}

/// Classifies a run. Order matters: an operator's kill explains a SIGKILL better than the
/// OOM counter does, and a timeout explains it better than the exit code.
pub fn classify(f: &RunFacts) -> Verdict {
    if let Some(req) = &f.kill_request {
        let cause = match &req.detail {
            Some(d) => format!("killed by {} ({d})", req.by),
            None => format!("killed by {}", req.by),
        };
        return Verdict { state: AgentState::Killed, cause, killed_by: Some(req.by.clone()) };
    }
    if f.stop_signal {
        return Verdict {
            state: AgentState::Killed,
            cause: "killed: its supervisor was told to stop (SIGTERM)".into(),
            killed_by: Some("supervisor-signal".into()),
        };
    }
    if f.hard_timeout {
        return Verdict {
            state: AgentState::TimedOut,
            cause: format!("hard timeout: {}", describe_exit(&f.exit)),
            killed_by: Some("timeout".into()),
        };
    }
    if let Some(stall) = &f.stall_kill {
        return Verdict {
            state: AgentState::Stalled,
            cause: format!("stalled on memory ({stall}): killed, as --on-stall kill asked"),
            killed_by: Some("stall".into()),
        };
    }
    if f.oom_kills > 0 {
        let cause = if f.own_limit_hit {
            format!("OOM-killed at its {} memory limit ({} kill(s))", f.memory_max, f.oom_kills)
        } else {
            format!(
                "OOM-killed below its own {} memory limit: the fleet's budget or the host ran out ({} kill(s))",
                f.memory_max, f.oom_kills
            )
        };
        return Verdict { state: AgentState::OomKilled, cause, killed_by: None };
    }
    if f.exit.code == Some(0) {
        return Verdict { state: AgentState::Exited, cause: describe_exit(&f.exit), killed_by: None };
    }
    Verdict { state: AgentState::Failed, cause: describe_exit(&f.exit), killed_by: None }
}

/// Whether a verdict may lead to a restart under `on-failure`: failures, OOM kills and
/// stall kills may; an operator's, relief's or a timeout's kill never does.
pub fn restartable(state: AgentState) -> bool {
    matches!(state, AgentState::Failed | AgentState::OomKilled | AgentState::Stalled)
}

/// Exponential backoff with a crash-loop breaker.
#[derive(Debug)]
pub struct Breaker {
    initial: Duration,
    threshold: u32,
    window: Duration,
    failures: VecDeque<Instant>,
    consecutive: u32,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Restart after this delay.
    RestartAfter(Duration),
    /// Too many failures in the window: stop.
    CrashLoop,
}

impl Breaker {
    /// A breaker that trips at `threshold` failures within `window`.
    pub fn new(initial: Duration, threshold: u32, window: Duration) -> Breaker {
        Breaker { initial, threshold, window, failures: VecDeque::new(), consecutive: 0 }
    }

    /// Records a failure of a run that lasted `ran`, ending at `now`.
    pub fn on_failure(&mut self, now: Instant, ran: Duration) -> Next {
        // A run that stayed up for a whole window was healthy: start the backoff over.
        if ran >= self.window {
            self.consecutive = 0;
        }
        self.consecutive += 1;
        self.failures.push_back(now);
        while self.failures.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            self.failures.pop_front();
        }
        if self.failures.len() as u32 >= self.threshold {
            return Next::CrashLoop;
        }
        let factor = 2u32.saturating_pow(self.consecutive.saturating_sub(1).min(20));
        Next::RestartAfter(self.initial.saturating_mul(factor).min(MAX_BACKOFF))
    }

    /// Failures inside the window.
    pub fn recent_failures(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn facts(code: Option<i32>, signal: Option<i32>) -> RunFacts {
        RunFacts {
            exit: ExitInfo { code, signal },
            kill_request: None,
            stop_signal: false,
            hard_timeout: false,
            oom_kills: 0,
            memory_max: Limit::Bytes(64 << 20),
            own_limit_hit: true,
            stall_kill: None,
        }
    }

    #[test]
    fn a_stall_kill_is_a_restartable_stalled_end_unless_someone_else_killed() {
        let stalled = RunFacts { stall_kill: Some("full above 50 % for 30s".into()), ..facts(None, Some(9)) };
        let v = classify(&stalled);
        assert_eq!((v.state, v.killed_by.as_deref()), (AgentState::Stalled, Some("stall")));
        assert!(v.cause.contains("stalled on memory (full above 50 % for 30s)"), "{}", v.cause);
        assert!(restartable(v.state));
        let req = KillRequest { by: "user".into(), detail: None, at: SystemTime::now(), killer: None };
        assert_eq!(classify(&RunFacts { kill_request: Some(req), ..stalled }).state, AgentState::Killed);
    }

    #[test]
    fn classifies_in_order_of_explanation() {
        assert_eq!(classify(&facts(Some(0), None)).state, AgentState::Exited);
        assert_eq!(classify(&facts(Some(3), None)).cause, "exited with code 3");
        assert_eq!(classify(&facts(None, Some(11))).cause, "killed by signal 11 (SIGSEGV)");
        let oom = RunFacts { oom_kills: 1, ..facts(None, Some(9)) };
        let v = classify(&oom);
        assert_eq!(v.state, AgentState::OomKilled);
        assert!(v.cause.contains("at its 64.0 MiB"), "{}", v.cause);
        let from_above = classify(&RunFacts { own_limit_hit: false, ..oom.clone() });
        assert_eq!(from_above.state, AgentState::OomKilled);
        assert!(from_above.cause.contains("below its own 64.0 MiB"), "{}", from_above.cause);
        let timed = RunFacts { hard_timeout: true, ..oom.clone() };
        assert_eq!(classify(&timed).state, AgentState::TimedOut);
        let req = KillRequest { by: "user".into(), detail: None, at: SystemTime::now(), killer: None };
        let killed = RunFacts { kill_request: Some(req), ..timed };
        assert_eq!(
            classify(&killed),
            Verdict { state: AgentState::Killed, cause: "killed by user".into(), killed_by: Some("user".into()) }
        );
    }

    #[test]
    fn an_oom_is_the_agents_own_when_counted_or_at_its_peak() {
        let limit = Limit::Bytes(64 << 20);
        assert!(own_limit_reached(Some(3), Some(10 << 20), limit), "counted by the kernel");
        assert!(own_limit_reached(Some(0), Some(64 << 20), limit), "v1: no failcnt, peak at the limit");
        assert!(!own_limit_reached(Some(0), Some(20 << 20), limit), "killed for the fleet's budget");
        assert!(!own_limit_reached(Some(0), None, limit), "v2 without memory.peak: the counter decides");
        assert!(!own_limit_reached(Some(0), Some(20 << 20), Limit::Max), "no limit of its own");
        assert!(own_limit_reached(None, None, limit), "nothing readable: as before");
    }

    #[test]
    fn only_failures_restart() {
        assert!(restartable(AgentState::Failed));
        assert!(restartable(AgentState::OomKilled));
        for s in [AgentState::Exited, AgentState::Killed, AgentState::TimedOut] {
            assert!(!restartable(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_the_breaker_trips() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(1), 5, Duration::from_secs(600));
        let short = Duration::from_millis(10);
        let delays: Vec<Next> = (0..4).map(|i| b.on_failure(t0 + Duration::from_secs(i), short)).collect();
        assert_eq!(delays, [1, 2, 4, 8].map(|s| Next::RestartAfter(Duration::from_secs(s))).to_vec());
        assert_eq!(b.on_failure(t0 + Duration::from_secs(5), short), Next::CrashLoop);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten_and_healthy_runs_reset_backoff() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(1), 3, Duration::from_secs(60));
        let short = Duration::from_millis(10);
        b.on_failure(t0, short);
        b.on_failure(t0 + Duration::from_secs(1), short);
        // Long after: the old failures fall out of the window, and a long run resets backoff.
        let next = b.on_failure(t0 + Duration::from_secs(200), Duration::from_secs(120));
        assert_eq!(next, Next::RestartAfter(Duration::from_secs(1)));
        assert_eq!(b.recent_failures(), 1);
    }

    #[test]
    fn backoff_is_capped() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(1), 100, Duration::from_secs(600));
        let mut last = Next::CrashLoop;
        for i in 0..20 {
            last = b.on_failure(t0 + Duration::from_millis(i), Duration::ZERO);
        }
        assert_eq!(last, Next::RestartAfter(MAX_BACKOFF));
    }
}
