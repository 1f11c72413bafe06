//! What `status` (and `metrics`) show of the host and each agent: the report, built from one
//! read of the budget, the records and the held locks, then the sampled cgroups of the agents
//! that are alive. `--json` is schema 1 (`docs/status-json.md`).

use super::{AgentSample, Detail};
use crate::{agent::view::AgentView, context::Ctx};
use anyhow::Result;
use fleet_core::{
    id::AgentId,
    labels::{Labels, Selector},
    meminfo::{Budget, percent_1dp},
    procs::ProcessRef,
    state::AgentState,
    timefmt::rfc3339,
};
use serde::Serialize;
use std::{collections::BTreeMap, path::PathBuf, time::SystemTime};

/// The `--json` schema version; bumped when a field changes meaning or goes away.
pub const STATUS_SCHEMA: u32 = 1;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// [`STATUS_SCHEMA`].
    pub schema: u32,
    /// The host and fleet.
    pub host: HostStatus,
    /// One entry per agent shown.
    pub agents: Vec<AgentStatus>,
    /// Records that could not be read.
    pub bad_records: Vec<BadRecordStatus>,
}

/// The host header.
#[derive(Debug, Serialize)]
pub struct HostStatus {
    /// `unified` or `hybrid`.
    pub layout: fleet_core::cgroup::Layout,
    /// The fleet root (unified-tree path).
    pub fleet_root: PathBuf,
    /// Bytes the fleet may use.
    pub budget_bytes: u64,
    /// `host` (MemTotal) or `fleet-root` (its memory limit).
    pub budget_source: fleet_core::meminfo::BudgetSource,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Bytes available.
    pub available_bytes: u64,
    /// Used, percent of budget.
    pub used_percent: f64,
    /// Spawns are refused at or above this percentage.
    pub spawn_threshold: u8,
    /// The watcher kills at or above this percentage.
    pub kill_threshold: u8,
    /// Host swap size.
    pub swap_total_bytes: u64,
    /// Host swap in use.
    pub swap_used_bytes: u64,
    /// Host memory pressure, PSI some avg10 (percent of the last 10 s); null without PSI.
    pub pressure_some_avg10: Option<f64>,
    /// Host memory pressure, PSI full avg10.
    pub pressure_full_avg10: Option<f64>,
    /// Agent counts by state (all agents, before filters).
    pub agents_by_state: BTreeMap<AgentState, usize>,
}

/// One agent row.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub id: String,
    pub state: AgentState,
    pub pid: Option<i32>,
    pub supervisor_pid: Option<i32>,
    pub workspace: PathBuf,
    pub command: Vec<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub uptime_seconds: Option<u64>,
    /// How long its last run lasted, once it ended for good (from `started_at` to `ended_at`).
    pub ran_seconds: Option<u64>,
    pub memory_current_bytes: Option<u64>,
    pub memory_max_bytes: Option<u64>,
    /// What admission counts it for while it uses less (`--memory-reserve`).
    pub memory_reserve_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub memory_percent_of_max: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub pids_current: Option<u64>,
    pub soft_deadline: Option<String>,
    pub hard_deadline: Option<String>,
    pub soft_deadline_in_seconds: Option<i64>,
    pub hard_deadline_in_seconds: Option<i64>,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cause: Option<String>,
    pub killed_by: Option<String>,
    pub oom_kills: u64,
    pub protect: bool,
    /// `spawn --label`s, by key; `{}` when none.
    pub labels: Labels,
    pub cgroup: PathBuf,
    pub log: PathBuf,
    pub workspace_slot: Option<String>,
    pub port_base: Option<u16>,
    pub port_count: Option<u16>,
    pub scratch: Option<PathBuf>,
    /// Stalled on memory now (the `stall` event; until the pressure eases).
    pub stalled: bool,
    /// Since when, while it is.
    pub stalled_since: Option<String>,
    /// Why the agent is shown from its cgroup: its record cannot be read, or it has none.
    pub record_error: Option<String>,
    /// The slot its record names, held or not: the table shows the workspace by it, the
    /// same while it runs and once it ended.
    #[serde(skip)]
    pub slot_name: Option<String>,
}

/// A record that could not be read.
#[derive(Debug, Serialize)]
pub struct BadRecordStatus {
    pub path: PathBuf,
    pub error: String,
}

/// Which agents a report shows; empty lists show all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown<'a> {
    /// Only these ids.
    pub ids: &'a [AgentId],
    /// Only agents in these states.
    pub states: &'a [AgentState],
    /// Only agents whose labels match.
    pub selector: Option<&'a Selector>,
}

/// Builds the report for the agents `shown` selects, their cgroups read at `detail`
/// ([`Detail::Status`] or [`Detail::Metrics`]).
pub fn report(ctx: &Ctx, shown: Shown, detail: Detail) -> Result<StatusReport> {
    let budget = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let pressure = fleet_core::meminfo::host_pressure(&ctx.proc_root);
    // Without a state filter, the agents shown are known from their records alone: their
    // cgroups are read as the records are. (A filter on the state waits for it to be
    // reconciled.)
    let early = |r: &fleet_core::state::AgentRecord| {
        shown.states.is_empty()
            && (shown.ids.is_empty() || shown.ids.contains(&r.id))
            && shown.selector.is_none_or(|s| s.matches(&r.labels))
    };
    let (mut views, bad) = super::load_sampled(ctx, detail, early)?;
    let mut by_state = BTreeMap::new();
    for (v, _) in &views {
        *by_state.entry(v.state).or_insert(0) += 1;
    }
    // Live agents first (what an operator is looking for), then the ended ones, each by id
    // as a person counts (a2 before a10).
    views.sort_by(|(a, _), (b, _)| {
        let terminal = a.state.is_terminal().cmp(&b.state.is_terminal());
        terminal.then_with(|| fleet_core::id::natural_cmp(a.record.id.as_str(), b.record.id.as_str()))
    });
    let views: Vec<_> = views
        .into_iter()
        .filter(|(v, _)| shown.ids.is_empty() || shown.ids.contains(&v.record.id))
        .filter(|(v, _)| shown.states.is_empty() || shown.states.contains(&v.state))
        .filter(|(v, _)| shown.selector.is_none_or(|s| crate::agent::select::matches(s, v)))
        .collect();
    let samples = super::agents_with(ctx, views, detail);
    let now = SystemTime::now();
    let agents = samples.into_iter().map(|s| agent_status(ctx, s, now)).collect();
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

fn agent_status(ctx: &Ctx, sample: AgentSample, now: SystemTime) -> AgentStatus {
    let AgentSample { view: v, cgroup: c } = sample;
    let cause = cause(&v);
    let r = *v.record;
    let live = !v.state.is_terminal();
    // A run nobody supervises: its deadlines are enforced by nobody, and its main process
    // is shown only while it exists.
    let unsupervised = !v.supervised && !r.state.is_terminal();
    let running_for = if live { r.started_at.and_then(|t| t.elapsed().ok()) } else { None };
    // One-shot, so the average over the run: usage over wall time since start.
    let cpu = running_for
        .filter(|d| !d.is_zero())
        .and_then(|d| c.cpu_usec.map(|u| (u as f64 / d.as_micros() as f64 * 1000.0).round() / 10.0));
    let until = |t: Option<SystemTime>| {
        t.filter(|_| live).map(|t| match t.duration_since(now) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        })
    };
    let (soft_deadline, hard_deadline) = if unsupervised { (None, None) } else { (r.soft_deadline, r.hard_deadline) };
    let max = c.max.and_then(|m| m.bytes());
    AgentStatus {
        id: r.id.to_string(),
        state: v.state,
        pid: r.pid.filter(|&p| live && (v.supervised || ProcessRef::of(&ctx.proc_root, p).is_some())),
        supervisor_pid: r.supervisor.map(|s| s.pid).filter(|_| v.supervised),
        workspace: r.workspace,
        command: r.command,
        started_at: time(r.started_at),
        ended_at: time(r.ended_at),
        uptime_seconds: running_for.map(|d| d.as_secs()),
        ran_seconds: r
            .ended_at
            .filter(|_| !live)
            .zip(r.started_at)
            .and_then(|(end, start)| end.duration_since(start).ok())
            .map(|d| d.as_secs()),
        memory_current_bytes: c.current,
        // The limit as the kernel keeps it while the cgroup is there; the record's otherwise.
        memory_max_bytes: max.or(r.limits.memory_max.as_kernel_keeps().bytes()),
        // What admission counts: a reservation ends with its run's supervisor.
        memory_reserve_bytes: r.memory_reserve.filter(|_| live && !unsupervised),
        // The cgroup's while it is there; after the run, the peak its supervisor recorded.
        memory_peak_bytes: c.peak.or(r.final_peak_bytes),
        memory_percent_of_max: c.current.zip(max).map(|(current, max)| percent_1dp(current, max)),
        cpu_percent: cpu,
        pids_current: c.pids,
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
        labels: r.labels,
        cgroup: r.cgroup,
        log: r.log,
        // Leases are held by the supervisor: shown only while one holds them.
        workspace_slot: r.slot.clone().filter(|_| v.supervised),
        port_base: r.ports.filter(|_| v.supervised).map(|p| p.base),
        port_count: r.ports.filter(|_| v.supervised).map(|p| p.count),
        scratch: r.scratch.filter(|_| !v.state.is_terminal()),
        // Only a live supervisor keeps the mark true.
        stalled: r.stalled_since.is_some() && v.state == AgentState::Running,
        stalled_since: time(r.stalled_since.filter(|_| v.state == AgentState::Running)),
        record_error: v.record_error,
        slot_name: r.slot,
    }
}

/// Formats an optional time for JSON.
fn time(t: Option<SystemTime>) -> Option<String> {
    t.map(rfc3339)
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
