//! `fleetctl relief TARGET [--order largest|newest|oldest] [--protect ID] [--dry-run]`:
//! kill agents until fleet memory use is below TARGET percent of the budget.
//!
//! The plan is computed from one measurement and printed. A real run then kills the plan's
//! first victim, waits for its cgroup to empty, measures again and re-plans, so it stops as
//! soon as the target is reached and never kills on a stale estimate.

use crate::{
    agent::{
        relief::{Candidate, Plan, plan},
        stop::{StopRequest, stop_agent},
        usage::measure_live,
    },
    context::Ctx,
    exit::{Exit, Fail},
    render::relief::{render_plan, render_step},
};
use anyhow::Result;
use fleet_cli::ReliefArgs;
use fleet_core::{id::AgentId, journal, lock::Lock, meminfo::Budget, size::format_iec};
use serde_json::json;

/// Entry point.
pub fn run(ctx: &Ctx, args: ReliefArgs) -> Result<Exit> {
    // Two reliefs at once would each kill for the same shortfall.
    let lock_path = ctx.dirs.state.join("relief.lock");
    let Some(mut lock) = Lock::try_acquire(&lock_path)? else {
        let who = fleet_core::lock::read_holder(&lock_path).map(|h| format!(" (pid {})", h.pid)).unwrap_or_default();
        return Err(Fail::error(Exit::Busy, format!("another relief is running{who}; let it finish")));
    };
    lock.set_holder("relief")?;

    let (budget, first) = measure_and_plan(ctx, &args)?;
    let target = budget.total * u64::from(args.target) / 100;
    print!("{}", render_plan(&first, &budget, args.target, args.dry_run));
    if args.dry_run {
        return Ok(if first.reaches_target { Exit::Ok } else { cannot_reach(&first, &budget, args.target, 0) });
    }

    let mut kills = 0;
    loop {
        let (before, current) = measure_and_plan(ctx, &args)?;
        if before.used < target {
            println!(
                "fleet at {:.1} % ({}), below the {} % target after {kills} kill(s)",
                before.percent(),
                format_iec(before.used),
                args.target
            );
            return Ok(Exit::Ok);
        }
        let Some(step) = current.steps.first() else {
            return Err(Fail::error(Exit::Partial, cannot_reach_message(&current, &before, args.target, kills)));
        };
        let id: AgentId = step.id.parse().map_err(anyhow::Error::msg)?;
        let req = StopRequest {
            by: "relief".into(),
            detail: Some(format!("fleet at {:.1} %, target {} %", before.percent(), args.target)),
            grace: args.grace,
            force: args.grace.is_zero(),
        };
        stop_agent(ctx, &id, &req)?;
        kills += 1;
        let after = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
        let freed = before.used.saturating_sub(after.used);
        journal::append(
            &ctx.dirs.journal_path(),
            "relief_kill",
            &id,
            json!({
                "used_percent": (before.percent() * 10.0).round() / 10.0,
                "target_percent": args.target,
                "agent_bytes": step.bytes,
                "freed_bytes": freed,
                "used_after_percent": (after.percent() * 10.0).round() / 10.0,
            }),
        )?;
        println!("{}", render_step(&id, step.bytes, &before, &after));
    }
}

/// Measures the budget and every live agent, and plans from them.
fn measure_and_plan(ctx: &Ctx, args: &ReliefArgs) -> Result<(Budget, Plan)> {
    let budget = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let candidates = measure_live(ctx)?
        .into_iter()
        .map(|u| Candidate {
            bytes: u.reclaimable_by_kill(),
            started_at: u.view.record.started_at.unwrap_or(u.view.record.created_at),
            protected: u.view.record.protect || args.protect.contains(&u.view.record.id),
            id: u.view.record.id.to_string(),
        })
        .collect();
    let target = budget.total * u64::from(args.target) / 100;
    Ok((budget, plan(candidates, budget.used, target, args.order)))
}

fn cannot_reach(p: &Plan, budget: &Budget, target: u8, kills: usize) -> Exit {
    eprintln!("fleetctl: {}", cannot_reach_message(p, budget, target, kills));
    Exit::Partial
}

fn cannot_reach_message(p: &Plan, budget: &Budget, target: u8, kills: usize) -> String {
    let why = if p.protected.is_empty() {
        "no agents are left to kill".to_string()
    } else {
        format!("only protected agents are left ({})", p.protected.join(", "))
    };
    let projected = p.steps.last().map(|s| s.projected_used).unwrap_or(budget.used);
    format!(
        "cannot reach {target} %: fleet at {:.1} % after {kills} kill(s), {:.1} % at best; {why}",
        budget.percent(),
        projected as f64 * 100.0 / budget.total.max(1) as f64
    )
}
