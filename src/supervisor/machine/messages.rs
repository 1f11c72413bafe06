//! What goes into the supervisor's state machine and what comes out: the plan's part it
//! needs, the inputs the driver feeds it, and the actions it asks of the driver.

use crate::agent::plan::{StallPlan, SupervisorPlan};
use crate::supervisor::outcome::Verdict;
use fleet_core::{
    event::Event,
    size::Limit,
    state::{ExitInfo, KillRequest, RestartPolicy},
};
use nix::sys::signal::Signal;
use std::time::Duration;

/// What the machine needs of the plan.
#[derive(Debug, Clone)]
pub struct Policy {
    pub soft_timeout: Option<Duration>,
    pub hard_timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub restart: RestartPolicy,
    pub restart_backoff: Duration,
    pub crash_loop_after: u32,
    pub memory_max: Limit,
    /// The agent's command, for the `spawn` and `restart` events.
    pub command: Vec<String>,
    /// What counts as a stall on memory and what it does; None: not watched.
    pub stall: Option<StallPolicy>,
}

/// A stall on memory, as the machine applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct StallPolicy {
    /// The trigger's threshold, percent of the window.
    pub threshold_percent: u8,
    /// How long triggers must keep coming.
    pub after: Duration,
    /// The trigger's window: the kernel fires at most once per window.
    pub window: Duration,
    /// For the main process.
    pub signal: Option<Signal>,
    /// Kill the agent for it.
    pub kill: bool,
}

impl StallPolicy {
    /// The plan's stall as the machine applies it: the kernel's window for it, the signal
    /// by name (the CLI took only names nix knows).
    pub fn of(plan: &StallPlan) -> StallPolicy {
        use std::str::FromStr;
        StallPolicy {
            threshold_percent: plan.threshold_percent,
            after: plan.after,
            window: fleet_core::cgroup::stall_window(plan.after),
            signal: plan.signal.as_deref().and_then(|s| Signal::from_str(s).ok()),
            kill: plan.kill,
        }
    }
}

impl Policy {
    pub fn of(plan: &SupervisorPlan) -> Policy {
        Policy {
            soft_timeout: plan.soft_timeout,
            hard_timeout: plan.hard_timeout,
            kill_grace: plan.kill_grace,
            restart: plan.restart,
            restart_backoff: plan.restart_backoff,
            crash_loop_after: plan.crash_loop_after,
            memory_max: plan.limits.memory_max,
            command: plan.command.clone(),
            stall: plan.stall.as_ref().map(StallPolicy::of),
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Input {
    /// A run started (number `restarts`, 0 for the first) with main process `pid`.
    Started { pid: i32, restarts: u32 },
    /// A restart could not start; `request` is the kill request on file by then (a kill that
    /// came while it tried names who stopped the agent).
    StartFailed { error: String, request: Option<KillRequest> },
    /// The supervisor got SIGTERM, SIGINT or SIGHUP; `request` is the kill request on file
    /// when it arrived (a killer writes it before it signals).
    StopSignal { request: Option<KillRequest> },
    /// The main process was reaped.
    MainExited(ExitInfo),
    /// The output pipe reached EOF: every process that held it is gone or closed it.
    OutputClosed,
    /// cgroup v1: an OOM notification, in this agent's cgroup or above it.
    OomNotified,
    /// The agent's memory-pressure trigger fired: all its tasks waited on memory for more
    /// than the threshold of the last window.
    PressureTriggered,
    /// The agent's `oom_kill` counter, read for [`Action::ReadOomCounter`] (None: unreadable).
    OomCounter(Option<u64>),
    /// [`Action::TermAll`] sent SIGTERM to `count` processes.
    Signalled { why: Term, count: usize },
    /// The run's leftovers are gone and its counters read ([`Action::EndRun`]).
    RunEnded(RunEnd),
    /// The kill request on file, read for [`Action::ReadKillRequest`].
    KillRequestOnFile(Option<KillRequest>),
    /// Time passed: the driver feeds it after every wake-up.
    Tick,
}

/// What the driver found when it cleaned up after a run.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// OOM kills in the cgroup during the run.
    pub oom_kills: u64,
    /// Whether the run reached its own memory limit.
    pub own_limit_hit: bool,
    /// The kill request on file, if any.
    pub request: Option<KillRequest>,
}

/// Why every process of the agent gets SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    HardTimeout,
    /// The supervisor was signalled with no kill request on file.
    ToldToStop,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Append an event to the journal.
    Journal(Event),
    /// Add a line of fleetctl's own to the agent's log.
    Note(String),
    /// Signal the main process.
    SignalMain { pid: i32, signal: Signal },
    /// SIGTERM every process of the agent; answers [`Input::Signalled`].
    TermAll(Term),
    /// `cgroup.kill` the agent.
    KillAll,
    /// Read the agent's `oom_kill` counter; answers [`Input::OomCounter`].
    ReadOomCounter,
    /// Do what waits until `spawn` has returned.
    Housekeeping,
    /// The main process ended: kill what is left of the run and wait for it to go.
    KillRest,
    /// Reap, read the run's counters, remove its cgroup, read the kill request on file;
    /// answers [`Input::RunEnded`].
    EndRun { kills_seen: u64 },
    /// Put the run's exit and OOM kills in the record.
    RecordRun { exit: ExitInfo, oom_kills: u64 },
    /// Record the agent as waiting `delay` to restart, for `cause`.
    RecordWaiting { delay: Duration, cause: String },
    /// Read the kill request on file; answers [`Input::KillRequestOnFile`].
    ReadKillRequest,
    /// Start run number `restarts`; answers [`Input::Started`] or [`Input::StartFailed`].
    StartRun { restarts: u32 },
    /// Remove the agent's cgroup (after a failed restart).
    RemoveCgroup,
    /// Save the record as it is.
    SaveRecord,
    /// Record the agent stalled on memory since this long ago, or (None) no longer.
    RecordStalled(Option<Duration>),
    /// Record the agent's end for good; the supervisor exits after it.
    Finish(Verdict),
}

/// Why the supervisor is stopping its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `kill`, relief or the watcher asked (and do the killing themselves).
    Requested(KillRequest),
    /// The supervisor got SIGTERM/SIGINT/SIGHUP with no request on file: it stops the agent.
    Signal,
}
