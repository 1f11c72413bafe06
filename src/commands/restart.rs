//! `fleetctl restart ID… [--grace 10s]`: stop each agent as `kill` does (if it still runs)
//! and spawn it again from its record: the same command, limits, workspace (a leased slot
//! again), labels, timeouts, restart policy, log size and as many ports, from the same block.
//! The new spawn is checked before the old run is stopped, so a restart that cannot start
//! leaves the agent as it was; exit codes are spawn's.

use crate::{
    agent::{
        spawn,
        stop::{StopRequest, stop_agent},
        view,
    },
    context::Ctx,
    exit::{Exit, Fail, exit_for},
};
use anyhow::{Context, Result};
use fleet_cli::{Command, LimitArgs, OnStall, RestartArg, RestartArgs, SpawnArgs, Timeout};
use fleet_core::{
    id::AgentId,
    state::{AgentRecord, RestartPolicy},
};
use std::time::Duration;

/// Entry point.
pub fn run(ctx: &Ctx, args: RestartArgs) -> Result<Exit> {
    let mut errors = Vec::new();
    for id in &args.ids {
        if let Err(e) = restart_one(ctx, id, args.grace) {
            errors.push(e);
        }
    }
    // One agent: its error and exit code are spawn's. Several: each failure on its own line,
    // then 3 when some restarted, or the failures' code when none did.
    let Some(last) = errors.pop() else { return Ok(Exit::Ok) };
    let exits: Vec<Exit> = errors.iter().chain([&last]).map(exit_for).collect();
    for e in &errors {
        eprintln!("fleetctl: {e:#}");
    }
    if exits.len() < args.ids.len() {
        return Err(Fail::error(
            Exit::Partial,
            format!("{last:#}; {} of {} agents were not restarted", exits.len(), args.ids.len()),
        ));
    }
    Err(last)
}

/// Restarts one agent: plan the new run, stop the old one, spawn.
fn restart_one(ctx: &Ctx, id: &AgentId, grace: Duration) -> Result<Exit> {
    let Some(view) = view::load_one(ctx, id)? else {
        return Err(Fail::error(Exit::NoSuchAgent, format!("no such agent: {id} (see `fleetctl status`)")));
    };
    if let Some(why) = view.record_error {
        // A record this caller may not read is a permission problem, not a broken record.
        if why.contains("Permission denied") {
            return Err(crate::exit::denied(&ctx.dirs.state_path(id)));
        }
        return Err(Fail::error(
            Exit::Failure,
            format!(
                "{id}: cannot restart without its record ({why}); `fleetctl kill {id}` and spawn it again with its command"
            ),
        ));
    }
    let again = spawn_args(&view.record)?;
    // Everything spawn can check without touching the system (limits, timeouts, labels, the
    // workspace still there) is checked before the old run is stopped.
    spawn::make_plan(ctx, &again).with_context(|| format!("{id}: cannot restart"))?;
    if !view.state.is_terminal() {
        let req = StopRequest { by: "user".into(), detail: Some("restart".into()), grace, force: false };
        stop_agent(ctx, id, &req)?;
    }
    // Its turn in line was taken when it first started: a restart is not refused because
    // others wait, or the agent just stopped would be gone for good.
    spawn::start(ctx, again, true)
}

/// The spawn that starts `record`'s agent again: spawn's own command line parsed for the
/// defaults, then the record's settings. A record written before spawns kept their settings
/// (no `spawned_with`) gets today's defaults for those.
fn spawn_args(record: &AgentRecord) -> Result<SpawnArgs> {
    let workspace = record.workspace.to_string_lossy().into_owned();
    let line = ["fleetctl", "spawn", record.id.as_str(), &workspace, "--"].into_iter().map(String::from);
    let Command::Spawn(mut args) = fleet_cli::parse_from(line.chain(record.command.iter().cloned()))
        .map_err(|e| anyhow::anyhow!("{}: its record does not make a spawn: {}", record.id, e.kind()))?
        .command
    else {
        unreachable!("a spawn line parses as spawn")
    };
    let l = record.limits;
    args.limits = LimitArgs {
        memory_max: Some(l.memory_max),
        memory_high: Some(l.memory_high),
        swap_max: Some(l.swap_max),
        pids_max: Some(l.pids_max),
    };
    args.restart = match record.restart {
        RestartPolicy::Never => RestartArg::Never,
        RestartPolicy::OnFailure => RestartArg::OnFailure,
    };
    args.protect = record.protect;
    args.memory_reserve = record.memory_reserve;
    args.save_signal = record.save_signal.clone();
    args.labels = record.labels.clone().into_iter().collect();
    // The same block: the ports the agent was told are its own stay true.
    args.ports = record.ports.map(|p| p.count);
    args.port_range = record.ports.map(|p| (p.base, p.base + (p.count - 1)));
    if let Some(s) = &record.spawned_with {
        let ms = Duration::from_millis;
        let timeout = |t: Option<u64>| t.map_or(Timeout::Off, |t| Timeout::After(ms(t)));
        args.soft_timeout = Some(timeout(s.soft_timeout_ms));
        args.hard_timeout = Some(timeout(s.hard_timeout_ms));
        args.kill_grace = Some(ms(s.kill_grace_ms));
        args.restart_backoff = ms(s.restart_backoff_ms);
        args.crash_loop_after = s.crash_loop_after;
        args.log_max_size = Some(s.log_max_size);
        args.user = s.user.clone();
        args.cwd = s.cwd.clone();
        args.allow_new_privs = s.allow_new_privs;
        args.stall_signal = s.stall_signal.clone();
        args.on_stall = if s.on_stall_kill { OnStall::Kill } else { OnStall::Mark };
    }
    // Values given with --env, --env-file or --pass-env are never written down.
    if !record.env_added.is_empty() {
        return Err(Fail::error(
            Exit::Usage,
            format!(
                "{}: cannot restart with the same environment: its record keeps only the names of the variables it was given ({}), never their values; spawn it again with them",
                record.id,
                record.env_added.join(", ")
            ),
        ));
    }
    Ok(args)
}
