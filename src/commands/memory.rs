//! `fleetctl memory [--sort COLUMN] [-l SELECTOR] [--json]`: per-agent memory against the
//! fleet budget.

use crate::out::out;
use crate::{agent::sample::memory::report, context::Ctx, exit::Exit, render::memory::render_table};
use anyhow::Result;
use fleet_cli::MemoryArgs;

/// Entry point.
pub fn run(ctx: &Ctx, args: MemoryArgs) -> Result<Exit> {
    let report = report(ctx, args.sort, args.selector.as_ref())?;
    if args.json {
        crate::out::json(&report)?;
    } else {
        out!("{}", render_table(&report, crate::terminal::layout(args.table.wide(), args.table.no_headers)))?;
    }
    // A selector that matches no agent at all (not merely none alive) is most likely a typo.
    if let Some(selector) = &args.selector
        && report.agents.is_empty()
    {
        crate::agent::select::matching_ids(ctx, selector)?;
    }
    Ok(Exit::Ok)
}
