//! The `status` table: the host header and one row per agent.

use crate::agent::sample::status::{AgentStatus, StatusReport};
use fleet_core::{size::format_iec, timefmt::human_duration};

/// The human rendering.
pub fn render_table(report: &StatusReport) -> String {
    let h = &report.host;
    let counts: Vec<String> = h.agents_by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let mut out = format!(
        "fleet memory: {} of {} used ({:.1} %), {} available; spawn stops at {} %, kill at {} %\n\
         budget: {}; pressure: {}; swap: {} of {}; layout: {}\n\
         fleet root: {}; agents: {}\n",
        format_iec(h.used_bytes),
        format_iec(h.budget_bytes),
        h.used_percent,
        format_iec(h.available_bytes),
        h.spawn_threshold,
        h.kill_threshold,
        match h.budget_source {
            fleet_core::meminfo::BudgetSource::Host => "host MemTotal",
            fleet_core::meminfo::BudgetSource::FleetRoot => "fleet root memory.max",
        },
        match (h.pressure_some_avg10, h.pressure_full_avg10) {
            (Some(s), Some(f)) => format!("some {s:.2} % full {f:.2} %"),
            _ => "no PSI".into(),
        },
        format_iec(h.swap_used_bytes),
        format_iec(h.swap_total_bytes),
        h.layout,
        h.fleet_root.display(),
        if counts.is_empty() { "none".to_string() } else { counts.join(", ") },
    );
    if report.agents.is_empty() {
        out.push_str("no agents\n");
    } else {
        let mut t = super::table(&[
            "ID",
            "STATE",
            "PID",
            "UPTIME",
            "MEMORY",
            "PEAK",
            "PIDS",
            "CPU",
            "DEADLINES",
            "WORKSPACE",
            "EXIT / CAUSE",
        ]);
        for a in &report.agents {
            let memory = match (a.memory_current_bytes, a.memory_max_bytes) {
                (Some(c), Some(m)) => {
                    format!("{} / {} ({:.0} %)", format_iec(c), format_iec(m), c as f64 * 100.0 / m.max(1) as f64)
                }
                (Some(c), None) => format_iec(c),
                _ => "-".into(),
            };
            t.add_row(vec![
                a.id.clone(),
                match a.stalled {
                    true => format!("{} (stalled)", a.state),
                    false => a.state.to_string(),
                },
                a.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                a.uptime_seconds
                    .map(|s| human_duration(std::time::Duration::from_secs(s)))
                    .unwrap_or_else(|| "-".into()),
                memory,
                a.memory_peak_bytes.map(format_iec).unwrap_or_else(|| "-".into()),
                a.pids_current.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                a.cpu_percent.map(|c| format!("{c:.0} %")).unwrap_or_else(|| "-".into()),
                deadlines(a),
                workspace(a),
                a.record_error.clone().or_else(|| a.cause.clone()).unwrap_or_default(),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    for bad in &report.bad_records {
        out.push_str(&format!("unreadable record {}: {}\n", bad.path.display(), bad.error));
    }
    out
}

/// The leased slot's name (the path otherwise), and the leased ports.
fn workspace(a: &AgentStatus) -> String {
    // An agent shown from its cgroup (no readable record) has no known workspace.
    let path = if a.workspace.as_os_str().is_empty() { "-".to_string() } else { a.workspace.display().to_string() };
    let mut text = a.workspace_slot.clone().unwrap_or(path);
    if let (Some(base), Some(n)) = (a.port_base, a.port_count) {
        text.push_str(&format!(", ports {base}-{}", base + (n - 1)));
    }
    text
}

/// "soft 14m 3s, hard 29m 3s" while they are ahead; what already fired is left out.
fn deadlines(a: &AgentStatus) -> String {
    let left = |s: Option<i64>, name: &str| {
        s.filter(|s| *s > 0).map(|s| format!("{name} {}", human_duration(std::time::Duration::from_secs(s as u64))))
    };
    let parts: Vec<String> = [left(a.soft_deadline_in_seconds, "soft"), left(a.hard_deadline_in_seconds, "hard")]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{agent::sample::status::BadRecordStatus, render::fixtures};
    use fleet_core::state::AgentState;

    #[test]
    fn the_table_shows_the_host_each_agent_and_unreadable_records() {
        let mut ended = fixtures::agent("done", AgentState::Exited);
        ended.cause = Some("exited with status 0".into());
        let mut no_record = fixtures::agent("stray", AgentState::Orphaned);
        no_record.workspace = Default::default();
        no_record.memory_current_bytes = Some(512);
        no_record.cause = Some("the cause is not shown".into());
        no_record.record_error = Some("it has no record".into());
        let report = StatusReport {
            schema: 1,
            host: fixtures::host(),
            agents: vec![fixtures::running("web"), no_record, ended],
            bad_records: vec![BadRecordStatus { path: "/state/x/state.json".into(), error: "EOF".into() }],
        };
        let text = render_table(&report);
        assert_eq!(text, include_str!("testdata/status.txt"), "\n{text}");
    }

    #[test]
    fn an_empty_fleet_without_psi_says_so() {
        let mut host = fixtures::host();
        (host.pressure_some_avg10, host.pressure_full_avg10) = (None, None);
        host.agents_by_state.clear();
        host.budget_source = fleet_core::meminfo::BudgetSource::FleetRoot;
        let text = render_table(&StatusReport { schema: 1, host, agents: vec![], bad_records: vec![] });
        assert_eq!(
            text,
            "fleet memory: 1.0 GiB of 4.0 GiB used (25.0 %), 3.0 GiB available; spawn stops at 85 %, kill at 95 %\n\
             budget: fleet root memory.max; pressure: no PSI; swap: 0 B of 2.0 GiB; layout: cgroup v2 (unified)\n\
             fleet root: /cgroup/fleet; agents: none\n\
             no agents\n"
        );
    }
}
