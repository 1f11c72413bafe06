//! The `status` table: the host header and one row per agent.

use super::columns::{Column, Layout, cut, render};
use crate::agent::sample::status::{AgentStatus, StatusReport};
use fleet_core::{size::format_iec, timefmt::human_duration};

/// The table's columns; the `drop` ranks say which go first when the width runs out: the
/// counters (tasks, CPU, pid), then the deadlines, the share of the limit, the reservation,
/// run time and peak; the id, state, memory, workspace and cause stay longest, the cause cut
/// first.
const COLUMNS: [Column; 17] = [
    Column::new("ID", 0).flex(),
    Column::new("STATE", 0),
    Column::new("PID", 9).right(),
    Column::new("RUNTIME", 5).right(),
    Column::new("MEMORY", 3).right(),
    Column::new("RESERVED", 6).right(),
    Column::new("% MAX", 7).right(),
    Column::new("MAX", 0).right().wide(),
    Column::new("PEAK", 4).right(),
    Column::new("PIDS", 11).right(),
    Column::new("CPU", 10).right(),
    Column::new("DEADLINES", 8),
    Column::new("WORKSPACE", 2),
    Column::new("PORTS", 0).wide(),
    Column::new("RESTARTS", 0).right().wide(),
    Column::new("LABELS", 0).wide(),
    Column::new("EXIT / CAUSE", 1).flex(),
];

/// The human rendering: the host's lines, then one row per agent.
pub fn render_table(report: &StatusReport, layout: Layout) -> String {
    let h = &report.host;
    let counts: Vec<String> = h.agents_by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let header = [
        format!(
            "fleet memory: {} of {} used ({:.1} %), {} available",
            format_iec(h.used_bytes),
            format_iec(h.budget_bytes),
            h.used_percent,
            format_iec(h.available_bytes),
        ),
        format!(
            "spawn stops at {} %, kill at {} %; budget: {}",
            h.spawn_threshold,
            h.kill_threshold,
            match h.budget_source {
                fleet_core::meminfo::BudgetSource::Host => "host MemTotal",
                fleet_core::meminfo::BudgetSource::FleetRoot => "fleet root memory.max",
            },
        ),
        format!(
            "pressure: {}; swap: {} of {}",
            match (h.pressure_some_avg10, h.pressure_full_avg10) {
                (Some(s), Some(f)) => format!("some {s:.2} % full {f:.2} %"),
                _ => "no PSI".into(),
            },
            format_iec(h.swap_used_bytes),
            format_iec(h.swap_total_bytes),
        ),
        format!(
            "layout: {}; agents: {}",
            h.layout,
            if counts.is_empty() { "none".to_string() } else { counts.join(", ") }
        ),
        format!("fleet root: {}", h.fleet_root.display()),
    ];
    let mut out = String::new();
    if !layout.no_headers {
        for line in header {
            let line = match layout.width {
                Some(w) if !layout.wide => cut(&line, w),
                _ => line,
            };
            out.push_str(&line);
            out.push('\n');
        }
        if report.agents.is_empty() {
            out.push_str("no agents\n");
        }
    }
    if !report.agents.is_empty() {
        let rows: Vec<Vec<String>> = report.agents.iter().map(row).collect();
        out.push_str(&render(&COLUMNS, &rows, layout));
    }
    for bad in &report.bad_records {
        out.push_str(&format!("unreadable record {}: {}\n", bad.path.display(), bad.error));
    }
    out
}

/// One agent's cells, in [`COLUMNS`]' order.
fn row(a: &AgentStatus) -> Vec<String> {
    let dash = || "-".to_string();
    let size = |v: Option<u64>| v.map(format_iec).unwrap_or_else(dash);
    let secs = |s: Option<u64>| s.map(|s| human_duration(std::time::Duration::from_secs(s)));
    vec![
        a.id.clone(),
        match a.stalled {
            true => format!("{} (stalled)", a.state),
            false => a.state.to_string(),
        },
        a.pid.map(|p| p.to_string()).unwrap_or_else(dash),
        // While it runs, how long so far; once ended, how long it ran.
        secs(a.uptime_seconds).or_else(|| secs(a.ran_seconds)).unwrap_or_else(dash),
        size(a.memory_current_bytes),
        size(a.memory_reserve_bytes),
        a.memory_percent_of_max.map(|p| format!("{p:.0} %")).unwrap_or_else(dash),
        a.memory_max_bytes.map(format_iec).unwrap_or_else(|| "max".into()),
        size(a.memory_peak_bytes),
        a.pids_current.map(|p| p.to_string()).unwrap_or_else(dash),
        a.cpu_percent.map(|c| format!("{c:.0} %")).unwrap_or_else(dash),
        deadlines(a),
        workspace(a),
        match (a.port_base, a.port_count) {
            (Some(base), Some(n)) => format!("{base}-{}", base + (n - 1)),
            _ => dash(),
        },
        a.restarts.to_string(),
        labels(a),
        a.record_error.clone().or_else(|| a.cause.clone()).unwrap_or_default(),
    ]
}

/// The workspace in one form, running or ended: its slot's name (`ws-001`) when it is a pool
/// slot, its path otherwise.
fn workspace(a: &AgentStatus) -> String {
    // An agent shown from its cgroup (no readable record) has no known workspace.
    match &a.slot_name {
        Some(slot) => slot.clone(),
        None if a.workspace.as_os_str().is_empty() => "-".to_string(),
        None => a.workspace.display().to_string(),
    }
}

/// The LABELS cell of the wide view: `batch=42,team=a`, sorted by key, as a selector would
/// match them; "-" for none.
fn labels(a: &AgentStatus) -> String {
    let pairs: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() { "-".into() } else { pairs.join(",") }
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

    fn report(agents: Vec<AgentStatus>) -> StatusReport {
        StatusReport { schema: 1, host: fixtures::host(), agents, bad_records: vec![] }
    }

    /// An agent OOM-killed after 95 s in slot ws-003, at the peak its supervisor recorded.
    fn oom_killed(id: &str) -> AgentStatus {
        let mut a = fixtures::agent(id, AgentState::OomKilled);
        a.cause = Some("OOM-killed at its 64.0 MiB memory limit (1 kill(s))".into());
        (a.ran_seconds, a.memory_peak_bytes) = (Some(95), Some(64 * fixtures::MIB));
        (a.workspace, a.slot_name) = ("/var/lib/fleet/workspaces/ws-003".into(), Some("ws-003".into()));
        a
    }

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
            bad_records: vec![BadRecordStatus { path: "/state/x/state.json".into(), error: "EOF".into() }],
            ..report(vec![fixtures::running("web"), no_record, ended])
        };
        let text = render_table(&report, Layout::default());
        assert_eq!(text, include_str!("testdata/status.txt"), "\n{text}");
        assert!(!text.contains('│') && !text.contains('─'), "no box drawing into a pipe");
    }

    #[test]
    fn each_agent_is_one_row_that_fits_the_width() {
        let agents: Vec<AgentStatus> = (1..=12)
            .map(|n| {
                if n % 3 == 0 {
                    oom_killed(&format!("agent-{n:03}"))
                } else {
                    fixtures::running(&format!("agent-{n:03}"))
                }
            })
            .collect();
        for width in [80, 120] {
            let text = render_table(&report(agents.clone()), Layout { width: Some(width), ..Layout::default() });
            assert!(text.lines().all(|l| l.chars().count() <= width), "at {width}:\n{text}");
            let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("agent-")).collect();
            assert_eq!(rows.len(), 12, "one line per agent at {width}:\n{text}");
            assert!(rows.iter().all(|r| r.contains("running") || r.contains("oom-killed")), "{text}");
        }
        let narrow = render_table(&report(agents.clone()), Layout { width: Some(80), ..Layout::default() });
        assert_eq!(narrow, include_str!("testdata/status-80.txt"), "\n{narrow}");
    }

    #[test]
    fn one_long_id_is_cut_not_the_other_columns() {
        let long = "a".repeat(64);
        let agents = vec![fixtures::running(&long), fixtures::running("web")];
        let text = render_table(&report(agents), Layout { width: Some(80), ..Layout::default() });
        let header = text.lines().find(|l| l.starts_with("ID")).expect("a header");
        assert!(header.contains("STATE") && header.contains("MEMORY"), "the columns stay:\n{text}");
        let row = text.lines().find(|l| l.starts_with("aaaa")).expect("the long id's row");
        assert!(row.contains('…') && row.chars().count() <= 80, "cut to fit:\n{text}");
    }

    #[test]
    fn the_reservation_is_shown_beside_the_use_without_wide() {
        let text = render_table(&report(vec![fixtures::running("web")]), Layout::default());
        let header = text.lines().find(|l| l.starts_with("ID")).expect("the header");
        let (memory, reserved) = (header.find("MEMORY"), header.find("RESERVED"));
        assert!(memory.is_some() && reserved.is_some() && memory < reserved, "{header}");
        assert!(text.lines().any(|l| l.starts_with("web") && l.contains("128.0 MiB")), "{text}");
    }

    #[test]
    fn an_ended_agent_keeps_its_peak_run_time_and_slot_name() {
        let text = render_table(&report(vec![oom_killed("big")]), Layout::default());
        let row = text.lines().find(|l| l.starts_with("big")).expect("a row");
        assert!(row.contains("1m 35s") && row.contains("64.0 MiB") && row.contains("ws-003"), "{row}");
        assert!(!row.contains("/var/lib"), "the slot's name, as while it ran: {row}");
    }

    #[test]
    fn wide_shows_every_column_and_no_headers_only_the_rows() {
        let wide = render_table(
            &report(vec![fixtures::running("web")]),
            Layout { width: Some(40), wide: true, ..Layout::default() },
        );
        let header = wide.lines().find(|l| l.starts_with("ID")).expect("the header");
        for column in COLUMNS {
            assert!(header.contains(column.header), "{} in -o wide: {header}", column.header);
        }
        assert!(wide.contains("20000-20009"), "{wide}");
        let rows = render_table(
            &report(vec![fixtures::running("web"), oom_killed("big")]),
            Layout { no_headers: true, ..Layout::default() },
        );
        assert_eq!(rows.lines().count(), 2, "{rows}");
        assert!(rows.starts_with("web ") && rows.lines().nth(1).is_some_and(|l| l.starts_with("big ")), "{rows}");
    }

    #[test]
    fn labels_read_as_a_selector_would_match_them() {
        let mut a = fixtures::running("b1");
        assert_eq!(labels(&a), "-");
        a.labels = [("team", "a"), ("batch", "42"), ("tier", "")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(labels(&a), "batch=42,team=a,tier=");
    }

    #[test]
    fn an_empty_fleet_without_psi_says_so() {
        let mut host = fixtures::host();
        (host.pressure_some_avg10, host.pressure_full_avg10) = (None, None);
        host.agents_by_state.clear();
        host.budget_source = fleet_core::meminfo::BudgetSource::FleetRoot;
        let text =
            render_table(&StatusReport { schema: 1, host, agents: vec![], bad_records: vec![] }, Layout::default());
        assert_eq!(
            text,
            "fleet memory: 1.0 GiB of 4.0 GiB used (25.0 %), 3.0 GiB available\n\
             spawn stops at 85 %, kill at 95 %; budget: fleet root memory.max\n\
             pressure: no PSI; swap: 0 B of 2.0 GiB\n\
             layout: cgroup v2 (unified); agents: none\n\
             fleet root: /cgroup/fleet\n\
             no agents\n"
        );
    }
}
