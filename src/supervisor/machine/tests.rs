//! The supervisor's transitions, stepped by hand: no kernel, no root, no cgroups. Each test
//! plays the inputs the driver would feed and checks the actions and the timers.

use super::*;
use fleet_core::size::Limit;
use std::time::SystemTime;

const SEC: Duration = Duration::from_secs(1);

fn policy() -> Policy {
    Policy {
        soft_timeout: None,
        hard_timeout: None,
        kill_grace: 2 * SEC,
        restart: RestartPolicy::Never,
        restart_backoff: SEC,
        crash_loop_after: 3,
        memory_max: Limit::Bytes(64 << 20),
        command: vec!["agent".into()],
        stall: None,
    }
}

/// A machine whose first run (pid 100) started at the returned instant, its housekeeping
/// done.
fn running(policy: Policy) -> (Machine, Instant) {
    let t0 = Instant::now();
    let mut m = Machine::new(policy, t0);
    let out = m.on(Input::Started { pid: 100, restarts: 0 }, t0);
    assert_eq!(kinds(&out), ["spawn"]);
    assert_eq!(out.last(), Some(&Action::SaveRecord));
    assert_eq!(m.on(Input::Tick, t0 + HOUSEKEEPING_DELAY), [Action::Housekeeping]);
    (m, t0)
}

fn request(by: &str) -> KillRequest {
    KillRequest { by: by.into(), detail: None, at: SystemTime::now(), killer: None }
}

fn code(c: i32) -> ExitInfo {
    ExitInfo { code: Some(c), signal: None }
}

fn signal(s: i32) -> ExitInfo {
    ExitInfo { code: None, signal: Some(s) }
}

fn end(oom_kills: u64, own_limit_hit: bool) -> Input {
    Input::RunEnded(RunEnd { oom_kills, own_limit_hit, request: None })
}

/// The journaled event kinds among `actions`, in order.
fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Journal(event) => Some(event.kind().name()),
            _ => None,
        })
        .collect()
}

fn finished(actions: &[Action]) -> Option<&Verdict> {
    actions.iter().find_map(|a| match a {
        Action::Finish(v) => Some(v),
        _ => None,
    })
}

/// The main process exits with its output already closed: the machine asks for the end of
/// the run right away.
fn exit_now(m: &mut Machine, exit: ExitInfo, now: Instant) {
    m.on(Input::OutputClosed, now);
    let out = m.on(Input::MainExited(exit), now);
    assert!(matches!(out[..], [Action::KillRest, Action::EndRun { .. }]), "{out:?}");
}

#[test]
fn housekeeping_waits_until_spawn_has_returned() {
    let t0 = Instant::now();
    let mut m = Machine::new(policy(), t0);
    assert_eq!(m.next_deadline(), Some(t0 + HOUSEKEEPING_DELAY));
    m.on(Input::Started { pid: 100, restarts: 0 }, t0);
    assert!(!m.on(Input::Tick, t0 + HOUSEKEEPING_DELAY / 2).contains(&Action::Housekeeping));
    assert_eq!(m.on(Input::Tick, t0 + HOUSEKEEPING_DELAY), [Action::Housekeeping]);
    assert!(m.on(Input::Tick, t0 + SEC).is_empty(), "once");
    assert_eq!(m.next_deadline(), None, "a run without timeouts sleeps until the kernel has news");
}

#[test]
fn a_soft_timeout_then_a_hard_one_then_the_grace_runs_out() {
    let (mut m, t0) = running(Policy { soft_timeout: Some(10 * SEC), hard_timeout: Some(20 * SEC), ..policy() });
    assert_eq!(m.next_deadline(), Some(t0 + 10 * SEC));
    let out = m.on(Input::Tick, t0 + 10 * SEC);
    assert_eq!(out[0], Action::SignalMain { pid: 100, signal: Signal::SIGUSR1 });
    assert_eq!(kinds(&out), ["soft_timeout"]);
    assert_eq!(m.next_deadline(), Some(t0 + 20 * SEC));
    // The hard timeout: SIGTERM to everyone, answered with how many got it.
    assert_eq!(m.on(Input::Tick, t0 + 20 * SEC), [Action::TermAll(Term::HardTimeout)]);
    let out = m.on(Input::Signalled { why: Term::HardTimeout, count: 3 }, t0 + 20 * SEC);
    assert_eq!(kinds(&out), ["hard_timeout"]);
    assert!(out.contains(&Action::Journal(Event::HardTimeout { signalled: 3, grace_ms: 2000 })), "{out:?}");
    assert_eq!(m.timers().kill_grace, Some(t0 + 22 * SEC));
    let out = m.on(Input::Tick, t0 + 22 * SEC);
    assert_eq!(out.last(), Some(&Action::KillAll));
    // The main process dies of it: the end is a timeout, never restarted.
    exit_now(&mut m, signal(9), t0 + 22 * SEC);
    let out = m.on(end(0, false), t0 + 22 * SEC);
    let v = finished(&out).expect("finished");
    assert_eq!(v.state, AgentState::TimedOut);
    assert_eq!(v.killed_by.as_deref(), Some("timeout"));
    assert!(m.done());
}

#[test]
fn an_exit_before_the_soft_timeout_disarms_every_run_timer() {
    let (mut m, t0) = running(Policy { soft_timeout: Some(10 * SEC), hard_timeout: Some(20 * SEC), ..policy() });
    exit_now(&mut m, code(0), t0 + SEC);
    assert_eq!(m.next_deadline(), None);
    assert!(m.on(Input::Tick, t0 + 30 * SEC).is_empty(), "no timeout after the end");
    let v = finished(&m.on(end(0, false), t0 + SEC)).cloned().expect("finished");
    assert_eq!(v.state, AgentState::Exited);
}

#[test]
fn a_kill_request_stops_the_agent_for_good_and_names_the_killer() {
    let (mut m, t0) = running(Policy { restart: RestartPolicy::OnFailure, hard_timeout: Some(20 * SEC), ..policy() });
    // The killer signals the processes itself: the supervisor only notes who asked.
    let out = m.on(Input::StopSignal { request: Some(request("user")) }, t0 + SEC);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(m.stopping(), Some(&Stop::Requested(request_at(&m))));
    // A second signal changes nothing.
    assert!(m.on(Input::StopSignal { request: None }, t0 + SEC).is_empty());
    exit_now(&mut m, signal(15), t0 + 2 * SEC);
    let out = m.on(end(0, false), t0 + 2 * SEC);
    let v = finished(&out).expect("no restart after a kill");
    assert_eq!(v.state, AgentState::Killed);
    assert_eq!(v.cause, "killed by user");
    assert!(!kinds(&out).contains(&"restart_scheduled"));
}

/// The request the machine holds (its `at` is the one the test made).
fn request_at(m: &Machine) -> KillRequest {
    match m.stopping() {
        Some(Stop::Requested(r)) => r.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stop_signal_without_a_request_terminates_gracefully_then_kills() {
    let (mut m, t0) = running(policy());
    let out = m.on(Input::StopSignal { request: None }, t0 + SEC);
    assert_eq!(out, [Action::TermAll(Term::ToldToStop)]);
    let out = m.on(Input::Signalled { why: Term::ToldToStop, count: 2 }, t0 + SEC);
    assert_eq!(out, [Action::Note("supervisor told to stop: sent SIGTERM to 2 process(es)".into())]);
    assert_eq!(m.next_deadline(), Some(t0 + 3 * SEC));
    assert_eq!(m.on(Input::Tick, t0 + 3 * SEC).last(), Some(&Action::KillAll));
    exit_now(&mut m, signal(9), t0 + 3 * SEC);
    let v = finished(&m.on(end(0, false), t0 + 3 * SEC)).cloned().expect("finished");
    assert_eq!((v.state, v.killed_by.as_deref()), (AgentState::Killed, Some("supervisor-signal")));
}

/// Ends the run of `m` with a request by `by` found on file; returns the verdict.
fn ended_with_a_request_on_file(mut m: Machine, t: Instant, by: &str) -> Verdict {
    exit_now(&mut m, signal(15), t);
    let ended = RunEnd { oom_kills: 0, own_limit_hit: false, request: Some(request(by)) };
    finished(&m.on(Input::RunEnded(ended), t)).cloned().expect("finished, no restart")
}

#[test]
fn a_request_found_at_the_end_of_a_run_counts_though_no_signal_came() {
    let (m, t0) = running(Policy { restart: RestartPolicy::OnFailure, ..policy() });
    let v = ended_with_a_request_on_file(m, t0 + SEC, "relief");
    assert_eq!((v.state, v.killed_by.as_deref()), (AgentState::Killed, Some("relief")));
    // It names the killer of an agent whose supervisor was also told to stop.
    let (mut m, t0) = running(policy());
    m.on(Input::StopSignal { request: None }, t0 + SEC);
    let v = ended_with_a_request_on_file(m, t0 + SEC, "user");
    assert_eq!((v.state, v.killed_by.as_deref()), (AgentState::Killed, Some("user")));
}

#[test]
fn a_crash_restarts_after_a_doubling_backoff() {
    let (mut m, t0) = running(Policy { restart: RestartPolicy::OnFailure, crash_loop_after: 10, ..policy() });
    let mut now = t0;
    for (run, delay) in [(1u32, SEC), (2, 2 * SEC), (3, 4 * SEC)] {
        now += Duration::from_millis(10);
        exit_now(&mut m, code(1), now);
        let out = m.on(end(0, false), now);
        assert_eq!(out[0], Action::RecordRun { exit: code(1), oom_kills: 0 });
        assert_eq!(out[1], Action::RecordWaiting { delay, cause: "exited with code 1".into() });
        assert_eq!(kinds(&out), ["restart_scheduled"]);
        assert!(finished(&out).is_none());
        assert_eq!(m.timers().restart_backoff, Some(now + delay));
        assert!(m.on(Input::Tick, now + delay / 2).is_empty(), "waits out the backoff");
        now += delay;
        // The backoff is over: a last look for a kill request, then the restart.
        assert_eq!(m.on(Input::Tick, now), [Action::ReadKillRequest]);
        assert_eq!(m.on(Input::KillRequestOnFile(None), now), [Action::StartRun { restarts: run }]);
        let out = m.on(Input::Started { pid: 100 + run as i32, restarts: run }, now);
        assert_eq!(kinds(&out), ["restart"]);
        assert_eq!(m.main_pid(), Some(100 + run as i32));
    }
}

#[test]
fn a_crash_loop_gives_up() {
    let (mut m, t0) = running(Policy { restart: RestartPolicy::OnFailure, crash_loop_after: 3, ..policy() });
    let mut now = t0;
    for run in 1..=2u32 {
        exit_now(&mut m, code(2), now);
        m.on(end(0, false), now);
        now = m.timers().restart_backoff.expect("backing off");
        m.on(Input::Tick, now);
        m.on(Input::KillRequestOnFile(None), now);
        m.on(Input::Started { pid: 200, restarts: run }, now);
    }
    exit_now(&mut m, code(2), now);
    let out = m.on(end(0, false), now);
    assert_eq!(kinds(&out), ["crash_loop"]);
    let v = finished(&out).expect("gave up");
    assert_eq!(v.state, AgentState::CrashLoop);
    assert!(v.cause.starts_with("crash loop: 3 failures within"), "{}", v.cause);
    assert!(m.done());
    assert_eq!(m.next_deadline(), None);
}

/// A machine restarting on failure whose first run exited with code 1 at the returned
/// instant: it waits out a 1 s backoff.
fn backing_off() -> (Machine, Instant) {
    let (mut m, t0) = running(Policy { restart: RestartPolicy::OnFailure, ..policy() });
    exit_now(&mut m, code(1), t0);
    m.on(end(0, false), t0);
    assert_eq!(m.timers().restart_backoff, Some(t0 + SEC));
    (m, t0)
}

#[test]
fn a_kill_during_the_backoff_ends_it_without_a_restart() {
    let (mut m, t0) = backing_off();
    let out = m.on(Input::StopSignal { request: Some(request("user")) }, t0 + Duration::from_millis(100));
    let v = finished(&out).expect("ended at once");
    assert_eq!((v.state, v.cause.as_str()), (AgentState::Killed, "killed by user"));
    assert!(!out.iter().any(|a| matches!(a, Action::StartRun { .. } | Action::TermAll(_))));
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn a_request_on_file_when_the_backoff_ends_stops_the_restart() {
    let (mut m, t0) = backing_off();
    assert_eq!(m.on(Input::Tick, t0 + SEC), [Action::ReadKillRequest]);
    let out = m.on(Input::KillRequestOnFile(Some(request("watch"))), t0 + SEC);
    assert_eq!(finished(&out).map(|v| v.state), Some(AgentState::Killed));
    assert!(!out.iter().any(|a| matches!(a, Action::StartRun { .. })));
}

#[test]
fn a_failed_restart_keeps_the_verdict_of_the_run_before() {
    let (mut m, t0) = backing_off();
    m.on(Input::Tick, t0 + SEC);
    m.on(Input::KillRequestOnFile(None), t0 + SEC);
    let out = m.on(Input::StartFailed { error: "no such file".into(), request: None }, t0 + SEC);
    assert_eq!(kinds(&out), ["restart_failed"]);
    assert!(out.contains(&Action::RemoveCgroup));
    assert_eq!(finished(&out).map(|v| v.state), Some(AgentState::Failed));
}

#[test]
fn a_kill_while_a_restart_fails_names_the_killer() {
    let (mut m, t0) = backing_off();
    m.on(Input::Tick, t0 + SEC);
    m.on(Input::KillRequestOnFile(None), t0 + SEC);
    let out = m.on(Input::StartFailed { error: "no such file".into(), request: Some(request("user")) }, t0 + SEC);
    assert_eq!(kinds(&out), ["restart_failed"]);
    let verdict = finished(&out).expect("finished");
    assert_eq!((verdict.state, verdict.killed_by.as_deref()), (AgentState::Killed, Some("user")));
}

#[test]
fn a_start_failure_outside_a_restart_is_ignored() {
    let (mut m, t0) = backing_off();
    assert!(m.on(Input::StartFailed { error: "late".into(), request: None }, t0).is_empty());
    assert_eq!(m.on(Input::Tick, t0 + SEC), [Action::ReadKillRequest], "still backing off");
}

/// Plays an OOM notification and counter readings until the machine decides.
fn oom_window(m: &mut Machine, t: Instant, kills: impl Fn(Instant) -> u64) -> Vec<Action> {
    assert!(m.on(Input::OomNotified, t).contains(&Action::ReadOomCounter), "read at once");
    let mut now = t;
    let mut out = m.on(Input::OomCounter(Some(kills(now))), now);
    while out.is_empty() {
        now = m.timers().oom_check.expect("a reading is scheduled");
        assert_eq!(m.on(Input::Tick, now), [Action::ReadOomCounter]);
        out = m.on(Input::OomCounter(Some(kills(now))), now);
    }
    assert_eq!(m.timers().oom_check, None, "decided");
    out
}

#[test]
fn an_oom_at_its_own_limit_kills_the_whole_agent_and_may_restart() {
    let (mut m, t0) = running(Policy { restart: RestartPolicy::OnFailure, ..policy() });
    // The kernel notifies before it kills: the counter rises a moment later.
    let t = t0 + SEC;
    let out = oom_window(&mut m, t, |now| u64::from(now >= t + Duration::from_millis(3)));
    assert_eq!(out.last(), Some(&Action::KillAll));
    exit_now(&mut m, signal(9), t + SEC);
    let out = m.on(end(1, true), t + SEC);
    assert_eq!(kinds(&out), ["oom_kill", "restart_scheduled"]);
    let Some(Action::RecordWaiting { cause, .. }) = out.get(2) else { panic!("{out:?}") };
    assert!(cause.contains("at its 64.0 MiB memory limit"), "{cause}");
}

#[test]
fn a_bystander_hearing_of_an_oom_above_it_runs_on() {
    let (mut m, t0) = running(policy());
    let t = t0 + SEC;
    let out = oom_window(&mut m, t, |_| 0);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(matches!(&out[0], Action::Note(n) if n.contains("victim was elsewhere")), "{out:?}");
    assert_eq!(m.main_pid(), Some(100), "still running");
    assert_eq!(m.next_deadline(), None);
    // An unreadable counter reads as unchanged, never as a kill.
    assert!(!oom_window(&mut m, t + 10 * SEC, |_| 0).contains(&Action::KillAll));
    m.on(Input::OomNotified, t + 20 * SEC);
    assert!(!m.on(Input::OomCounter(None), t + 20 * SEC).contains(&Action::KillAll));
}

#[test]
fn an_oom_kill_from_above_is_named_so() {
    let (mut m, t0) = running(policy());
    exit_now(&mut m, signal(9), t0 + SEC);
    let out = m.on(end(1, false), t0 + SEC);
    let v = finished(&out).expect("finished");
    assert_eq!(v.state, AgentState::OomKilled);
    assert!(v.cause.contains("below its own"), "{}", v.cause);
}

#[test]
fn output_closed_while_the_process_lives_changes_nothing_but_the_pipe() {
    let (mut m, t0) = running(Policy { hard_timeout: Some(20 * SEC), ..policy() });
    assert!(m.wants_output());
    assert!(m.on(Input::OutputClosed, t0 + SEC).is_empty());
    assert!(!m.wants_output(), "no more polling a pipe at EOF");
    assert_eq!(m.main_pid(), Some(100), "the process lives on");
    assert_eq!(m.next_deadline(), Some(t0 + 20 * SEC), "its timers too");
    assert!(m.on(Input::Tick, t0 + 10 * SEC).is_empty());
    // Its end needs no output drain.
    let out = m.on(Input::MainExited(code(0)), t0 + 15 * SEC);
    assert_eq!(out, [Action::KillRest, Action::EndRun { kills_seen: 0 }]);
}

#[test]
fn after_the_main_process_the_output_drains_until_eof_or_the_deadline() {
    let (mut m, t0) = running(policy());
    assert_eq!(m.on(Input::MainExited(code(0)), t0), [Action::KillRest]);
    assert!(m.wants_output() && !m.wants_oom());
    assert_eq!(m.main_pid(), None);
    assert_eq!(m.on(Input::OutputClosed, t0), [Action::EndRun { kills_seen: 0 }]);
    // A writer that keeps the pipe open (a daemonized grandchild) is not waited for.
    let (mut m, t0) = running(policy());
    m.on(Input::MainExited(code(0)), t0 + SEC);
    assert_eq!(m.next_deadline(), Some(t0 + SEC + OUTPUT_DRAIN));
    assert_eq!(m.on(Input::Tick, t0 + SEC + OUTPUT_DRAIN), [Action::EndRun { kills_seen: 0 }]);
}

#[test]
fn an_exit_while_stopping_is_recorded_as_the_stop_and_never_restarted() {
    // Told to stop with no request: the agent exits on its own during the grace period.
    let (mut m, t0) = running(Policy { restart: RestartPolicy::OnFailure, ..policy() });
    m.on(Input::StopSignal { request: None }, t0);
    m.on(Input::Signalled { why: Term::ToldToStop, count: 1 }, t0);
    exit_now(&mut m, code(1), t0 + SEC);
    assert_eq!(m.timers().kill_grace, None, "no kill after the end");
    let out = m.on(end(0, false), t0 + SEC);
    assert_eq!(finished(&out).map(|v| v.state), Some(AgentState::Killed));
    assert!(!kinds(&out).contains(&"restart_scheduled"));
    // A stop signal while the run's end is under way still prevents the restart.
    let (mut m, t0) = running(Policy { restart: RestartPolicy::OnFailure, ..policy() });
    exit_now(&mut m, code(1), t0);
    assert!(m.on(Input::StopSignal { request: Some(request("user")) }, t0).is_empty(), "nothing left to stop");
    let out = m.on(end(0, false), t0);
    assert_eq!(finished(&out).map(|v| v.killed_by.clone()), Some(Some("user".into())));
}

#[test]
fn inputs_that_come_late_are_ignored() {
    let (mut m, t0) = running(policy());
    exit_now(&mut m, code(0), t0);
    assert!(m.on(Input::MainExited(code(1)), t0).is_empty(), "reaped once");
    assert!(m.on(Input::OomNotified, t0).is_empty());
    assert_eq!(m.timers().oom_check, None, "no OOM watch after the run");
    m.on(end(0, false), t0);
    assert!(m.done());
    assert!(m.on(end(0, false), t0).is_empty(), "the end is recorded once");
    // A run that ended before the housekeeping was due: none after the end.
    let t0 = Instant::now();
    let mut m = Machine::new(policy(), t0);
    m.on(Input::Started { pid: 100, restarts: 0 }, t0);
    exit_now(&mut m, code(0), t0);
    m.on(end(0, false), t0);
    assert_eq!(m.next_deadline(), None);
    assert!(m.on(Input::Tick, t0 + SEC).is_empty());
}

/// Stalls: 50 % over 4 s windows, for 10 s.
fn stalling(signal: Option<Signal>, kill: bool) -> Policy {
    let stall = messages::StallPolicy { threshold_percent: 50, after: 10 * SEC, window: 4 * SEC, signal, kill };
    Policy { stall: Some(stall), ..policy() }
}

#[test]
fn triggers_that_keep_coming_for_the_configured_time_are_one_stall() {
    let (mut m, t0) = running(stalling(Some(Signal::SIGUSR2), false));
    assert!(m.wants_pressure());
    // The first trigger speaks of the 4 s before it: the stall is due 10 s after those began.
    m.on(Input::PressureTriggered, t0 + 10 * SEC);
    assert_eq!(m.timers().stall_due, Some(t0 + 16 * SEC));
    assert!(kinds(&m.on(Input::PressureTriggered, t0 + 14 * SEC)).is_empty());
    let out = m.on(Input::Tick, t0 + 16 * SEC);
    assert_eq!(kinds(&out), ["stall"]);
    assert!(out.contains(&Action::RecordStalled(Some(10 * SEC))));
    assert!(out.contains(&Action::SignalMain { pid: 100, signal: Signal::SIGUSR2 }));
    assert!(!out.contains(&Action::KillAll), "only marked");
    match out.iter().find(|a| matches!(a, Action::Journal(_))) {
        Some(Action::Journal(Event::Stall { threshold_percent: 50, after_ms: 10_000, signal, kill: false })) => {
            assert_eq!(signal.as_deref(), Some("SIGUSR2"))
        }
        other => panic!("{other:?}"),
    }
    // Still stalled: no second event. Then silence for two windows: eased, unmarked.
    for s in [18, 22] {
        assert!(kinds(&m.on(Input::PressureTriggered, t0 + s * SEC)).is_empty());
    }
    let eased = m.on(Input::Tick, t0 + 22 * SEC + 8 * SEC + SEC);
    assert!(eased.contains(&Action::RecordStalled(None)), "{eased:?}");
    assert_eq!((m.timers().stall_due, m.timers().stall_eased), (None, None));
    // A new run of triggers is a new stall, with its own event.
    m.on(Input::PressureTriggered, t0 + 40 * SEC);
    assert_eq!(kinds(&m.on(Input::Tick, t0 + 46 * SEC)), ["stall"]);
}

#[test]
fn pressure_that_eases_before_the_time_is_no_stall() {
    let (mut m, t0) = running(stalling(None, true));
    m.on(Input::PressureTriggered, t0 + 10 * SEC);
    // No trigger for two windows and a second: over before it was due.
    let out = m.on(Input::Tick, t0 + 10 * SEC + 9 * SEC);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn a_stall_kill_ends_the_run_stalled_and_restartable() {
    let (mut m, t0) = running(Policy { restart: RestartPolicy::OnFailure, ..stalling(None, true) });
    m.on(Input::PressureTriggered, t0 + 4 * SEC);
    m.on(Input::PressureTriggered, t0 + 8 * SEC);
    let out = m.on(Input::Tick, t0 + 10 * SEC);
    assert_eq!(kinds(&out), ["stall"]);
    assert_eq!(out.last(), Some(&Action::KillAll));
    exit_now(&mut m, signal(9), t0 + 10 * SEC);
    let out = m.on(end(0, false), t0 + 10 * SEC);
    assert_eq!(kinds(&out), ["restart_scheduled"], "stalled is a restartable end");
    assert!(
        matches!(&out[..], [Action::RecordRun { .. }, Action::RecordWaiting { cause, .. }, ..] if cause.starts_with("stalled on memory")),
        "{out:?}"
    );
}

#[test]
fn triggers_are_not_listened_to_between_runs_or_without_a_watch() {
    let (mut m, t0) = running(policy());
    assert!(!m.wants_pressure());
    assert!(m.on(Input::PressureTriggered, t0 + SEC).is_empty());
    let (mut m, t0) = running(stalling(None, false));
    exit_now(&mut m, code(1), t0 + SEC);
    assert!(!m.wants_pressure());
    m.on(Input::PressureTriggered, t0 + 2 * SEC);
    assert_eq!(m.timers().stall_due, None);
}
