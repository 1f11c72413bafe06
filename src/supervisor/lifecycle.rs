//! One agent's life under its supervisor: the thin driver around the state machine
//! ([`super::machine`]). It owns the descriptors, the record and the log, sleeps in one
//! poll(2) loop, turns what woke it into inputs, and performs the machine's actions.

mod housekeeping;
mod idle;

use super::{
    logsink::{Log, LogSink},
    machine::{Action, Input, Machine, Policy, RunEnd},
    outcome::{describe_exit, own_limit_reached},
    run_end,
    runner::{self, NextRun, Running},
};
use crate::agent::plan::SupervisorPlan;
use anyhow::{Context, Result};
use fleet_core::{
    event::{Event, Exit, ObservedExit},
    journal,
    lease::Leases,
    lock::Lock,
    paths::Dirs,
    procs::ProcessRef,
    state::{AgentRecord, AgentState, ExitInfo, KillRequest},
};
use nix::{
    sys::{
        signal::{SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
    },
    unistd::Pid,
};
use std::time::{Duration, Instant, SystemTime};

/// A supervisor between runs and during them.
pub struct Supervisor {
    plan: SupervisorPlan,
    dirs: Dirs,
    record: AgentRecord,
    signals: SignalFd,
    log: Log,
    /// Every decision: timers, restarts, whether the agent is being stopped.
    machine: Machine,
    /// The run in progress, from its start until its end is recorded.
    run: Option<Running>,
    /// The agent's workspace slot and ports: held until the supervisor exits.
    _leases: Option<Leases>,
    lock: Lock,
    /// The first run, prepared while `spawn` makes the cgroup.
    first_run: Option<NextRun>,
    /// This supervisor has made itself the OOM killer's last choice, which its agent must
    /// not inherit.
    oom_protected: bool,
    /// It joined `supervisors/` of the cgroup2 tree before the start (on systemd hosts): its
    /// housekeeping joins only the v1 hierarchies.
    joined_supervisors_early: bool,
    /// Where the agent's output is read into when it comes faster than a small read takes
    /// it, allocated then and let go of before a long sleep ([`idle`]).
    output_buf: Vec<u8>,
    /// When memory was last let go of before a sleep.
    let_go: idle::LetGo,
}

impl Supervisor {
    /// Becomes the reaper of the agent's orphans and routes signals to a descriptor. (OOM
    /// protection and leaving the caller's cgroup come later, in its housekeeping.)
    /// `record` is the one `spawn` writes to disk meanwhile, handed over in memory; `me` is
    /// the supervisor itself, for it.
    pub fn prepare(
        plan: SupervisorPlan,
        mut record: AgentRecord,
        me: Option<ProcessRef>,
        lock: Lock,
        leases: Option<Leases>,
        joined_supervisors_early: bool,
    ) -> Result<Supervisor> {
        let dirs = plan.dirs();
        // Orphans of the agent are re-parented to us instead of init, so we reap them at
        // once and they stop counting against pids.max.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        // Ignored dispositions survive exec: a spawn started under nohup or from a script's
        // background job would hand agents an ignored SIGHUP or SIGINT. Agents start from the
        // defaults.
        for signal in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE)) {
            // SAFETY: installing SIG_DFL runs no handler code.
            let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
        }
        // The supervisor itself ignores SIGPIPE: if `spawn` died before reading the report, the
        // write fails with EPIPE instead of killing the supervisor of a running agent. (std
        // restores SIGPIPE's default in the agent before exec.)
        // SAFETY: installing SIG_IGN runs no handler code.
        let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) };
        let mut mask = SigSet::empty();
        for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        mask.thread_block().context("cannot block signals")?;
        let signals =
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")?;
        // The log file is created at its first use, after `spawn` has returned (see `Log`);
        // that it can be is checked now, so a log dir that cannot be written still fails the
        // spawn.
        let path = dirs.log_path(&plan.id);
        LogSink::check_dir(&path).with_context(|| format!("cannot create the log {}", path.display()))?;
        let first_run = Some(runner::prepare(&plan)?);
        record.supervisor = me;
        Ok(Supervisor {
            machine: Machine::new(Policy::of(&plan), Instant::now()),
            log: Log::new(path, plan.log_max_size),
            plan,
            dirs,
            record,
            signals,
            run: None,
            _leases: leases,
            lock,
            first_run,
            oom_protected: false,
            joined_supervisors_early,
            output_buf: Vec::new(),
            let_go: idle::LetGo::NotYet,
        })
    }

    /// Opens what the first run needs of the agent's cgroup, which `spawn` has made (and
    /// whose limits it is writing meanwhile).
    pub fn place_first_run(&mut self) -> Result<()> {
        match &mut self.first_run {
            Some(run) => run.place(&self.plan.cgroup),
            None => Ok(()),
        }
    }

    /// Starts the first run and records it; returns its main pid.
    pub fn start_first_run(&mut self) -> Result<i32> {
        let (pid, started) = self.start_run(0)?;
        self.feed_at(Input::Started { pid, restarts: 0 }, started);
        Ok(pid)
    }

    /// Supervises runs until the agent has ended for good and its end is recorded.
    pub fn supervise(&mut self) {
        while !self.machine.done() {
            let release_pages = self.let_go_before_sleeping(Instant::now());
            let woke = super::wait::wait(
                &self.signals,
                self.run.as_ref().filter(|_| self.machine.wants_output()).map(|r| &r.output),
                self.run.as_ref().filter(|_| self.machine.wants_oom()).and_then(|r| r.oom.as_ref()),
                self.run
                    .as_ref()
                    .filter(|_| self.machine.wants_pressure())
                    .and_then(|r| r.pressure.as_ref()?.as_ref().ok()),
                self.machine.next_deadline(),
                release_pages.then_some(self.plan.proc_root.as_path()),
            );
            if woke.signals {
                self.on_signals();
            }
            if woke.output && !self.pump_output() {
                self.feed(Input::OutputClosed);
            }
            if woke.oom && self.run.as_ref().and_then(|r| r.oom.as_ref()).is_some_and(|o| o.drain()) {
                self.feed(Input::OomNotified);
            }
            // A run whose main process has exited (in this pass, too) is no longer watched:
            // losing its trigger then loses nothing, and is not said.
            if woke.pressure_lost && self.machine.wants_pressure() {
                self.drop_lost_trigger();
            }
            if woke.pressure {
                self.feed(Input::PressureTriggered);
            }
            self.feed(Input::Tick);
        }
    }

    /// The run's cgroup was removed under it (its processes moved out first, as only an
    /// agent running as root can): its pressure trigger polls an error at once, forever. It
    /// is dropped for the rest of this run, which is said once; the next run arms its own.
    fn drop_lost_trigger(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        let why = format!(
            "stalls on memory are no longer watched in this run: its cgroup {} was removed while it ran",
            self.plan.cgroup.unified.display()
        );
        run.pressure = Some(Err(why.clone()));
        self.event(&Event::SupervisorError { error: why });
    }

    /// Gives the machine an input and performs what it decides, including what the answers
    /// to its questions decide in turn.
    fn feed(&mut self, input: Input) {
        self.feed_at(input, Instant::now());
    }

    fn feed_at(&mut self, input: Input, now: Instant) {
        for action in self.machine.on(input, now) {
            if let Some(answer) = self.perform(action) {
                self.feed(answer);
            }
        }
    }

    /// Performs one action; returns the input it answers with, if it asked something.
    fn perform(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Journal(event) => self.event(&event),
            Action::Note(message) => self.note(&message),
            Action::SignalMain { pid, signal } => {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
            }
            Action::TermAll(why) => {
                let count = self.plan.cgroup.signal_all(Signal::SIGTERM).unwrap_or(0);
                return Some(Input::Signalled { why, count });
            }
            Action::KillAll => {
                let _ = self.plan.cgroup.kill();
            }
            Action::ReadOomCounter => {
                let kills = self.run.as_ref().and_then(|r| r.oom.as_ref()).and_then(|o| o.kills());
                return Some(Input::OomCounter(kills));
            }
            Action::Housekeeping => self.housekeeping(),
            Action::KillRest => {
                if !run_end::kill_rest(&self.plan.cgroup) {
                    self.note("processes remain in the cgroup after cgroup.kill");
                }
            }
            Action::EndRun { kills_seen } => return Some(Input::RunEnded(self.end_run(kills_seen))),
            Action::RecordRun { exit, oom_kills } => {
                self.record.exit = Some(exit);
                self.record.oom_kills += oom_kills;
            }
            Action::RecordWaiting { delay, cause } => self.record_waiting(delay, cause),
            Action::ReadKillRequest => return Some(Input::KillRequestOnFile(self.request())),
            Action::StartRun { restarts } => match self.start_run(restarts) {
                // Its timers count from the start.
                Ok((pid, started)) => self.feed_at(Input::Started { pid, restarts }, started),
                Err(e) => return Some(Input::StartFailed { error: format!("{e:#}"), request: self.request() }),
            },
            Action::RemoveCgroup => {
                let _ = self.plan.cgroup.remove();
            }
            Action::SaveRecord => self.save(),
            Action::RecordStalled(ago) => {
                self.record.stalled_since = ago.map(|ago| SystemTime::now() - ago);
            }
            Action::Finish(verdict) => self.finish(verdict.state, verdict.cause, verdict.killed_by),
        }
        None
    }

    /// Starts run number `restarts` (0 for the first) and puts it in the record (saved
    /// once the machine has journaled it); returns its main pid and when it started.
    fn start_run(&mut self, restarts: u32) -> Result<(i32, Instant)> {
        if restarts > 0 {
            self.plan.cgroup.create()?;
            self.plan.cgroup.apply_limits(&self.plan.limits)?;
        }
        let next = match self.first_run.take() {
            Some(prepared) => prepared,
            None => runner::prepare(&self.plan)?,
        };
        let running = runner::start(&self.plan, next, self.oom_protected)?;
        let (pid, at, started) = (running.pid, running.started_at, running.started);
        if let Some(Err(why)) = &running.pressure {
            self.event(&Event::SupervisorError { error: why.clone() });
        }
        self.run = Some(running);
        // Every run begins its part of the log, so a restart or a reused id is not read as
        // one run's output. Not the command: a reader (or a test) looking for what the agent
        // printed must not find it in the line that says it started (`events` has it).
        self.log.mark_run(format!(
            "run {} of {} started at {}, pid {pid}",
            restarts + 1,
            self.plan.id,
            fleet_core::timefmt::rfc3339(at)
        ));
        let r = &mut self.record;
        r.state = AgentState::Running;
        r.pid = Some(pid);
        r.started_at = Some(at);
        r.soft_deadline = self.plan.soft_timeout.map(|d| at + d);
        r.hard_deadline = self.plan.hard_timeout.map(|d| at + d);
        r.restarts = restarts;
        r.next_restart_at = None;
        r.stalled_since = None;
        Ok((pid, started))
    }

    /// Handles queued signals: reaps children; a stop signal comes with the kill request on
    /// file then, which a killer writes before it signals.
    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                _ => {
                    let request = match self.machine.stopping() {
                        None => self.request(),
                        Some(_) => None,
                    };
                    self.feed(Input::StopSignal { request });
                }
            }
        }
        // SIGCHLD coalesces; reap whatever is there even without a fresh signal.
        self.reap();
    }

    /// Reaps every exited child; tells the machine when the main process is among them.
    fn reap(&mut self) {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        loop {
            let exit = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitInfo { code: Some(code), signal: None }),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitInfo { code: None, signal: Some(sig as i32) }),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if Some(exit.0.as_raw()) == self.machine.main_pid() {
                self.feed(Input::MainExited(exit.1));
            }
        }
    }

    /// Copies available output to the log; returns false at EOF.
    fn pump_output(&mut self) -> bool {
        use std::io::Read;
        // Most wake-ups bring a few lines or the end: read into the stack. A read that fills
        // it means more waits, read with a buffer of a pipe's whole default capacity, kept
        // until the supervisor next lets go of memory ([`idle`]). Allocating that at every
        // wake-up zeroed 16 fresh pages, at every agent's end too.
        let mut small = [0u8; 4096];
        let mut big = std::mem::take(&mut self.output_buf);
        let open = loop {
            let Some(run) = self.run.as_mut() else { break false };
            let buf: &mut [u8] = if big.is_empty() { &mut small } else { &mut big };
            match run.output.read(buf) {
                Ok(0) => break false,
                Ok(n) => {
                    let filled = n == buf.len();
                    if let Some(log) = self.log() {
                        let _ = log.write(&buf[..n]);
                    }
                    if filled && big.is_empty() {
                        big.resize(64 * 1024, 0);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        self.output_buf = big;
        open
    }

    /// After the main process ended and the last output came: reap, read the OOM counters,
    /// remove the cgroup, and read the kill request on file.
    fn end_run(&mut self, kills_seen: u64) -> RunEnd {
        let run = self.run.take();
        self.reap();
        let cgroup = &self.plan.cgroup;
        let events = cgroup.memory_events().ok();
        // The counter as read now, or as the OOM watch last read it if the file is gone.
        let oom_kills = events.map_or(0, |e| e.oom_kill).max(kills_seen);
        let peak = cgroup.memory_peak().ok().flatten();
        let own_limit_hit = own_limit_reached(events.map(|e| e.max), peak, self.plan.limits.memory_max);
        // Kept in the record: once the cgroup is gone, the peak is the number to resize by.
        self.record.final_peak_bytes = peak;
        drop(run);
        if let Err(e) = self.plan.cgroup.remove() {
            self.note(&format!("cannot remove the cgroup: {e:#}"));
        }
        RunEnd { oom_kills, own_limit_hit, request: self.request() }
    }

    /// Records the agent as waiting to restart.
    fn record_waiting(&mut self, delay: Duration, cause: String) {
        self.record.state = AgentState::Starting;
        self.record.pid = None;
        self.record.next_restart_at = Some(SystemTime::now() + delay);
        self.record.cause = Some(cause);
        self.save();
    }

    /// Records the end for good.
    fn finish(&mut self, state: AgentState, cause: String, killed_by: Option<String>) {
        self.note(&format!("agent ended: {cause}"));
        if let Err(why) = run_end::remove_scratch(self.plan.scratch.as_deref()) {
            self.note(&why);
        }
        crate::agent::ending::close(&mut self.record, state, cause.clone(), killed_by.clone());
        let exit = self.record.exit;
        let observed = ObservedExit {
            code: exit.and_then(|e| e.code),
            signal: exit.and_then(|e| e.signal),
            oom_kills: self.record.oom_kills,
            restarts: self.record.restarts,
            summary: exit.map(|e| describe_exit(&e)),
        };
        let exit = Exit::observed(state, cause, killed_by, observed);
        let (dirs, id, record, log) = (&self.dirs, &self.plan.id, &self.record, &mut self.log);
        run_end::record_end(dirs, id, record, exit, |message| {
            if let Log::Open(sink) = log {
                sink.note(message);
            }
        });
        let _ = std::fs::remove_file(self.dirs.kill_request_path(&self.plan.id));
    }

    fn request(&self) -> Option<KillRequest> {
        KillRequest::load(&self.dirs.kill_request_path(&self.plan.id))
    }

    fn save(&mut self) {
        if let Err(e) = self.record.save(&self.dirs.state_path(&self.plan.id)) {
            self.note(&format!("cannot save state: {e:#}"));
        }
    }

    /// The one place the supervisor journals an event (its final `exit` aside, which
    /// [`run_end::record_end`] writes until it reaches the disk).
    fn event(&mut self, event: &Event) {
        if let Err(e) = journal::append(&self.dirs.journal_path(), &self.plan.id, event) {
            self.note(&format!("cannot write the journal: {e:#}"));
        }
    }

    fn note(&mut self, message: &str) {
        if let Some(log) = self.log() {
            log.note(message);
        }
    }

    /// The agent's log, opened at its first use; a log that cannot be opened is journaled
    /// once and its output discarded.
    fn log(&mut self) -> Option<&mut LogSink> {
        if let Err(why) = self.log.sink() {
            self.event(&Event::SupervisorError { error: why });
        }
        match &mut self.log {
            Log::Open(sink) => Some(sink),
            _ => None,
        }
    }
}
