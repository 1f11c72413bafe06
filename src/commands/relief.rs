//! `fleetctl relief TARGET [--order largest|newest|oldest] [--protect ID] [--grace 5s] [--dry-run]`:
//! kill agents until fleet memory use is below TARGET percent of the budget.
//!
//! The plan is computed from one measurement and printed. A real run then kills the plan's
//! first victim, waits for its cgroup to empty, measures again and re-plans
//! (`agent::relief::relieve`), so it stops as soon as the target is reached and never kills
//! on a stale estimate.

use crate::{
    agent::{
        relief::{Outcome, Relief, measure, relieve, stuck_message},
        take_host_lock,
    },
    context::Ctx,
    exit::{Exit, Fail},
    render::relief::{render_plan, render_step},
};
use anyhow::Result;
use fleet_cli::{ReliefArgs, ReliefOrder};
use fleet_core::size::format_iec;

/// Entry point.
pub fn run(ctx: &Ctx, args: ReliefArgs) -> Result<Exit> {
    let v = args.victims;
    if v.order == ReliefOrder::Growth {
        // One measurement cannot tell who is growing (docs/decisions.md).
        return Err(Fail::error(
            Exit::Usage,
            "relief measures once and cannot see growth: use --order newest, or `watch --auto-kill --order growth`, which samples",
        ));
    }
    // Two reliefs at once would each kill for the same shortfall.
    let _lock = take_host_lock(ctx, "relief", "another relief is running; let it finish")?;

    let relief = Relief {
        target_percent: args.target,
        order: v.order,
        by: "relief".into(),
        grace: v.grace,
        save_grace: v.save_grace,
        growth: Default::default(),
    };
    let measured = measure(ctx, &relief, &v.protect)?;
    let (budget, first) = (*measured.budget(), measured.plan(&relief));
    print!("{}", render_plan(&first, &budget, args.target, args.dry_run));
    if args.dry_run {
        if first.reaches_target {
            return Ok(Exit::Ok);
        }
        return Err(Fail::error(Exit::Partial, stuck_message(&first, &budget, args.target, 0)));
    }
    let outcome = relieve(ctx, &relief, &v.protect, Some(measured), |k| {
        println!("{}", render_step(&k.id, k.bytes, &k.before, &k.after))
    })?;
    match outcome {
        Outcome::Reached { kills, budget } => {
            println!(
                "fleet at {:.1} % ({}), below the {} % target after {kills} kill(s)",
                budget.percent(),
                format_iec(budget.used),
                args.target
            );
            Ok(Exit::Ok)
        }
        Outcome::Stuck { message, .. } => Err(Fail::error(Exit::Partial, message)),
    }
}
