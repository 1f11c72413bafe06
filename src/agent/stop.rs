//! Stopping an agent: the one path `kill`, `spawn --wait`'s Ctrl-C (and later relief and the
//! watcher) share. The cgroup is the truth, so this works whether or not the agent's
//! supervisor is alive: SIGTERM to every process, a grace period, `cgroup.kill`, then a
//! check that the cgroup is empty. A live supervisor then records the end itself; for an
//! orphan, this records it.

use crate::{agent::view, context::Ctx};
use anyhow::{Context, Result, bail};
use fleet_core::{
    cgroup::KILL_SETTLE,
    event::{Event, Exit},
    id::AgentId,
    journal,
    lock::HeldLocks,
    procs::ProcessRef,
    state::{AgentState, KillRequest},
};
use nix::sys::signal::Signal;
use std::{
    fs::OpenOptions,
    time::{Duration, Instant, SystemTime},
};

/// How long to wait for a live supervisor to record the end after its agent is gone.
const SUPERVISOR_FINISH: Duration = Duration::from_secs(10);

/// Who is stopping the agent, and how.
#[derive(Debug, Clone)]
pub struct StopRequest {
    /// `user`, `relief`, `watch`.
    pub by: String,
    /// Extra words for the cause.
    pub detail: Option<String>,
    /// SIGTERM-to-kill grace.
    pub grace: Duration,
    /// Skip SIGTERM and grace.
    pub force: bool,
}

/// What stopping found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Processes were running and are now gone.
    Killed {
        /// Whether the grace ran out (or `--force`) and `cgroup.kill` was needed.
        sigkilled: bool,
        /// The state recorded for it.
        state: AgentState,
    },
    /// Nothing was running.
    AlreadyEnded {
        /// Its recorded state (none for a bare `cgroup-create` cgroup).
        state: Option<AgentState>,
        /// Its recorded cause.
        cause: Option<String>,
    },
}

/// Stops agent `id`; `Ok(None)` when there is no such agent.
pub fn stop_agent(ctx: &Ctx, id: &AgentId, req: &StopRequest) -> Result<Option<Stopped>> {
    if !crate::agent::exists(ctx, id) {
        return Ok(None);
    }
    let cgroup = ctx.fleet.agent(id);
    let agent_dir = ctx.dirs.agent_dir(id);
    // Killers of one agent take turns, so two operators (or kill and relief) never both
    // report the same kill; the second finds the agent already ended. A `spawn` of the id
    // takes the same turn while it starts a run (and refuses while a killer has it).
    std::fs::create_dir_all(&agent_dir).with_context(|| format!("cannot create {}", agent_dir.display()))?;
    let kill_lock = open_stop_turn(ctx, id)?;
    kill_lock.lock().with_context(|| format!("cannot lock {}", ctx.dirs.kill_lock_path(id).display()))?;

    let before = view::load_one(ctx, id)?;
    if let Some(why) = before.as_ref().and_then(|v| v.record_error.as_deref()) {
        crate::agent::unreadable::name_once(id, why);
    }
    let populated = cgroup.exists() && cgroup.populated().unwrap_or(false);
    let supervised = live(before.as_ref());
    if !populated && !supervised {
        return Ok(Some(settle_unsupervised(ctx, id, before, req)?));
    }

    let request =
        KillRequest { by: req.by.clone(), detail: req.detail.clone(), at: SystemTime::now(), killer: ctx.me() };
    if let Err(e) = request.save(&ctx.dirs.kill_request_path(id)) {
        // A full state dir must not stop a kill, least of all relief's. The supervisor,
        // signalled below, still stops for good (no restart); its record then says it was
        // told to stop rather than by whom.
        let e = anyhow::Error::from(e);
        eprintln!("fleetctl: {id}: cannot record who asked for the kill ({e:#}); killing it anyway");
    }
    // A supervisor waiting to restart has no process to notice the kill through; a signal
    // wakes it, and the request tells it not to restart.
    if let Some(sup) = before.as_ref().and_then(|v| v.record.supervisor)
        && sup.is_alive(&ctx.proc_root)
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup.pid), Signal::SIGTERM);
    }

    let mut sigkilled = req.force;
    if populated {
        if !req.force {
            cgroup.signal_all(Signal::SIGTERM)?;
            sigkilled = !cgroup.wait_empty(req.grace)?;
        }
        if sigkilled {
            cgroup.kill()?;
        }
        if !cgroup.wait_empty(KILL_SETTLE)? {
            bail!(
                "{id}: {} process(es) are still in {} after cgroup.kill; they may be stuck in the kernel (D state)",
                cgroup.procs().map(|p| p.len()).unwrap_or(0),
                cgroup.unified.display()
            );
        }
    }

    let ours = before.as_ref().and_then(|v| v.record.supervisor);
    if supervised {
        wait_for_supervisor(ctx, id, ours);
    }
    crate::failpoint::hit(crate::failpoint::KILL_AFTER_SUPERVISOR);
    let after = view::load_one(ctx, id)?;
    if ours.is_some() && after.as_ref().is_some_and(|v| v.record.supervisor != ours) {
        // Once our run's supervisor had recorded its end and let go of the id, a new run of
        // the id started (another operator's spawn). Ours is done; the cgroup is the new
        // run's now and is not ours to remove.
        return Ok(Some(Stopped::Killed { sigkilled, state: AgentState::Killed }));
    }
    if live(after.as_ref()) {
        // Its processes are gone (checked above); the record is its live supervisor's to
        // write, which on a full disk waits for room. The kill itself is done.
        eprintln!(
            "fleetctl: {id}: ended, but its supervisor has not recorded the end within {}s; it records it once the state and log disks have room",
            SUPERVISOR_FINISH.as_secs()
        );
        return Ok(Some(Stopped::Killed { sigkilled, state: AgentState::Killed }));
    }
    // An orphan (or a supervisor that died meanwhile) leaves the bookkeeping to us.
    let state = match after {
        Some(v) if v.record.state.is_terminal() => v.record.state,
        other => {
            // Its supervisor could not record the end either (a full disk), or was gone.
            if let Err(e) = record_end(ctx, id, other, req, AgentState::Killed, "killed while its supervisor was gone")
            {
                eprintln!("fleetctl: {id}: killed, but its end is not recorded: {e:#}");
            }
            AgentState::Killed
        }
    };
    cgroup.remove()?;
    Ok(Some(Stopped::Killed { sigkilled, state }))
}

/// Opens agent `id`'s stopping turn ([`fleet_core::paths::Dirs::kill_lock_path`]), for the
/// caller to lock: killers wait for it, `spawn` only tries.
pub fn open_stop_turn(ctx: &Ctx, id: &AgentId) -> Result<std::fs::File> {
    let path = ctx.dirs.kill_lock_path(id);
    fleet_core::lock::open_private(&mut OpenOptions::new(), &path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Whether `view` is a run that has not ended and has a supervisor. An ended record's id may
/// still have its lock held: by its supervisor on the way out, or by a new `spawn` of the
/// id, which a killer's turn makes refuse before it touches the cgroup.
fn live(view: Option<&view::AgentView>) -> bool {
    view.is_some_and(|v| v.supervised && !v.record.state.is_terminal())
}

/// Nothing runs and nobody supervises: an ended agent, or an orphan whose processes are gone.
fn settle_unsupervised(ctx: &Ctx, id: &AgentId, before: Option<view::AgentView>, req: &StopRequest) -> Result<Stopped> {
    let cgroup = ctx.fleet.agent(id);
    cgroup.remove()?;
    match before {
        // Nothing runs, nobody holds it, and its record cannot say how it ended.
        Some(v) if v.record_error.is_some() => Ok(Stopped::AlreadyEnded {
            state: None,
            cause: v.record_error.map(|why| format!("{why}; nothing runs in its cgroup")),
        }),
        Some(v) if v.record.state.is_terminal() => {
            Ok(Stopped::AlreadyEnded { state: Some(v.record.state), cause: v.record.cause })
        }
        None => {
            Ok(Stopped::AlreadyEnded { state: None, cause: Some("no agent record; removed its empty cgroup".into()) })
        }
        other => {
            record_end(ctx, id, other.clone(), req, AgentState::Failed, UNOBSERVED)?;
            Ok(Stopped::AlreadyEnded { state: Some(AgentState::Failed), cause: Some(UNOBSERVED.into()) })
        }
    }
}

/// Records the end of a run whose supervisor died and whose processes are gone, if its
/// record still says it runs, and journals the supervisor's death if no command has yet.
/// The caller holds the id's lock (so no supervisor of it lives and no spawn starts) and its
/// stop turn (so no `kill` records the same end), and has seen the cgroup empty: `spawn`,
/// before the new run's record replaces the old one, and `gc`. A record that cannot be read
/// is left alone. Returns whether there was an end to record.
pub fn record_unobserved_end(ctx: &Ctx, id: &AgentId) -> Result<bool> {
    let Ok(Some(record)) = fleet_core::state::AgentRecord::load(&ctx.dirs.state_path(id)) else { return Ok(false) };
    if record.state.is_terminal() {
        return Ok(false);
    }
    if let Some(supervisor) = record.supervisor {
        crate::agent::deaths::note(ctx, &record, supervisor, false);
    }
    let cause = if record.started_at.is_some() { UNOBSERVED } else { NEVER_STARTED };
    let view = view::reconcile(Box::new(record), false);
    let req = StopRequest { by: "spawn".into(), detail: None, grace: Duration::ZERO, force: true };
    record_end(ctx, id, Some(view), &req, AgentState::Failed, cause)?;
    Ok(true)
}

/// The cause of a run that ended while nobody watched.
pub const UNOBSERVED: &str = "ended unobserved after its supervisor died; exit status unknown";
/// The cause of a run whose spawn or supervisor died before its command started.
const NEVER_STARTED: &str = "its spawn or supervisor died before the agent started";

/// Writes the final record and journal event for an agent nobody else will record.
fn record_end(
    ctx: &Ctx,
    id: &AgentId,
    view: Option<view::AgentView>,
    req: &StopRequest,
    state: AgentState,
    cause: &str,
) -> Result<()> {
    let killed_by = (state == AgentState::Killed).then(|| req.by.clone());
    let record_error = view.as_ref().and_then(|v| v.record_error.clone());
    // A run that never started (its spawn died first) has no `spawn` event, so it gets no
    // `exit` either: the journal pairs them, and the record alone says what happened.
    let started = view.as_ref().is_none_or(|v| v.record_error.is_some() || v.record.started_at.is_some());
    let mut exit = started.then(|| Exit { record_error, ..Exit::unsupervised(state, killed_by.as_deref(), cause) });
    // A run whose supervisor is known ends once per that supervisor, whoever writes it: a
    // reader may have journaled its unobserved end already (`deaths`).
    let run = view.as_ref().filter(|v| v.record_error.is_none()).and_then(|v| Some((&v.record, v.record.supervisor?)));
    if let Some((record, supervisor)) = run
        && let Some(end) = exit.take()
    {
        crate::agent::deaths::journal_end(ctx, record, supervisor, end)?;
    }
    // The supervisor that would have removed the scratch dir is gone; its tmpfs pages would
    // otherwise stay charged to the host.
    if let Some(dir) = view.as_ref().and_then(|v| v.record.scratch.as_deref()) {
        let _ = fleet_core::paths::remove_dir_tree(dir);
    }
    match view {
        Some(v) if v.record_error.is_none() => {
            let mut record = *v.record;
            let cause = match (&killed_by, &req.detail) {
                (Some(by), Some(d)) => format!("killed by {by} ({d}) while its supervisor was gone"),
                (Some(by), None) => format!("killed by {by} while its supervisor was gone"),
                _ => cause.to_string(),
            };
            crate::agent::ending::close(&mut record, state, cause, killed_by);
            crate::agent::ending::write(&ctx.dirs, &record, &mut exit)?;
        }
        // No record to write from: none, or one that cannot be read (the unreadable file
        // stays, for the operator to read, and `status` keeps naming it). The journal has
        // the end.
        _ => {
            if let Some(end) = exit {
                journal::append(&ctx.dirs.journal_path(), id, &Event::Exit(end))?;
            }
        }
    }
    Ok(())
}

/// Waits until the agent's supervisor has recorded the end and exited: its process is gone
/// (its pid and start time, not `/proc/locks`, which can skip a held lock while others are
/// released; see `view::is_supervised`), or, for a spawn still in progress, its lock is free.
fn wait_for_supervisor(ctx: &Ctx, id: &AgentId, supervisor: Option<ProcessRef>) {
    // With the supervisor known, wait for that process alone (the kernel wakes us when it
    // exits): the lock may already belong to a new run of the id that another operator
    // spawned the moment ours ended.
    if let Some(s) = supervisor {
        s.wait_exit(&ctx.proc_root, SUPERVISOR_FINISH);
        return;
    }
    let lock = ctx.dirs.lock_path(id);
    let deadline = Instant::now() + SUPERVISOR_FINISH;
    while HeldLocks::read(&ctx.proc_root).contains(&lock) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
