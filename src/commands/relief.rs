//! `fleetctl relief TARGET [--order largest|newest|oldest] [--protect ID|SELECTOR] [--grace 5s] [--dry-run]`:
//! kill agents until fleet memory use is below TARGET percent of the budget.
//!
//! The plan is computed from one measurement and printed. A real run then kills the first
//! half of the plan's victims side by side, waits for their cgroups to empty, measures again
//! and re-plans (`agent::relief::relieve`), so the last kills are made one at a time and it
//! stops as soon as the target is reached.

use crate::out::{out, outln};
use crate::{
    agent::{
        relief::{Kill, Outcome, Plan, Relief, measure, relieve, stuck_message},
        take_host_lock,
    },
    context::Ctx,
    exit::{Exit, Fail},
    render::relief::{render_plan, render_step},
};
use anyhow::Result;
use fleet_cli::{Protected, ReliefArgs, ReliefOrder};
use fleet_core::{meminfo::Budget, size::format_iec};
use serde_json::{Value, json};

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
    // A protecting selector that matches nobody is most likely a typo, and relief would then
    // kill the agents it was meant to spare: refuse before anything is measured or killed.
    for protected in &v.protect {
        if let Protected::Selector(selector) = protected {
            crate::agent::select::matching_ids(ctx, selector)?;
        }
    }
    // Two reliefs at once would each kill for the same shortfall. A dry run kills nothing,
    // so it takes no lock and works read-only (beside a running relief, too).
    let _lock = match args.dry_run {
        true => None,
        false => Some(take_host_lock(ctx, "relief", "another relief is running; let it finish")?),
    };

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
    let mut doc = args.json.then(|| plan_json(&first, &budget, args.target, args.dry_run));
    if doc.is_none() {
        out!("{}", render_plan(&first, &budget, args.target, args.dry_run))?;
    }
    if args.dry_run {
        let stuck = (!first.reaches_target).then(|| stuck_message(&first, &budget, args.target, 0));
        return finish(doc, budget, stuck);
    }
    // A line that cannot be written must not stop relief between kills: the first such
    // error is returned once relief is done.
    let mut unwritten = None;
    let outcome = relieve(ctx, &relief, &v.protect, Some(measured), |k| match &mut doc {
        Some(doc) => doc["kills"].as_array_mut().into_iter().for_each(|kills| kills.push(kill_json(k))),
        None => {
            if let Err(e) = outln!("{}", render_step(&k.id, k.bytes, &k.before, &k.after)) {
                unwritten.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = unwritten {
        return Err(e);
    }
    match outcome {
        Outcome::Reached { kills, budget } => {
            if doc.is_none() {
                outln!(
                    "fleet at {:.1} % ({}), below the {} % target after {kills} kill(s)",
                    budget.percent(),
                    format_iec(budget.used),
                    args.target
                )?;
            }
            finish(doc, budget, None)
        }
        Outcome::Stuck { message } => {
            let end = fleet_core::meminfo::Budget::measure(&ctx.fleet, &ctx.proc_root)?;
            finish(doc, end, Some(message))
        }
    }
}

/// Prints the JSON document, if asked for, with how relief ended; a target not reached is
/// exit 3 with its one line on stderr either way.
fn finish(doc: Option<Value>, end: Budget, stuck: Option<String>) -> Result<Exit> {
    if let Some(mut doc) = doc {
        doc["reached"] = json!(stuck.is_none());
        doc["used_bytes_after"] = json!(end.used);
        doc["used_percent_after"] = json!(end.percent_1dp());
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    }
    match stuck {
        None => Ok(Exit::Ok),
        Some(message) => Err(Fail::error(Exit::Partial, message)),
    }
}

/// `relief --json` before any kill: the measurement and the plan (docs/relief-json.md).
fn plan_json(p: &Plan, budget: &Budget, target: u8, dry_run: bool) -> Value {
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "bytes": s.bytes,
                "freed_so_far_bytes": s.freed_so_far,
                "projected_used_bytes": s.projected_used,
            })
        })
        .collect();
    json!({
        "schema": 1,
        "dry_run": dry_run,
        "target_percent": target,
        "budget_bytes": budget.total,
        "used_bytes": budget.used,
        "used_percent": budget.percent_1dp(),
        "plan": steps,
        "plan_reaches_target": p.reaches_target,
        "protected": p.protected,
        "kills": [],
    })
}

/// One kill of a real run, re-measured once its cgroup was empty.
fn kill_json(k: &Kill) -> Value {
    json!({
        "id": k.id.as_str(),
        "bytes": k.bytes,
        "used_bytes_before": k.before.used,
        "used_bytes_after": k.after.used,
        "freed_bytes": k.before.used.saturating_sub(k.after.used),
    })
}
