//! The `memory` report; `--json` schema 1 (documented in `docs/memory-json.md`).

use fleet_core::{cgroup::MemoryEvents, size::format_iec, state::AgentState};
use serde::Serialize;

/// The `--json` schema version.
pub const MEMORY_SCHEMA: u32 = 1;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct MemoryReport {
    /// [`MEMORY_SCHEMA`].
    pub schema: u32,
    /// Sorted rows.
    pub agents: Vec<AgentMemory>,
    /// The totals row and the budget.
    pub totals: Totals,
}

/// One agent.
#[derive(Debug, Serialize)]
pub struct AgentMemory {
    pub id: String,
    pub state: AgentState,
    pub current_bytes: u64,
    pub high_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub percent_of_max: Option<f64>,
    pub peak_bytes: Option<u64>,
    pub events: MemoryEvents,
    pub pressure_some_avg10: f64,
    pub pressure_full_avg10: f64,
    pub protect: bool,
}

/// Totals against the budget.
#[derive(Debug, Serialize)]
pub struct Totals {
    pub agents: usize,
    pub current_bytes: u64,
    pub budget_bytes: u64,
    pub used_bytes: u64,
    pub used_percent: f64,
    pub spawn_threshold: u8,
    pub kill_threshold: u8,
}

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
