//! Model values for the rendering tests: a host and agents as the sampler would report them.

use crate::agent::sample::status::{AgentStatus, HostStatus};
use fleet_core::{cgroup::Layout, meminfo::BudgetSource, state::AgentState};
use std::collections::BTreeMap;

pub const MIB: u64 = 1 << 20;

/// A 4 GiB host at 25 %, with PSI, two agents counted.
pub fn host() -> HostStatus {
    HostStatus {
        layout: Layout::Unified,
        fleet_root: "/cgroup/fleet".into(),
        budget_bytes: 4096 * MIB,
        budget_source: BudgetSource::Host,
        used_bytes: 1024 * MIB,
        available_bytes: 3072 * MIB,
        used_percent: 25.0,
        spawn_threshold: 85,
        kill_threshold: 95,
        swap_total_bytes: 2048 * MIB,
        swap_used_bytes: 0,
        pressure_some_avg10: Some(1.5),
        pressure_full_avg10: Some(0.25),
        agents_by_state: BTreeMap::from([(AgentState::Running, 1), (AgentState::Exited, 1)]),
    }
}

/// An agent in `state` with nothing measured.
pub fn agent(id: &str, state: AgentState) -> AgentStatus {
    AgentStatus {
        id: id.into(),
        state,
        pid: None,
        supervisor_pid: None,
        workspace: "/work/ws".into(),
        command: vec!["sleep".into(), "60".into()],
        started_at: None,
        ended_at: None,
        uptime_seconds: None,
        ran_seconds: None,
        memory_current_bytes: None,
        memory_max_bytes: None,
        memory_peak_bytes: None,
        memory_percent_of_max: None,
        cpu_percent: None,
        pids_current: None,
        soft_deadline: None,
        hard_deadline: None,
        soft_deadline_in_seconds: None,
        hard_deadline_in_seconds: None,
        restarts: 0,
        exit_code: None,
        signal: None,
        cause: None,
        killed_by: None,
        oom_kills: 0,
        protect: false,
        labels: BTreeMap::new(),
        cgroup: format!("/cgroup/fleet/agents/{id}").into(),
        log: format!("/var/log/fleet/{id}.log").into(),
        workspace_slot: None,
        port_base: None,
        port_count: None,
        scratch: None,
        memory_reserve_bytes: None,
        stalled: false,
        stalled_since: None,
        record_error: None,
        slot_name: None,
    }
}

/// A running agent at 64 of 256 MiB, one of whose deadlines has passed.
pub fn running(id: &str) -> AgentStatus {
    AgentStatus {
        pid: Some(4242),
        supervisor_pid: Some(4241),
        uptime_seconds: Some(125),
        memory_current_bytes: Some(64 * MIB),
        memory_max_bytes: Some(256 * MIB),
        memory_peak_bytes: Some(96 * MIB),
        memory_percent_of_max: Some(25.0),
        cpu_percent: Some(12.5),
        pids_current: Some(3),
        soft_deadline_in_seconds: Some(-5),
        hard_deadline_in_seconds: Some(3600),
        workspace_slot: Some("slot-2".into()),
        slot_name: Some("slot-2".into()),
        port_base: Some(20000),
        port_count: Some(10),
        restarts: 2,
        oom_kills: 1,
        memory_reserve_bytes: Some(128 * MIB),
        ..agent(id, AgentState::Running)
    }
}
