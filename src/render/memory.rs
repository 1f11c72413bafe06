//! The `memory` table: one row per agent and the totals against the budget.

use crate::agent::sample::memory::MemoryReport;
use fleet_core::size::format_iec;

/// The human rendering.
pub fn render_table(r: &MemoryReport) -> String {
    let opt = |v: Option<u64>| v.map(format_iec).unwrap_or_else(|| "max".into());
    let mut t =
        super::table(&["ID", "CURRENT", "HIGH", "MAX", "% MAX", "PEAK", "EVENTS high/max/oom/kill", "PSI some/full"]);
    for a in &r.agents {
        let protect = if a.protect { " (protected)" } else { "" };
        t.add_row(vec![
            format!("{}{protect}", a.id),
            format_iec(a.current_bytes),
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
        format!("budget {}", format_iec(x.budget_bytes)),
        format!("{:.1} % used", x.used_percent),
        String::new(),
        format!("spawn stops at {} %", x.spawn_threshold),
        format!("kill at {} %", x.kill_threshold),
    ]);
    format!("{t}\n")
}
