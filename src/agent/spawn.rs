//! Starting an agent, for `spawn` and `restart`: validate everything, check memory, take the
//! id's lock, make the cgroup, and hand all of it to a detached supervisor; return once the
//! command has been exec'd inside its cgroup. A failure at any step undoes the earlier ones.

use crate::out::outln;
use crate::{
    agent::{
        admission, attach,
        contain::Containment,
        leases::{self, Workspace},
        plan::SupervisorPlan,
        queue::Line,
        stop, view,
    },
    context::Ctx,
    exit::{Exit, Fail},
    supervisor::handoff::Starting,
};
use anyhow::{Context, Result};
use fleet_cli::{RestartArg, SpawnArgs, Timeout};
use fleet_core::{
    cgroup::Cgroup,
    id::AgentId,
    lock::{Lock, read_holder},
    size::{Limit, format_iec},
    state::{AgentRecord, AgentState, RestartPolicy, SpawnSettings},
    timefmt::human_duration,
};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Entry point.
pub fn run(ctx: &Ctx, args: SpawnArgs) -> Result<Exit> {
    start(ctx, args, false)
}

/// Starts the agent `args` describe; `replaces_run`: a restart of it, whose old run is
/// stopped, which does not wait its turn behind the line (see [`admission::Rules`]).
pub fn start(ctx: &Ctx, args: SpawnArgs, replaces_run: bool) -> Result<Exit> {
    let (mut plan, workspace) = make_plan(ctx, &args)?;
    crate::systemd::scope::require(ctx)?;
    let mut contained =
        Containment::resolve(ctx, &args, &workspace, plan.scratch.as_deref().unwrap_or(Path::new("/")))?;
    // Before admission, which records its decision in the state dir.
    room_to_record(ctx)?;
    let rules = admission::Rules {
        threshold: args.spawn_threshold.unwrap_or(ctx.spawn_threshold()),
        max_agents: args.max_agents.or(ctx.thresholds.max_agents),
        memory_reserve: args.memory_reserve,
        replaces_run,
    };
    let mut line = args.queue.map(|timeout| Line::new(ctx, &plan.id, &plan.labels, timeout));
    // Round again only for a queued spawn whose lease pool is exhausted: it waits in line.
    let (admitted, lock, stop_turn, mut undo, taken) = loop {
        let admitted = admission::admit(ctx, &plan.id, &plan.limits, rules, line.as_mut())?;
        if line.as_ref().is_some_and(Line::joined) {
            crate::failpoint::hit(crate::failpoint::QUEUE_ADMITTED);
        }
        if let Some(warning) = admission::limit_above_budget(ctx, &args.limits, &plan.limits, &admitted.budget) {
            eprintln!("fleetctl: {}: {warning}", plan.id);
        }
        let (lock, stop_turn) = claim_id(ctx, &plan)?;
        // A previous run whose supervisor died and whose processes are gone ended unobserved:
        // its end goes in the journal before this run's record replaces it.
        stop::record_unobserved_end(ctx, &plan.id)?;
        let undo = Undo { ctx, id: &plan.id, cgroup: &plan.cgroup, scratch: plan.scratch.clone(), armed: true };
        // Leases after the id's lock: a refused duplicate must not take a slot even for a moment.
        let ports = args.ports.map(|n| (n, args.port_range.unwrap_or(ctx.agent.port_range)));
        // `--user auto`'s uid with them: a queued spawn waits for it in line as for a slot.
        let taken = leases::take(ctx, &workspace, ports, contained.exclusive_slot())
            .and_then(|mut taken| contained.lease_uid(ctx, &mut taken).map(|()| taken));
        match (taken, line.as_mut()) {
            (Err(e), Some(line)) if crate::exit::exit_for(&e) == Exit::Refused => {
                drop((undo, stop_turn, lock, admitted));
                line.wait_for_pool(e)?;
            }
            (taken, _) => {
                let taken = taken.inspect_err(|e| admission::note_pool_refusal(ctx, &plan.id, e))?;
                break (admitted, lock, stop_turn, undo, taken);
            }
        }
    };
    if let Some(line) = line {
        line.admitted();
        crate::failpoint::hit(crate::failpoint::QUEUE_LEFT);
        // Checked before it waited; the fleet's scope may have been stopped since.
        crate::systemd::scope::require(ctx)?;
    }
    plan.workspace = taken.workspace;
    plan.slot = taken.slot.as_ref().map(|(_, name)| name.clone());
    plan.ports = taken.ports;
    (plan.credentials, plan.env, plan.cwd) = contained.settle(&args, &plan.workspace, plan.scratch.as_deref())?;
    plan.has_leases = taken.leases.is_some();
    let record = AgentRecord {
        memory_reserve: admission::lasting_reserve(ctx, &plan.limits, rules),
        ..contained.annotate(first_record(ctx, &plan), &args)
    };
    // The supervisor sets itself up while this process makes the cgroup (see `handoff`).
    // Declared after `undo`, so on an error it is dropped first: stopped and reaped before
    // the undo removes what it would have used.
    // The fleet's subtree first (once): the supervisor may join its `supervisors/` at once.
    if !ctx.fleet.is_complete() {
        crate::systemd::scope::make_fleet_root(ctx, false)?;
    }
    let supervisor = Starting::fork(&plan, record.clone(), &lock, taken.leases.as_ref())?;
    crate::systemd::scope::track(ctx, supervisor.pid())?;
    make_cgroup(&plan)?;
    supervisor.cgroup_made();
    prepare(ctx, &plan, &record)?;
    contained.hand_over(&plan)?;
    crate::failpoint::hit(crate::failpoint::SPAWN_AFTER_CGROUP);
    // Before the go: once the agent may run, its reservation must not end with this process.
    admitted.hand_to_supervisor(supervisor.pid())?;
    // After the supervisor's fork (the handler's thread is not for it to inherit) and before
    // the go, from which on the agent may be running.
    let presses = args.wait.then(attach::count_ctrl_c).transpose()?;
    let (supervisor_pid, pid) = supervisor.go().map_err(|e| anyhow::anyhow!("{}: {e:#}", plan.id))?;
    crate::failpoint::hit(crate::failpoint::SPAWN_AFTER_GO);
    undo.armed = false;
    admitted.started();
    drop(lock); // the supervisor holds it now, and the leases
    drop(stop_turn);
    let printed = match args.json {
        true => outln!("{}", started_json(ctx, &plan, supervisor_pid.as_raw(), pid)),
        false => outln!("{}", started_line(&plan, pid)),
    };
    // The agent runs whether or not its line could be printed: say so in the error.
    printed.with_context(|| format!("{} started (pid {pid}), but", plan.id))?;
    if let Some(presses) = presses {
        return attach::wait_attached(ctx, &plan.id, supervisor_pid, presses);
    }
    Ok(Exit::Ok)
}

/// Takes agent `id`'s lock and stopping turn (exit 4 while either is held), and refuses an id
/// whose cgroup still has processes.
fn claim_id(ctx: &Ctx, plan: &SupervisorPlan) -> Result<(Lock, std::fs::File)> {
    let mut lock = match Lock::try_acquire(&ctx.dirs.lock_path(&plan.id))? {
        Some(lock) => lock,
        None => return Err(busy(ctx, &plan.id)),
    };
    lock.set_holder("spawn")?;
    // Held until the agent has started: a `kill` of this id waits for that.
    let Some(stop_turn) = take_stop_turn(ctx, &plan.id)? else {
        return Err(Fail::error(
            Exit::Busy,
            format!(
                "{} is being stopped (a kill or relief of it is under way); spawn it again once that has finished",
                plan.id
            ),
        ));
    };
    if plan.cgroup.exists() && plan.cgroup.populated()? {
        return Err(Fail::error(
            Exit::Busy,
            format!(
                "{}: its cgroup still has {} process(es) but no supervisor (orphaned); end them with `fleetctl kill {}` first",
                plan.id,
                plan.cgroup.procs()?.len(),
                plan.id
            ),
        ));
    }
    Ok((lock, stop_turn))
}

/// Turns the arguments into a validated plan; touches nothing. The workspace is settled
/// when its lease is taken.
pub(crate) fn make_plan(ctx: &Ctx, args: &SpawnArgs) -> Result<(SupervisorPlan, Workspace)> {
    let usage = |m: String| Fail::error(Exit::Usage, m);
    let defaults = &ctx.agent;
    let limits = defaults.limits_with(&args.limits);
    limits.validate().map_err(usage)?;
    let soft = args.soft_timeout.map_or(defaults.soft_timeout, Timeout::duration);
    let hard = args.hard_timeout.map_or(defaults.hard_timeout, Timeout::duration);
    if let (Some(s), Some(h)) = (soft, hard)
        && s >= h
    {
        return Err(usage(format!(
            "the soft timeout ({}) must be shorter than the hard timeout ({}): the warning comes before the end",
            human_duration(s),
            human_duration(h)
        )));
    }
    let workspace = leases::resolve(&ctx.workspace_root, &args.workspace)?;
    if args.command[0].is_empty() {
        return Err(usage("the command is empty: give it after `--`, e.g. -- cargo build".into()));
    }
    let labels = fleet_core::labels::collect(&args.labels).map_err(usage)?;
    let plan = SupervisorPlan {
        id: args.id.clone(),
        workspace: PathBuf::new(),
        command: args.command.clone(),
        cgroup: ctx.fleet.agent(&args.id),
        supervisors: ctx.fleet.supervisors(),
        limits,
        soft_timeout: soft,
        hard_timeout: hard,
        kill_grace: args.kill_grace.unwrap_or(defaults.kill_grace),
        restart: match args.restart {
            RestartArg::Never => RestartPolicy::Never,
            RestartArg::OnFailure => RestartPolicy::OnFailure,
        },
        restart_backoff: args.restart_backoff,
        crash_loop_after: args.crash_loop_after,
        protect: args.protect,
        labels,
        state_dir: std::path::absolute(&ctx.dirs.state)?,
        log_dir: std::path::absolute(&ctx.dirs.log)?,
        log_max_size: args.log_max_size.unwrap_or(defaults.log_max_size),
        scratch: Some(std::path::absolute(leases::scratch_dir(ctx, &args.id))?),
        slot: None,
        ports: None,
        has_leases: false,
        proc_root: ctx.proc_root.clone(),
        join_early: fleet_core::host::systemd::booted_here(),
        // Set once the workspace is settled (see `Containment::settle`).
        credentials: None,
        env: Vec::new(),
        cwd: None,
        no_new_privs: !args.allow_new_privs,
        stall: crate::agent::stall::plan(defaults, args).map_err(usage)?,
        save_signal: args.save_signal.clone(),
    };
    Ok((plan, workspace))
}

/// Below this much free space in the state or log dir, spawn refuses: the agent's record, its
/// end and its output could not be kept, and an agent whose end is lost is worse than one
/// that never started.
const MIN_FREE: u64 = 256 << 10;

/// Refuses (1) when the state or log dir's filesystem is full.
fn room_to_record(ctx: &Ctx) -> Result<()> {
    for (what, dir, flag) in [("state", &ctx.dirs.state, "--state-dir"), ("log", &ctx.dirs.log, "--log-dir")] {
        if let Some(free) = fleet_core::paths::free_bytes(dir)
            && free < MIN_FREE
        {
            return Err(Fail::error(
                Exit::Failure,
                format!(
                    "the {what} dir {} is full ({} free): spawned agents could not be recorded; free space there or move {flag} (running agents are unaffected)",
                    dir.display(),
                    format_iec(free)
                ),
            ));
        }
    }
    Ok(())
}

/// Takes agent `id`'s stopping turn ([`fleet_core::paths::Dirs::kill_lock_path`]), or None
/// while a `kill` or relief of it holds it: that one may still be at work on the last run's
/// cgroup, whose path this spawn would make again.
fn take_stop_turn(ctx: &Ctx, id: &AgentId) -> Result<Option<std::fs::File>> {
    let file = crate::agent::stop::open_stop_turn(ctx, id)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", ctx.dirs.kill_lock_path(id).display()))
        }
    }
}

/// The exit-4 error for an id whose lock is held, naming who holds it.
fn busy(ctx: &Ctx, id: &AgentId) -> anyhow::Error {
    let record = view::load_one(ctx, id).ok().flatten().map(|v| v.record);
    // The winner writes its name into the lock file just after taking the lock; give it a
    // moment so the message can say who holds it.
    let mut holder = None;
    for _ in 0..20 {
        holder = read_holder(&ctx.dirs.lock_path(id));
        if holder.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let message = match (record, holder) {
        (Some(r), _) if r.state == AgentState::Running && r.pid.is_some() => {
            let since = r.started_at.unwrap_or(r.created_at);
            let age = since.elapsed().map(human_duration).unwrap_or_default();
            format!(
                "{id} is already running (pid {}, started {} ({age} ago)); kill it first or pick another id",
                r.pid.unwrap_or_default(),
                fleet_core::timefmt::rfc3339(since)
            )
        }
        (_, Some(h)) => format!(
            "{id} is already running: its lock is held by {} pid {} since {}; kill it first or pick another id",
            h.role, h.pid, h.since
        ),
        _ => format!("{id} is already running (its lock is held); kill it first or pick another id"),
    };
    Fail::error(Exit::Busy, message)
}

/// Creates the agent's cgroup, without limits yet.
fn make_cgroup(plan: &SupervisorPlan) -> Result<()> {
    // An empty leftover (a crashed spawn, or cgroup-create) is replaced, so counters such
    // as oom_kill start from zero for this agent. Creating first costs nothing extra in the
    // usual case, where there is none.
    if plan.cgroup.create()? < plan.cgroup.dirs().len() {
        plan.cgroup.remove()?;
        plan.cgroup.create()?;
    }
    // systemd-oomd would otherwise count the agent among its candidates (it reads the mark on
    // each leaf, not on the fleet's scope); an old kernel without the xattr changes nothing.
    let _ = plan.cgroup.omit_from_oomd();
    Ok(())
}

/// Gives the cgroup its limits, makes the scratch dir, and writes the first record.
fn prepare(ctx: &Ctx, plan: &SupervisorPlan, record: &AgentRecord) -> Result<()> {
    plan.cgroup.apply_limits(&plan.limits)?;
    if let Some(dir) = &plan.scratch {
        make_scratch(dir)?;
    }
    let _ = std::fs::remove_file(ctx.dirs.kill_request_path(&plan.id));
    record.save(&ctx.dirs.state_path(&plan.id))?;
    Ok(())
}

/// The agent's record as `spawn` first writes it: starting, no pid yet.
fn first_record(ctx: &Ctx, plan: &SupervisorPlan) -> AgentRecord {
    AgentRecord {
        workspace: plan.workspace.clone(),
        command: plan.command.clone(),
        restart: plan.restart,
        protect: plan.protect,
        labels: plan.labels.clone(),
        save_signal: plan.save_signal.clone(),
        spawned_with: Some(SpawnSettings {
            soft_timeout_ms: plan.soft_timeout.map(millis),
            hard_timeout_ms: plan.hard_timeout.map(millis),
            kill_grace_ms: millis(plan.kill_grace),
            restart_backoff_ms: millis(plan.restart_backoff),
            crash_loop_after: plan.crash_loop_after,
            log_max_size: plan.log_max_size,
            // Filled in by `Containment::annotate`, which has the flags.
            user: None,
            cwd: None,
            allow_new_privs: false,
            stall_signal: plan.stall.as_ref().and_then(|s| s.signal.clone()),
            on_stall_kill: plan.stall.as_ref().is_some_and(|s| s.kill),
        }),
        slot: plan.slot.clone(),
        ports: plan.ports,
        scratch: plan.scratch.clone(),
        ..AgentRecord::new(plan.id.clone(), plan.limits, plan.cgroup.unified.clone(), ctx.dirs.log_path(&plan.id))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fresh, empty scratch dir: what a crashed earlier agent of this id left is not this
/// agent's.
fn make_scratch(dir: &Path) -> Result<()> {
    fleet_core::paths::remove_dir_tree(dir)
        .with_context(|| format!("cannot clear the old scratch dir {}", dir.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the scratch dir {}", dir.display()))
}

/// `spawn --json`: what a script needs to reach the agent (docs/spawn-json.md).
fn started_json(ctx: &Ctx, plan: &SupervisorPlan, supervisor_pid: i32, pid: i32) -> serde_json::Value {
    serde_json::json!({
        "schema": 1,
        "id": plan.id.as_str(),
        "pid": pid,
        "supervisor_pid": supervisor_pid,
        "cgroup": plan.cgroup.unified,
        "workspace": plan.workspace,
        "workspace_slot": plan.slot,
        "port_base": plan.ports.map(|p| p.base),
        "port_count": plan.ports.map(|p| p.count),
        "log": ctx.dirs.log_path(&plan.id),
        "scratch": plan.scratch,
    })
}

fn started_line(plan: &SupervisorPlan, pid: i32) -> String {
    let l = &plan.limits;
    let t = |d: Option<Duration>| d.map(human_duration).unwrap_or_else(|| "off".into());
    let swap = match l.swap_max {
        Limit::Bytes(b) => format_iec(b),
        Limit::Max => "max".into(),
    };
    let mut leased = String::new();
    if let Some(slot) = &plan.slot {
        leased.push_str(&format!("; workspace {slot}"));
    }
    if let Some(p) = plan.ports {
        leased.push_str(&format!("; ports {}-{}", p.base, p.base + (p.count - 1)));
    }
    format!(
        "{} started: pid {pid} in {} (memory max {}, high {}, swap {swap}, pids {}; soft timeout {}, hard {}{leased})",
        plan.id,
        plan.cgroup.unified.display(),
        l.memory_max,
        l.memory_high,
        l.pids_max.bytes().map(|n| n.to_string()).unwrap_or_else(|| "max".into()),
        t(plan.soft_timeout),
        t(plan.hard_timeout)
    )
}

/// Removes what a failed spawn made: the cgroup, the record, the lock file. The lock itself
/// is released when `spawn` exits.
struct Undo<'a> {
    ctx: &'a Ctx,
    id: &'a AgentId,
    cgroup: &'a Cgroup,
    scratch: Option<PathBuf>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = self.cgroup.kill_and_remove(fleet_core::cgroup::KILL_SETTLE);
        if let Some(dir) = &self.scratch {
            let _ = fleet_core::paths::remove_dir_tree(dir);
        }
        let _ = std::fs::remove_file(self.ctx.dirs.state_path(self.id));
        let _ = std::fs::remove_file(self.ctx.dirs.kill_request_path(self.id));
        // Safe while we hold the lock: a racing spawn re-checks the inode after locking.
        let _ = std::fs::remove_file(self.ctx.dirs.lock_path(self.id));
        let _ = std::fs::remove_file(self.ctx.dirs.kill_lock_path(self.id));
        let _ = std::fs::remove_dir(self.ctx.dirs.agent_dir(self.id));
    }
}
