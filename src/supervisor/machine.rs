//! The supervisor's decisions as a pure state machine: what the kernel and the disk told it
//! comes in as an [`Input`], what to do goes out as [`Action`]s, and no I/O happens here.
//!
//! The driver ([`super::lifecycle`]) turns poll(2) wake-ups into inputs (a signal, output,
//! an OOM notification, a deadline passed) and performs the actions; an action that reads
//! something (a signal count, a counter, the kill request on file, the run's end) answers
//! with the input it read. The stopping decision lives here, fed by the stop signals and the
//! kill request the driver read when this asked for it; nothing here re-reads a file.

mod messages;
mod stall;
#[cfg(test)]
mod tests;

pub use messages::{Action, Input, Policy, RunEnd, Stop, Term};

use super::{
    oom_group::{Decision, Verdicts},
    outcome::{Breaker, Next, RunFacts, Verdict, classify, restartable},
    timers::{Timers, fired},
};
use crate::agent::plan::CRASH_LOOP_WINDOW;
use fleet_core::{
    event::Event,
    state::{AgentState, ExitInfo, KillRequest, RestartPolicy},
};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// How long after the first run starts the supervisor does its housekeeping: long after
/// `spawn` has reported and exited, so on a host with few cores the two never compete for
/// a CPU while `spawn`'s caller waits.
pub const HOUSEKEEPING_DELAY: Duration = Duration::from_millis(50);

/// How long the rest of a run's output may take to arrive after its main process ended.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// Where the agent is in its life.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Before the first run has started.
    Idle,
    /// A run's main process lives.
    Running { pid: i32 },
    /// The main process ended; the rest of its output is arriving, then
    /// [`Action::EndRun`].
    Draining { exit: ExitInfo },
    /// [`Action::EndRun`] was asked; waiting for its answer.
    Ending { exit: ExitInfo },
    /// Waiting to restart after a failure with this verdict.
    BackingOff { facts: RunFacts, verdict: Verdict },
    /// A restart or the check before it is under way.
    Restarting { facts: RunFacts, verdict: Verdict },
    /// The end was recorded.
    Done,
}

/// The supervisor's state: one agent's runs, timers and stopping decision.
pub struct Machine {
    policy: Policy,
    timers: Timers,
    phase: Phase,
    /// Set by a stop signal or a kill request read on the driver's answer: no more restarts.
    stop: Option<Stop>,
    breaker: Breaker,
    /// cgroup v1: what the run's OOM notifications have come to.
    oom: Verdicts,
    /// The run's output pipe has not reached EOF.
    output_open: bool,
    hard_timeout_fired: bool,
    /// When the run started, for how long it ran (the breaker resets after a healthy run).
    run_started: Option<Instant>,
    /// The current run's number (0 for the first).
    restarts: u32,
    /// The run's stall on memory, if one is building or marked.
    stall: stall::StallState,
}

impl Machine {
    /// A machine whose first run is about to start; `now` is when the supervisor began.
    pub fn new(policy: Policy, now: Instant) -> Machine {
        let breaker = Breaker::new(policy.restart_backoff, policy.crash_loop_after, CRASH_LOOP_WINDOW);
        let timers = Timers { housekeeping: Some(now + HOUSEKEEPING_DELAY), ..Timers::default() };
        Machine {
            policy,
            timers,
            phase: Phase::Idle,
            stop: None,
            breaker,
            oom: Verdicts::default(),
            output_open: false,
            hard_timeout_fired: false,
            run_started: None,
            restarts: 0,
            stall: stall::StallState::default(),
        }
    }

    /// When the driver must wake up next, if nothing else happens.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The named timers.
    #[cfg(test)]
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Why the agent is being stopped, if it is.
    pub fn stopping(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    /// The main process to reap, while it lives.
    pub fn main_pid(&self) -> Option<i32> {
        match self.phase {
            Phase::Running { pid } => Some(pid),
            _ => None,
        }
    }

    /// Whether the driver should read the run's output pipe.
    pub fn wants_output(&self) -> bool {
        self.output_open && matches!(self.phase, Phase::Running { .. } | Phase::Draining { .. })
    }

    /// Whether the driver should listen for OOM notifications.
    pub fn wants_oom(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
    }

    pub fn done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// One transition.
    pub fn on(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        // Once the end is recorded, nothing more happens: not even a late housekeeping.
        if self.done() {
            return out;
        }
        match input {
            Input::Started { pid, restarts } => self.started(pid, restarts, now, &mut out),
            Input::StartFailed { error, request } => self.start_failed(error, request, &mut out),
            Input::StopSignal { request } => self.stop_signal(request, &mut out),
            Input::MainExited(exit) => self.main_exited(exit, now, &mut out),
            Input::OutputClosed => {
                self.output_open = false;
                if let Phase::Draining { exit } = self.phase {
                    self.end_run(exit, &mut out);
                }
            }
            Input::OomNotified => {
                if self.wants_oom() {
                    self.oom.heard(now);
                    self.timers.oom_check = self.oom.next_check();
                }
            }
            Input::OomCounter(kills) => self.oom_counter(kills, now, &mut out),
            Input::PressureTriggered => self.pressure_triggered(now),
            Input::Signalled { why, count } => self.signalled(why, count, now, &mut out),
            Input::RunEnded(end) => self.run_ended(end, now, &mut out),
            Input::KillRequestOnFile(request) => self.request_on_file(request, &mut out),
            Input::Tick => {}
        }
        self.timers_due(now, &mut out);
        out
    }

    fn started(&mut self, pid: i32, restarts: u32, now: Instant, out: &mut Vec<Action>) {
        self.phase = Phase::Running { pid };
        self.run_started = Some(now);
        self.restarts = restarts;
        self.output_open = true;
        self.hard_timeout_fired = false;
        self.oom = Verdicts::default();
        self.stall = stall::StallState::default();
        self.timers.soft_timeout = self.policy.soft_timeout.map(|d| now + d);
        self.timers.hard_timeout = self.policy.hard_timeout.map(|d| now + d);
        self.timers.restart_backoff = None;
        let command = self.policy.command.clone();
        out.push(Action::Journal(match restarts {
            0 => Event::Spawn { pid, restarts, command },
            _ => Event::Restart { pid, restarts, command },
        }));
        out.push(Action::SaveRecord);
    }

    fn start_failed(&mut self, error: String, request: Option<KillRequest>, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Restarting { .. }) {
            return;
        }
        out.push(Action::Note(format!("restart failed: {error}")));
        out.push(Action::Journal(Event::RestartFailed { error }));
        out.push(Action::RemoveCgroup);
        if self.stop.is_none()
            && let Some(request) = request
        {
            self.stop = Some(Stop::Requested(request));
        }
        if self.stop.is_some() {
            // Stopped while it tried: the run before it, told who stopped it.
            return self.stopped_between_runs(out);
        }
        // A failed restart keeps the verdict of the run before it.
        if let Phase::Restarting { verdict, .. } = std::mem::replace(&mut self.phase, Phase::Done) {
            self.finish(verdict, out);
        }
    }

    /// With a kill request on file, the requester is doing the killing; otherwise the
    /// supervisor stops the agent itself, gracefully.
    fn stop_signal(&mut self, request: Option<KillRequest>, out: &mut Vec<Action>) {
        if self.stop.is_some() {
            return;
        }
        self.stop = Some(request.map(Stop::Requested).unwrap_or(Stop::Signal));
        match self.phase {
            Phase::Running { .. } if self.stop == Some(Stop::Signal) => out.push(Action::TermAll(Term::ToldToStop)),
            // Waiting to restart: no process to stop, and no restart.
            Phase::BackingOff { .. } => self.stopped_between_runs(out),
            _ => {}
        }
    }

    fn main_exited(&mut self, exit: ExitInfo, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Running { .. }) {
            return;
        }
        self.timers.end_run();
        out.push(Action::KillRest);
        if self.output_open {
            self.phase = Phase::Draining { exit };
            self.timers.output_drain = Some(now + OUTPUT_DRAIN);
        } else {
            self.end_run(exit, out);
        }
    }

    fn end_run(&mut self, exit: ExitInfo, out: &mut Vec<Action>) {
        self.timers.output_drain = None;
        self.phase = Phase::Ending { exit };
        out.push(Action::EndRun { kills_seen: self.oom.kills_seen() });
    }

    fn oom_counter(&mut self, kills: Option<u64>, now: Instant, out: &mut Vec<Action>) {
        if !self.wants_oom() {
            return;
        }
        match self.oom.step(kills, now) {
            Decision::Wait => {}
            // cgroup v1 has no memory.oom.group: finish what the OOM killer started.
            Decision::KillGroup { kills } => {
                out.push(Action::Note(format!(
                    "out of memory: the OOM killer took {kills} process(es) of this agent; killing the rest"
                )));
                out.push(Action::KillAll);
            }
            Decision::Spared => out.push(Action::Note(
                "memory ran out above this agent, and the OOM killer's victim was elsewhere: it runs on".into(),
            )),
        }
        self.timers.oom_check = self.oom.next_check();
    }

    fn signalled(&mut self, why: Term, count: usize, now: Instant, out: &mut Vec<Action>) {
        self.timers.kill_grace = Some(now + self.policy.kill_grace);
        match why {
            Term::HardTimeout => {
                out.push(Action::Note(format!(
                    "hard timeout: sent SIGTERM to {count} process(es); killing in {}",
                    humantime::format_duration(self.policy.kill_grace)
                )));
                out.push(Action::Journal(Event::HardTimeout {
                    signalled: count,
                    grace_ms: self.policy.kill_grace.as_millis() as u64,
                }));
            }
            Term::ToldToStop => {
                out.push(Action::Note(format!("supervisor told to stop: sent SIGTERM to {count} process(es)")))
            }
        }
    }

    fn run_ended(&mut self, end: RunEnd, now: Instant, out: &mut Vec<Action>) {
        let Phase::Ending { exit } = self.phase else { return };
        // A request on file that no signal announced still stops the agent for good, and
        // names who stopped it better than a bare signal does.
        if !matches!(self.stop, Some(Stop::Requested(_)))
            && let Some(request) = end.request
        {
            self.stop = Some(Stop::Requested(request));
        }
        let facts = RunFacts {
            exit,
            kill_request: self.kill_request(),
            stop_signal: self.stop == Some(Stop::Signal),
            hard_timeout: self.hard_timeout_fired,
            oom_kills: end.oom_kills,
            memory_max: self.policy.memory_max,
            own_limit_hit: end.own_limit_hit,
            stall_kill: self.stall.killed_for.take(),
        };
        let mut verdict = classify(&facts);
        let ran = self.run_started.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        out.push(Action::RecordRun { exit, oom_kills: end.oom_kills });
        if verdict.state == AgentState::OomKilled {
            out.push(Action::Journal(Event::OomKill { oom_kills: end.oom_kills, memory_max: self.policy.memory_max }));
        }
        if self.policy.restart == RestartPolicy::OnFailure && restartable(verdict.state) && self.stop.is_none() {
            match self.breaker.on_failure(now, ran) {
                Next::RestartAfter(delay) => {
                    out.push(Action::RecordWaiting { delay, cause: verdict.cause.clone() });
                    out.push(Action::Note(format!(
                        "{}; restarting in {}",
                        verdict.cause,
                        humantime::format_duration(delay)
                    )));
                    out.push(Action::Journal(Event::RestartScheduled {
                        delay_ms: delay.as_millis() as u64,
                        cause: verdict.cause.clone(),
                    }));
                    self.timers.restart_backoff = Some(now + delay);
                    self.phase = Phase::BackingOff { facts, verdict };
                    return;
                }
                Next::CrashLoop => {
                    verdict.cause = format!(
                        "crash loop: {} failures within {}; last {}",
                        self.breaker.recent_failures(),
                        humantime::format_duration(CRASH_LOOP_WINDOW),
                        verdict.cause
                    );
                    verdict.state = AgentState::CrashLoop;
                    out.push(Action::Journal(Event::CrashLoop {
                        failures: self.breaker.recent_failures(),
                        cause: verdict.cause.clone(),
                    }));
                }
            }
        }
        self.finish(verdict, out);
    }

    /// The backoff is over: restart unless a kill request arrived meanwhile.
    fn request_on_file(&mut self, request: Option<KillRequest>, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Restarting { .. }) {
            return;
        }
        if self.stop.is_none()
            && let Some(request) = request
        {
            self.stop = Some(Stop::Requested(request));
        }
        if self.stop.is_some() {
            return self.stopped_between_runs(out);
        }
        out.push(Action::StartRun { restarts: self.restarts + 1 });
    }

    /// Stopped while waiting to restart: the run's verdict, told who stopped it.
    fn stopped_between_runs(&mut self, out: &mut Vec<Action>) {
        let facts = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::BackingOff { facts, .. } | Phase::Restarting { facts, .. } => facts,
            other => {
                self.phase = other;
                return;
            }
        };
        self.timers.restart_backoff = None;
        let facts =
            RunFacts { kill_request: self.kill_request(), stop_signal: self.stop == Some(Stop::Signal), ..facts };
        self.finish(classify(&facts), out);
    }

    fn finish(&mut self, verdict: Verdict, out: &mut Vec<Action>) {
        self.phase = Phase::Done;
        self.timers = Timers::default();
        out.push(Action::Finish(verdict));
    }

    fn timers_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.stall_timers(now, out);
        if fired(&mut self.timers.oom_check, now) {
            out.push(Action::ReadOomCounter);
        }
        if fired(&mut self.timers.housekeeping, now) {
            out.push(Action::Housekeeping);
        }
        if let Phase::Running { pid } = self.phase
            && fired(&mut self.timers.soft_timeout, now)
        {
            out.push(Action::SignalMain { pid, signal: Signal::SIGUSR1 });
            out.push(Action::Note("soft timeout: sent SIGUSR1 to the main process".into()));
            out.push(Action::Journal(Event::SoftTimeout { pid }));
        }
        if fired(&mut self.timers.hard_timeout, now) {
            self.hard_timeout_fired = true;
            out.push(Action::TermAll(Term::HardTimeout));
        }
        if fired(&mut self.timers.kill_grace, now) {
            out.push(Action::Note("grace period over: killing every process of the agent".into()));
            out.push(Action::KillAll);
        }
        if fired(&mut self.timers.output_drain, now)
            && let Phase::Draining { exit } = self.phase
        {
            self.end_run(exit, out);
        }
        if fired(&mut self.timers.restart_backoff, now)
            && let Phase::BackingOff { .. } = self.phase
            && let Phase::BackingOff { facts, verdict } = std::mem::replace(&mut self.phase, Phase::Done)
        {
            self.phase = Phase::Restarting { facts, verdict };
            out.push(Action::ReadKillRequest);
        }
    }

    fn kill_request(&self) -> Option<KillRequest> {
        match &self.stop {
            Some(Stop::Requested(request)) => Some(request.clone()),
            _ => None,
        }
    }
}
