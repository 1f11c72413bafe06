//! One agent's life under its supervisor: runs, the event loop inside each run, restarts,
//! and the final record.

use super::{
    logsink::LogSink,
    oom_group::Decision,
    outcome::{Breaker, Next, RunFacts, classify, describe_exit, own_limit_reached, restartable},
    runner::{self, NextRun, Running},
};
use crate::agent::plan::{CRASH_LOOP_WINDOW, SupervisorPlan};
use anyhow::{Context, Result};
use fleet_core::{
    cgroup::KILL_SETTLE,
    event::{Event, Exit, ObservedExit},
    journal,
    lease::Leases,
    lock::Lock,
    paths::Dirs,
    procs::{ProcessRef, protect_from_oom},
    state::{AgentRecord, AgentState, ExitInfo, KillRequest, RestartPolicy},
};
use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        signal::{SigSet, Signal, kill},
        signalfd::{SfdFlags, SignalFd},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};
use serde_json::json;
use std::{
    io::Read,
    os::fd::AsFd,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

/// The first and the longest wait between tries to record an agent's end on a full disk.
const FINAL_RETRY_FIRST: Duration = Duration::from_millis(100);
const FINAL_RETRY_MAX: Duration = Duration::from_secs(5);

/// A supervisor between runs and during them.
pub struct Supervisor {
    plan: SupervisorPlan,
    dirs: Dirs,
    record: AgentRecord,
    signals: SignalFd,
    /// The agent's output log, opened at its first use (see [`Supervisor::log`]).
    log: Option<LogSink>,
    /// Whether opening the log was tried.
    log_opened: bool,
    breaker: Breaker,
    /// The agent's workspace slot and ports: held until the supervisor exits.
    _leases: Option<Leases>,
    /// Set when someone asked the agent to stop: no more restarts.
    stop: Option<Stop>,
    /// When to do what can wait until `spawn` has returned (see [`Supervisor::housekeeping`]).
    housekeeping_at: Option<Instant>,
    lock: Lock,
    /// The first run, prepared while `spawn` makes the cgroup.
    first_run: Option<NextRun>,
    /// This supervisor has made itself the OOM killer's last choice, which its agent must
    /// not inherit.
    oom_protected: bool,
}

/// How long after the first run starts the supervisor does its housekeeping: long after
/// `spawn` has reported and exited (about a millisecond), so on a host with few cores the
/// two never compete for a CPU while `spawn`'s caller waits.
const HOUSEKEEPING_DELAY: Duration = Duration::from_millis(50);

/// Why the supervisor is stopping its agent.
#[derive(Debug, Clone)]
enum Stop {
    /// `kill`, relief or the watcher asked (and do the killing themselves).
    Requested(KillRequest),
    /// The supervisor got SIGTERM/SIGINT/SIGHUP with no request on file: it stops the agent.
    Signal,
}

/// What the event loop saw during one run.
#[derive(Default)]
struct Observed {
    exit: Option<ExitInfo>,
    hard_timeout: bool,
}

impl Supervisor {
    /// Becomes the reaper of the agent's orphans and routes signals to a descriptor. (OOM
    /// protection and leaving the caller's cgroup come later, in its housekeeping.)
    /// `record` is the one `spawn` writes to disk meanwhile, handed over in memory.
    pub fn prepare(
        plan: SupervisorPlan,
        record: AgentRecord,
        lock: Lock,
        leases: Option<Leases>,
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
        let breaker = Breaker::new(plan.restart_backoff, plan.crash_loop_after, CRASH_LOOP_WINDOW);
        // The log file is created at its first use, after `spawn` has returned (see
        // `log`); that it can be is checked now, so a log dir that cannot be written still
        // fails the spawn.
        let path = dirs.log_path(&plan.id);
        LogSink::check_dir(&path).with_context(|| format!("cannot create the log {}", path.display()))?;
        let first_run = Some(runner::prepare(&plan)?);
        let mut sup = Supervisor {
            plan,
            dirs,
            record,
            signals,
            log: None,
            log_opened: false,
            breaker,
            _leases: leases,
            stop: None,
            housekeeping_at: Some(Instant::now() + HOUSEKEEPING_DELAY),
            lock,
            first_run,
            oom_protected: false,
        };
        sup.record.supervisor = ProcessRef::of(Path::new("/proc"), std::process::id() as i32);
        Ok(sup)
    }

    /// What the supervisor does once, after `spawn` has returned: take protection from the
    /// OOM killer, leave the caller's cgroup for the fleet's `supervisors/`, outside every
    /// agent, and, since from then on it mostly sleeps, let go of its setup code's pages and
    /// of what `spawn` left on the heap.
    ///
    /// None of it is done before: on a host with two cores, the supervisor, the agent's
    /// own start-up and `spawn`'s exit compete for them, and every syscall the supervisor
    /// makes meanwhile is one `spawn`'s caller may wait for.
    fn housekeeping(&mut self) {
        self.housekeeping_at = None;
        // Only root may lower oom_score_adj; an unprivileged supervisor runs unprotected.
        self.oom_protected = protect_from_oom(Path::new("/proc")).is_ok();
        // The lock file names its holder for a refused spawn's message (when the record
        // cannot say); until now it named `spawn`, which held the same lock.
        if let Err(e) = self.lock.set_holder("supervisor") {
            self.note(&format!("cannot name the supervisor in the lock file: {e:#}"));
        }
        // A quiet agent has an (empty) log too, for `fleetctl logs`.
        let _ = self.log();
        if let Err(e) = self.plan.supervisors.attach(0) {
            self.note(&format!("cannot move the supervisor into {}: {e:#}", self.plan.supervisors.unified.display()));
            self.event("supervisor_error", json!({"error": format!("cannot join supervisors cgroup: {e:#}")}));
        }
        // The heap first: the code that trims it would fault back in after the text's release.
        release_free_heap();
        let _ = fleet_core::procs::release_text_pages(Path::new("/proc"));
    }

    /// Opens what the first run needs of the agent's cgroup, which `spawn` has made (and
    /// whose limits it is writing meanwhile).
    pub fn place_first_run(&mut self) -> Result<()> {
        match &mut self.first_run {
            Some(run) => run.place(&self.plan.cgroup),
            None => Ok(()),
        }
    }

    /// Starts run number `restarts` (0 for the first) and records it.
    pub fn start_run(&mut self, restarts: u32) -> Result<Running> {
        if restarts > 0 {
            self.plan.cgroup.create()?;
            self.plan.cgroup.apply_limits(&self.plan.limits)?;
        }
        let next = match self.first_run.take() {
            Some(prepared) => prepared,
            None => runner::prepare(&self.plan)?,
        };
        let running = runner::start(&self.plan, next, self.oom_protected)?;
        let at = running.started_at;
        let r = &mut self.record;
        r.state = AgentState::Running;
        r.pid = Some(running.pid);
        r.started_at = Some(at);
        r.soft_deadline = self.plan.soft_timeout.map(|d| at + d);
        r.hard_deadline = self.plan.hard_timeout.map(|d| at + d);
        r.restarts = restarts;
        r.next_restart_at = None;
        let event = if restarts == 0 { "spawn" } else { "restart" };
        self.event(event, json!({"pid": running.pid, "restarts": restarts, "command": self.plan.command}));
        self.save();
        Ok(running)
    }

    /// Supervises runs until the agent has ended for good, then records the end.
    pub fn supervise(&mut self, mut running: Running) {
        loop {
            let observed = self.watch(&mut running);
            let facts = self.finish_run(running, observed);
            let mut verdict = classify(&facts);
            let ran = self.record.started_at.and_then(|t| t.elapsed().ok()).unwrap_or_default();
            self.record.exit = Some(facts.exit);
            self.record.oom_kills += facts.oom_kills;
            if verdict.state == AgentState::OomKilled {
                self.event(
                    "oom_kill",
                    json!({"oom_kills": facts.oom_kills, "memory_max": self.plan.limits.memory_max}),
                );
            }
            if self.plan.restart == RestartPolicy::OnFailure && restartable(verdict.state) && self.stop.is_none() {
                match self.breaker.on_failure(Instant::now(), ran) {
                    Next::RestartAfter(delay) => {
                        if let Some(next) = self.backoff(delay, &verdict.cause) {
                            running = next;
                            continue;
                        }
                        // Stopped while waiting to restart (a failed restart keeps its verdict).
                        if self.stop.is_some() || self.request().is_some() {
                            let stop_signal = matches!(self.stop, Some(Stop::Signal));
                            verdict = classify(&RunFacts { kill_request: self.request(), stop_signal, ..facts });
                        }
                    }
                    Next::CrashLoop => {
                        verdict.cause = format!(
                            "crash loop: {} failures within {}; last {}",
                            self.breaker.recent_failures(),
                            humantime::format_duration(CRASH_LOOP_WINDOW),
                            verdict.cause
                        );
                        verdict.state = AgentState::CrashLoop;
                        self.event(
                            "crash_loop",
                            json!({"failures": self.breaker.recent_failures(), "cause": verdict.cause}),
                        );
                    }
                }
            }
            self.finish(verdict.state, verdict.cause, verdict.killed_by);
            return;
        }
    }

    /// The event loop of one run: returns once the main process has been reaped.
    fn watch(&mut self, run: &mut Running) -> Observed {
        let mut seen = Observed::default();
        let mut soft_at = self.plan.soft_timeout.map(|d| run.started + d);
        let mut hard_at = self.plan.hard_timeout.map(|d| run.started + d);
        let mut grace_at: Option<Instant> = None;
        let mut output_open = true;
        let mut buf = vec![0u8; 64 * 1024];
        while seen.exit.is_none() {
            let oom_check = run.oom.as_ref().and_then(|o| o.next_check());
            let next = [soft_at, hard_at, grace_at, self.housekeeping_at, oom_check].into_iter().flatten().min();
            let timeout = match next {
                None => PollTimeout::NONE,
                Some(t) => {
                    let ms = t.saturating_duration_since(Instant::now()).as_millis().min(60_000) as u16;
                    PollTimeout::from(ms.max(1))
                }
            };
            let (sig_ready, out_ready, oom_ready) = {
                let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                if output_open {
                    fds.push(PollFd::new(run.output.as_fd(), PollFlags::POLLIN));
                }
                if let Some(w) = &run.oom {
                    fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
                }
                // EINTR cannot happen (every signal we take is blocked); anything else is a bug
                // we cannot act on, and the loop re-polls.
                let _ = poll(&mut fds, timeout);
                let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
                (ready(0), output_open && ready(1), run.oom.is_some() && ready(if output_open { 2 } else { 1 }))
            };
            if sig_ready {
                self.on_signals(run, &mut seen, &mut grace_at);
            }
            if out_ready {
                output_open = self.pump_output(run, &mut buf);
            }
            let now = Instant::now();
            if let Some(oom) = &mut run.oom {
                if oom_ready {
                    oom.notified(now);
                }
                match oom.decide(now) {
                    Decision::Wait => {}
                    // cgroup v1 has no memory.oom.group: finish what the OOM killer started.
                    Decision::KillGroup { kills } => {
                        self.note(&format!(
                            "out of memory: the OOM killer took {kills} process(es) of this agent; killing the rest"
                        ));
                        let _ = self.plan.cgroup.kill();
                    }
                    Decision::Spared => self
                        .note("memory ran out above this agent, and the OOM killer's victim was elsewhere: it runs on"),
                }
            }
            if self.housekeeping_at.is_some_and(|t| now >= t) {
                self.housekeeping();
            }
            if soft_at.is_some_and(|t| now >= t) {
                soft_at = None;
                let _ = kill(Pid::from_raw(run.pid), Signal::SIGUSR1);
                self.note("soft timeout: sent SIGUSR1 to the main process");
                self.event("soft_timeout", json!({"pid": run.pid}));
            }
            if hard_at.is_some_and(|t| now >= t) {
                hard_at = None;
                seen.hard_timeout = true;
                let n = self.plan.cgroup.signal_all(Signal::SIGTERM).unwrap_or(0);
                grace_at = Some(now + self.plan.kill_grace);
                self.note(&format!(
                    "hard timeout: sent SIGTERM to {n} process(es); killing in {}",
                    humantime::format_duration(self.plan.kill_grace)
                ));
                self.event(
                    "hard_timeout",
                    json!({"signalled": n, "grace_ms": self.plan.kill_grace.as_millis() as u64}),
                );
            }
            if grace_at.is_some_and(|t| now >= t) {
                grace_at = None;
                self.note("grace period over: killing every process of the agent");
                let _ = self.plan.cgroup.kill();
            }
        }
        seen
    }

    /// Handles queued signals: reaps children, notices stop requests.
    fn on_signals(&mut self, run: &Running, seen: &mut Observed, grace_at: &mut Option<Instant>) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(Some(run.pid), seen),
                _ => self.on_stop_signal(grace_at),
            }
        }
        // SIGCHLD coalesces; reap whatever is there even without a fresh signal.
        self.reap(Some(run.pid), seen);
    }

    /// A stop was asked of the supervisor. With a kill request on file, the requester is
    /// doing the killing; otherwise the supervisor stops the agent itself, gracefully.
    fn on_stop_signal(&mut self, grace_at: &mut Option<Instant>) {
        if self.stop.is_some() {
            return;
        }
        match self.request() {
            Some(req) => self.stop = Some(Stop::Requested(req)),
            None => {
                self.stop = Some(Stop::Signal);
                let n = self.plan.cgroup.signal_all(Signal::SIGTERM).unwrap_or(0);
                self.note(&format!("supervisor told to stop: sent SIGTERM to {n} process(es)"));
                *grace_at = Some(Instant::now() + self.plan.kill_grace);
            }
        }
    }

    /// Reaps every exited child; records the main process's status.
    fn reap(&mut self, main: Option<i32>, seen: &mut Observed) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if Some(pid.as_raw()) == main => {
                    seen.exit = Some(ExitInfo { code: Some(code), signal: None });
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if Some(pid.as_raw()) == main => {
                    seen.exit = Some(ExitInfo { code: None, signal: Some(sig as i32) });
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Copies available output to the log; returns false at EOF.
    fn pump_output(&mut self, run: &mut Running, buf: &mut [u8]) -> bool {
        loop {
            match run.output.read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if let Some(log) = self.log() {
                        let _ = log.write(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// After the main process ended: kill what is left, collect the last output, read the
    /// OOM counters, remove the cgroup.
    fn finish_run(&mut self, mut run: Running, seen: Observed) -> RunFacts {
        let exit = seen.exit.unwrap_or(ExitInfo { code: None, signal: None });
        let cgroup = self.plan.cgroup.clone();
        if cgroup.populated().unwrap_or(false) {
            let _ = cgroup.kill();
            if !cgroup.wait_empty(KILL_SETTLE).unwrap_or(false) {
                self.note("processes remain in the cgroup after cgroup.kill");
            }
        }
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.pump_output(&mut run, &mut buf) && Instant::now() < deadline {
            let mut fds = [PollFd::new(run.output.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
        let mut dummy = Observed::default();
        self.reap(None, &mut dummy);
        let events = cgroup.memory_events().ok();
        // The counter as read now, or as the OOM watch last read it if the file is gone.
        let seen_kills = run.oom.as_ref().map_or(0, |o| o.kills_seen());
        let oom_kills = events.map_or(0, |e| e.oom_kill).max(seen_kills);
        let peak = cgroup.memory_stats().ok().and_then(|s| s.peak);
        let own_limit_hit = own_limit_reached(events.map(|e| e.max), peak, self.plan.limits.memory_max);
        drop(run.oom.take());
        if let Err(e) = cgroup.remove() {
            self.note(&format!("cannot remove the cgroup: {e:#}"));
        }
        let stop_signal = matches!(self.stop, Some(Stop::Signal));
        let kill_request = match &self.stop {
            Some(Stop::Requested(r)) => Some(r.clone()),
            _ => self.request(),
        };
        RunFacts {
            exit,
            kill_request,
            stop_signal,
            hard_timeout: seen.hard_timeout,
            oom_kills,
            memory_max: self.plan.limits.memory_max,
            own_limit_hit,
        }
    }

    /// Waits out a restart delay; returns the next run, or None if stopped (or it failed).
    fn backoff(&mut self, delay: Duration, cause: &str) -> Option<Running> {
        let at = SystemTime::now() + delay;
        self.record.state = AgentState::Starting;
        self.record.pid = None;
        self.record.next_restart_at = Some(at);
        self.record.cause = Some(cause.to_string());
        self.save();
        self.note(&format!("{cause}; restarting in {}", humantime::format_duration(delay)));
        self.event("restart_scheduled", json!({"delay_ms": delay.as_millis() as u64, "cause": cause}));
        let deadline = Instant::now() + delay;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(left.as_millis().clamp(1, 60_000) as u16));
            while let Ok(Some(info)) = self.signals.read_signal() {
                if info.ssi_signo as i32 != Signal::SIGCHLD as i32 {
                    self.stop = Some(self.request().map(Stop::Requested).unwrap_or(Stop::Signal));
                }
            }
            self.reap(None, &mut Observed::default());
            if self.stop.is_some() || self.request().is_some() {
                return None;
            }
        }
        let restarts = self.record.restarts + 1;
        match self.start_run(restarts) {
            Ok(run) => Some(run),
            Err(e) => {
                self.note(&format!("restart failed: {e:#}"));
                self.event("restart_failed", json!({"error": format!("{e:#}")}));
                let _ = self.plan.cgroup.remove();
                None
            }
        }
    }

    /// Records the end for good.
    fn finish(&mut self, state: AgentState, cause: String, killed_by: Option<String>) {
        self.note(&format!("agent ended: {cause}"));
        // tmpfs pages outlive the cgroup they were charged to: left behind, they would leak
        // host memory.
        if let Some(dir) = &self.plan.scratch
            && let Err(e) = fleet_core::paths::remove_dir_tree(dir)
        {
            self.note(&format!("cannot remove the scratch dir {}: {e}", dir.display()));
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
        self.record_end(Exit::observed(state, cause, killed_by, observed));
        let _ = std::fs::remove_file(self.dirs.kill_request_path(&self.plan.id));
    }

    /// Journals the `exit` event, then saves the final record, each until it succeeds. Both
    /// must reach the disk: without the event the run never ends in the journal, and
    /// without the record every reader takes the run for one whose supervisor died and
    /// records its end a second time. So on a full disk the supervisor waits for room,
    /// holding the id's lock and leases (its agent is already gone), and says so once.
    fn record_end(&mut self, exit: Exit) {
        if let Some(me) = self.record.supervisor {
            crate::agent::deaths::claim_end(&self.dirs, &self.plan.id, me);
        }
        let mut exit = Some(exit);
        let mut wait = FINAL_RETRY_FIRST;
        let mut told = false;
        loop {
            match crate::agent::ending::write(&self.dirs, &self.record, &mut exit).map_err(anyhow::Error::from) {
                Ok(()) => return,
                Err(e) if !told => {
                    told = true;
                    self.note(&format!("cannot record the agent's end yet ({e:#}); retrying until there is room"));
                }
                Err(_) => {}
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(FINAL_RETRY_MAX);
        }
    }

    fn request(&self) -> Option<KillRequest> {
        KillRequest::load(&self.dirs.kill_request_path(&self.plan.id))
    }

    fn save(&mut self) {
        if let Err(e) = self.record.save(&self.dirs.state_path(&self.plan.id)) {
            self.note(&format!("cannot save state: {e:#}"));
        }
    }

    fn event(&mut self, kind: &str, detail: serde_json::Value) {
        // Until its call sites build `Event`s, the supervisor's fields go through the enum here.
        let written = match Event::from_fields(kind, detail) {
            Ok(event) => journal::append(&self.dirs.journal_path(), &self.plan.id, &event).map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::anyhow!("{kind} does not fit the event's fields: {e}")),
        };
        if let Err(e) = written {
            self.note(&format!("cannot write the journal: {e:#}"));
        }
    }

    fn note(&mut self, message: &str) {
        if let Some(log) = self.log() {
            log.note(message);
        }
    }

    /// The agent's log, opened (created, for a new id) at the first output, note or
    /// housekeeping, whichever comes first. Not before: creating a file on a disk takes
    /// 0.13 ms on this host, and done while `spawn` has yet to return, it kept `spawn`
    /// from a CPU. Until then the output waits in the pipe (64 KiB). That the log can be
    /// created was checked before the agent started; if it still fails, the output is
    /// discarded and the journal says why, and the agent runs on.
    fn log(&mut self) -> Option<&mut LogSink> {
        if !self.log_opened {
            self.log_opened = true;
            let path = self.dirs.log_path(&self.plan.id);
            match LogSink::open(path.clone(), self.plan.log_max_size) {
                Ok(log) => self.log = Some(log),
                Err(e) => self.event(
                    "supervisor_error",
                    json!({"error": format!("cannot open the log {}: {e}; the agent's output is discarded", path.display())}),
                ),
            }
        }
        self.log.as_mut()
    }
}

/// Returns the heap's free memory to the kernel: what `spawn` allocated before the fork is
/// no use to the supervisor.
fn release_free_heap() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
    // SAFETY: mi_collect only frees and purges mimalloc's own unused memory.
    #[cfg(target_env = "musl")]
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}
