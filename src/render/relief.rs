//! Rendering relief's plan and each kill.

use crate::agent::relief::Plan;
use fleet_core::{id::AgentId, meminfo::Budget, size::format_iec};

/// The plan as a table with a summary line.
pub fn render_plan(p: &Plan, budget: &Budget, target: u8, dry_run: bool) -> String {
    let pct = |b: u64| b as f64 * 100.0 / budget.total.max(1) as f64;
    let mut out = format!(
        "fleet at {:.1} % ({} of {}); target below {target} %\n",
        budget.percent(),
        format_iec(budget.used),
        format_iec(budget.total)
    );
    if p.steps.is_empty() {
        out.push_str(if p.reaches_target { "nothing to kill\n" } else { "no agent can be killed\n" });
        return out;
    }
    let mut t = super::table(&["#", "VICTIM", "MEMORY", "FREED SO FAR", "PROJECTED USE"]);
    for (i, s) in p.steps.iter().enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            s.id.clone(),
            format_iec(s.bytes),
            format_iec(s.freed_so_far),
            format!("{} ({:.1} %)", format_iec(s.projected_used), pct(s.projected_used)),
        ]);
    }
    out.push_str(&format!("{t}\n"));
    let verb = if dry_run { "would kill" } else { "plan: kill" };
    out.push_str(&format!("{verb} {} agent(s)", p.steps.len()));
    if !p.protected.is_empty() {
        out.push_str(&format!("; sparing protected {}", p.protected.join(", ")));
    }
    out.push('\n');
    out
}

/// One kill's line.
pub fn render_step(id: &AgentId, bytes: u64, before: &Budget, after: &Budget) -> String {
    format!(
        "killed {id} (held {}): fleet {:.1} % -> {:.1} %, freed {}",
        format_iec(bytes),
        before.percent(),
        after.percent(),
        format_iec(before.used.saturating_sub(after.used))
    )
}
