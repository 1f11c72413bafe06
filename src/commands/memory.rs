//! `fleetctl memory [--sort COLUMN] [--json]`: per-agent memory against the fleet budget.

use crate::{
    agent::usage::{AgentUsage, Detail, measure_live},
    context::Ctx,
    exit::Exit,
    render::memory::{AgentMemory, MEMORY_SCHEMA, MemoryReport, Totals, render_table},
};
use anyhow::Result;
use fleet_cli::{MemoryArgs, MemorySort};
use fleet_core::{
    meminfo::{Budget, percent_1dp},
    size::Limit,
};

/// Entry point.
pub fn run(ctx: &Ctx, args: MemoryArgs) -> Result<Exit> {
    let budget = Budget::measure(&ctx.fleet, &ctx.proc_root)?;
    let mut agents: Vec<AgentMemory> = measure_live(ctx, Detail::Report)?.iter().map(row).collect();
    sort(&mut agents, args.sort);
    let report = MemoryReport {
        schema: MEMORY_SCHEMA,
        totals: Totals {
            agents: agents.len(),
            current_bytes: agents.iter().map(|a| a.current_bytes).sum(),
            budget_bytes: budget.total,
            used_bytes: budget.used,
            used_percent: budget.percent_1dp(),
            spawn_threshold: ctx.spawn_threshold(),
            kill_threshold: ctx.kill_threshold(),
        },
        agents,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    Ok(Exit::Ok)
}

fn row(u: &AgentUsage) -> AgentMemory {
    let max = u.stats.max.bytes();
    AgentMemory {
        id: u.view.record.id.to_string(),
        state: u.view.state,
        current_bytes: u.stats.current,
        high_bytes: u.high.and_then(Limit::bytes),
        max_bytes: max,
        percent_of_max: max.map(|m| percent_1dp(u.stats.current, m)),
        peak_bytes: u.stats.peak,
        events: u.events,
        pressure_some_avg10: u.pressure.some_avg10,
        pressure_full_avg10: u.pressure.full_avg10,
        protect: u.view.record.protect,
    }
}

fn sort(rows: &mut [AgentMemory], by: MemorySort) {
    let desc = |f: fn(&AgentMemory) -> f64| move |a: &AgentMemory, b: &AgentMemory| f(b).total_cmp(&f(a));
    match by {
        MemorySort::Current => rows.sort_by(desc(|a| a.current_bytes as f64)),
        MemorySort::Percent => rows.sort_by(desc(|a| a.percent_of_max.unwrap_or(0.0))),
        MemorySort::Peak => rows.sort_by(desc(|a| a.peak_bytes.unwrap_or(0) as f64)),
        MemorySort::OomKills => rows.sort_by(desc(|a| a.events.oom_kill as f64)),
        MemorySort::Pressure => rows.sort_by(desc(|a| a.pressure_some_avg10)),
        MemorySort::Id => rows.sort_by(|a, b| a.id.cmp(&b.id)),
    }
}
