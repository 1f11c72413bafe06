//! `fleetctl status [ID…] [--state S,…] [--json]`: the host and every agent.

use crate::{
    agent::view::{self, AgentView},
    context::Ctx,
    exit::Exit,
    render::status::{AgentStatus, BadRecordStatus, HostStatus, STATUS_SCHEMA, StatusReport, render_table, time},
};
use anyhow::Result;
use fleet_cli::StatusArgs;
use fleet_core::{
    meminfo::{Budget, percent_1dp},
    procs::ProcessRef,
    state::AgentState,
};
use std::collections::BTreeMap;

/// Entry point.
pub fn run(ctx: &Ctx, args: StatusArgs) -> Result<Exit> {
    let report = build(ctx, &args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    // A named agent that is not there is most likely a typo: say so, as `kill` does, after
    // showing the ones that are. (An id that --state filtered out is not unknown.)
    let unknown: Vec<&str> =
        args.ids.iter().filter(|id| !crate::agent::exists(ctx, id)).map(|id| id.as_str()).collect();
    if !unknown.is_empty() {
        let exit = if unknown.len() == args.ids.len() { Exit::NoSuchAgent } else { Exit::Partial };
        let message = format!("no such agent: {} (see `fleetctl status`)", unknown.join(", "));
        return Err(crate::exit::Fail::error(exit, message));
    }
    Ok(Exit::Ok)
}

/// Builds the report: one read of the budget, the records and the held locks, then the
/// cgroup files of the agents that are alive.
pub fn build(ctx: &Ctx, args: &StatusArgs) -> Result<StatusReport> {
    let budget = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let pressure = fleet_core::meminfo::host_pressure(&ctx.proc_root);
    let (views, bad) = view::load_all(ctx)?;
    let mut by_state = BTreeMap::new();
    for v in &views {
        *by_state.entry(v.state).or_insert(0) += 1;
    }
    // Live agents first (what an operator is looking for), then the ended ones, each by id.
    let mut views = views;
    views.sort_by_key(|v| v.state.is_terminal());
    let shown: Vec<AgentView> = views
        .into_iter()
        .filter(|v| args.ids.is_empty() || args.ids.contains(&v.record.id))
        .filter(|v| args.state.is_empty() || args.state.contains(&v.state))
        .collect();
    let agents = crate::agent::par_map(&shown, |v| agent_status(ctx, v.clone()));
    Ok(StatusReport {
        schema: STATUS_SCHEMA,
        host: HostStatus {
            layout: ctx.fleet.root.layout,
            fleet_root: ctx.fleet.root.unified.clone(),
            budget_bytes: budget.total,
            budget_source: budget.source,
            used_bytes: budget.used,
            available_bytes: budget.available(),
            used_percent: budget.percent_1dp(),
            spawn_threshold: ctx.spawn_threshold(),
            kill_threshold: ctx.kill_threshold(),
            swap_total_bytes: budget.swap_total,
            swap_used_bytes: budget.swap_used,
            pressure_some_avg10: pressure.map(|p| p.some_avg10),
            pressure_full_avg10: pressure.map(|p| p.full_avg10),
            agents_by_state: by_state,
        },
        agents,
        bad_records: bad.into_iter().map(|b| BadRecordStatus { path: b.path, error: b.error }).collect(),
    })
}

fn agent_status(ctx: &Ctx, v: AgentView) -> AgentStatus {
    let cause = cause(&v);
    let r = v.record;
    let live = !v.state.is_terminal();
    // A run nobody supervises: its deadlines are enforced by nobody, and its main process
    // is shown only while it exists.
    let unsupervised = !v.supervised && !r.state.is_terminal();
    let cgroup = ctx.fleet.agent(&r.id);
    let mem = if live { cgroup.memory_stats().ok() } else { None };
    let running_for = if live { r.started_at.and_then(|t| t.elapsed().ok()) } else { None };
    let uptime = running_for.map(|d| d.as_secs());
    // One-shot, so the average over the run: usage over wall time since start.
    let cpu = running_for
        .filter(|d| !d.is_zero())
        .and_then(|d| cgroup.cpu_usage_usec().ok().map(|u| (u as f64 / d.as_micros() as f64 * 1000.0).round() / 10.0));
    let now = std::time::SystemTime::now();
    let until = |t: Option<std::time::SystemTime>| {
        t.filter(|_| live).map(|t| match t.duration_since(now) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        })
    };
    let (soft_deadline, hard_deadline) = if unsupervised { (None, None) } else { (r.soft_deadline, r.hard_deadline) };
    AgentStatus {
        id: r.id.to_string(),
        state: v.state,
        pid: r.pid.filter(|&p| live && (v.supervised || ProcessRef::of(&ctx.proc_root, p).is_some())),
        supervisor_pid: r.supervisor.map(|s| s.pid).filter(|_| v.supervised),
        workspace: r.workspace,
        command: r.command,
        started_at: time(r.started_at),
        ended_at: time(r.ended_at),
        uptime_seconds: uptime,
        memory_current_bytes: mem.map(|m| m.current),
        memory_max_bytes: mem.and_then(|m| m.max.bytes()).or(r.limits.memory_max.bytes()),
        memory_peak_bytes: mem.and_then(|m| m.peak),
        memory_percent_of_max: mem.and_then(|m| m.max.bytes().map(|max| percent_1dp(m.current, max))),
        cpu_percent: cpu,
        pids_current: if live { cgroup.pids_current().ok() } else { None },
        soft_deadline: time(soft_deadline),
        hard_deadline: time(hard_deadline),
        soft_deadline_in_seconds: until(soft_deadline),
        hard_deadline_in_seconds: until(hard_deadline),
        restarts: r.restarts,
        exit_code: r.exit.and_then(|e| e.code),
        signal: r.exit.and_then(|e| e.signal),
        cause,
        killed_by: r.killed_by,
        oom_kills: r.oom_kills,
        protect: r.protect,
        cgroup: r.cgroup,
        log: r.log,
        // Leases are held by the supervisor: shown only while one holds them.
        workspace_slot: r.slot.filter(|_| v.supervised),
        port_base: r.ports.filter(|_| v.supervised).map(|p| p.base),
        port_count: r.ports.filter(|_| v.supervised).map(|p| p.count),
        scratch: r.scratch.filter(|_| !v.state.is_terminal()),
        record_error: v.record_error,
    }
}

/// The record's cause, or for a run nobody supervises, what happened to its supervisor.
fn cause(v: &AgentView) -> Option<String> {
    if !v.unsettled() {
        return v.record.cause.clone();
    }
    let Some(supervisor) = v.record.supervisor else {
        // A spawn that died before its agent started: nothing ran, nothing to kill.
        return Some("spawn died before the agent started; `fleetctl gc` cleans up".into());
    };
    Some(if v.state == AgentState::Orphaned {
        format!(
            "its supervisor (pid {}) died; the agent runs unsupervised (no timeouts, no leases, and its \
             next output ends it with SIGPIPE): `fleetctl kill` ends it",
            supervisor.pid
        )
    } else {
        format!(
            "its supervisor (pid {}) died and the agent ended unobserved; exit status unknown \
             (`fleetctl kill` or `gc` records it)",
            supervisor.pid
        )
    })
}
