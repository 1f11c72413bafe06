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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        agent::relief::{Plan, Step},
        render::fixtures::MIB,
    };
    use fleet_core::meminfo::BudgetSource;

    fn budget(used_mib: u64) -> Budget {
        Budget { total: 1000 * MIB, used: used_mib * MIB, source: BudgetSource::Host, swap_total: 0, swap_used: 0 }
    }

    #[test]
    fn a_plan_lists_its_victims_and_names_the_spared() {
        let step = |id: &str, mib: u64, freed: u64| Step {
            id: id.into(),
            bytes: mib * MIB,
            freed_so_far: freed * MIB,
            projected_used: (960 - freed) * MIB,
        };
        let plan = Plan {
            steps: vec![step("a", 200, 200), step("b", 100, 300)],
            reaches_target: true,
            protected: vec!["db".into(), "ci".into()],
        };
        let text = render_plan(&plan, &budget(960), 70, true);
        assert_eq!(text, include_str!("testdata/relief-plan.txt"), "\n{text}");
        let real = render_plan(&plan, &budget(960), 70, false);
        assert!(real.ends_with("plan: kill 2 agent(s); sparing protected db, ci\n"), "{real}");
    }

    #[test]
    fn an_empty_plan_says_why() {
        let none = |reaches_target| Plan { steps: vec![], reaches_target, protected: vec!["db".into()] };
        let head = "fleet at 50.0 % (500.0 MiB of 1000.0 MiB); target below 70 %\n";
        assert_eq!(render_plan(&none(true), &budget(500), 70, false), format!("{head}nothing to kill\n"));
        assert_eq!(render_plan(&none(false), &budget(500), 70, false), format!("{head}no agent can be killed\n"));
    }

    #[test]
    fn a_kill_line_says_what_it_freed() {
        let id: AgentId = "a".parse().expect("id");
        assert_eq!(
            render_step(&id, 200 * MIB, &budget(960), &budget(750)),
            "killed a (held 200.0 MiB): fleet 96.0 % -> 75.0 %, freed 210.0 MiB"
        );
    }
}
