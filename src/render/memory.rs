//! The `memory` table: one row per agent and the totals against the budget.

use crate::agent::sample::memory::MemoryReport;
use fleet_core::size::format_iec;

/// The human rendering.
pub fn render_table(r: &MemoryReport) -> String {
    let opt = |v: Option<u64>| v.map(format_iec).unwrap_or_else(|| "max".into());
    let mut t = super::table(&[
        "ID",
        "CURRENT",
        "RESERVED",
        "HIGH",
        "MAX",
        "% MAX",
        "PEAK",
        "EVENTS high/max/oom/kill",
        "PSI some/full",
    ]);
    for a in &r.agents {
        let protect = if a.protect { " (protected)" } else { "" };
        t.add_row(vec![
            format!("{}{protect}", a.id),
            format_iec(a.current_bytes),
            a.reserve_bytes.map(format_iec).unwrap_or_else(|| "-".into()),
            opt(a.high_bytes),
            opt(a.max_bytes),
            a.percent_of_max.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "-".into()),
            a.peak_bytes.map(format_iec).unwrap_or_else(|| "-".into()),
            format!("{}/{}/{}/{}", a.events.high, a.events.max, a.events.oom, a.events.oom_kill),
            format!("{:.2}/{:.2}", a.pressure_some_avg10, a.pressure_full_avg10),
        ]);
    }
    let x = &r.totals;
    t.add_row(vec![
        format!("TOTAL ({} agents)", x.agents),
        format_iec(x.current_bytes),
        String::new(),
        String::new(),
        format!("budget {}", format_iec(x.budget_bytes)),
        format!("{:.1} % used", x.used_percent),
        String::new(),
        format!("spawn stops at {} %", x.spawn_threshold),
        format!("kill at {} %", x.kill_threshold),
    ]);
    format!("{t}\n")
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
        let text = render_table(&report);
        assert_eq!(text, include_str!("testdata/memory.txt"), "\n{text}");
    }
}
