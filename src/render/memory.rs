//! The `memory` table: one row per agent and the totals against the budget.

use super::columns::{Column, Layout, cut, render};
use crate::agent::sample::memory::MemoryReport;
use fleet_core::size::format_iec;

/// The table's columns; as the width runs out, pressure goes first, then memory.high, the
/// event counters and the peak, then the reservation; the id, the use, the limit and its
/// share stay.
const COLUMNS: [Column; 9] = [
    Column::new("ID", 0).flex(),
    Column::new("CURRENT", 0).right(),
    Column::new("RESERVED", 3).right(),
    Column::new("HIGH", 6).right(),
    Column::new("MAX", 2).right(),
    Column::new("% MAX", 1).right(),
    Column::new("PEAK", 4).right(),
    Column::new("EVENTS high/max/oom/kill", 5),
    Column::new("PSI some/full", 7),
];

/// The human rendering: one row per agent, then the totals against the budget.
pub fn render_table(r: &MemoryReport, layout: Layout) -> String {
    let opt = |v: Option<u64>| v.map(format_iec).unwrap_or_else(|| "max".into());
    let rows: Vec<Vec<String>> = r
        .agents
        .iter()
        .map(|a| {
            let protect = if a.protect { " (protected)" } else { "" };
            vec![
                format!("{}{protect}", a.id),
                format_iec(a.current_bytes),
                a.reserve_bytes.map(format_iec).unwrap_or_else(|| "-".into()),
                opt(a.high_bytes),
                opt(a.max_bytes),
                a.percent_of_max.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "-".into()),
                a.peak_bytes.map(format_iec).unwrap_or_else(|| "-".into()),
                format!("{}/{}/{}/{}", a.events.high, a.events.max, a.events.oom, a.events.oom_kill),
                format!("{:.2}/{:.2}", a.pressure_some_avg10, a.pressure_full_avg10),
            ]
        })
        .collect();
    let mut out =
        if rows.is_empty() && !layout.no_headers { "no agents\n".to_string() } else { render(&COLUMNS, &rows, layout) };
    if !layout.no_headers {
        let x = &r.totals;
        let totals = format!(
            "TOTAL ({} agents): {}; fleet {} of {} ({:.1} %); spawn stops at {} %, kill at {} %",
            x.agents,
            format_iec(x.current_bytes),
            format_iec(x.used_bytes),
            format_iec(x.budget_bytes),
            x.used_percent,
            x.spawn_threshold,
            x.kill_threshold
        );
        out.push_str(&match layout.width {
            Some(w) if !layout.wide => cut(&totals, w),
            _ => totals,
        });
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        agent::sample::memory::{AgentMemory, Totals},
        render::fixtures::MIB,
    };
    use fleet_core::{cgroup::MemoryEvents, state::AgentState};

    #[test]
    fn the_table_has_a_row_per_agent_and_the_totals() {
        let row = |id: &str, current, max: Option<u64>, protect| AgentMemory {
            id: id.into(),
            state: AgentState::Running,
            current_bytes: current,
            reserve_bytes: (id == "big").then_some(224 * MIB),
            high_bytes: None,
            max_bytes: max,
            percent_of_max: max.map(|m| fleet_core::meminfo::percent_1dp(current, m)),
            peak_bytes: Some(current * 2),
            events: MemoryEvents { high: 1, max: 2, oom: 3, oom_kill: 4 },
            pressure_some_avg10: 1.5,
            pressure_full_avg10: 0.0,
            protect,
        };
        let report = MemoryReport {
            schema: 1,
            agents: vec![row("big", 192 * MIB, Some(256 * MIB), true), row("small", 1000, None, false)],
            totals: Totals {
                agents: 2,
                current_bytes: 192 * MIB + 1000,
                budget_bytes: 4096 * MIB,
                used_bytes: 1024 * MIB,
                used_percent: 25.0,
                spawn_threshold: 85,
                kill_threshold: 95,
            },
        };
        let text = render_table(&report, Layout::default());
        assert_eq!(text, include_str!("testdata/memory.txt"), "\n{text}");
        let narrow = render_table(&report, Layout { width: Some(60), ..Layout::default() });
        assert_eq!(narrow, include_str!("testdata/memory-60.txt"), "\n{narrow}");
        assert!(narrow.lines().all(|l| l.chars().count() <= 60), "\n{narrow}");
        let rows = render_table(&report, Layout { no_headers: true, width: Some(60), wide: true });
        assert_eq!(rows.lines().count(), 2, "rows only, every column:\n{rows}");
        assert!(rows.contains("1.50/0.00"), "{rows}");
    }
}
