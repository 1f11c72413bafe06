//! `fleetctl memory [--sort COLUMN] [--json]`: per-agent memory against the fleet budget.

use crate::out::{out, outln};
use crate::{agent::sample::memory::report, context::Ctx, exit::Exit, render::memory::render_table};
use anyhow::Result;
use fleet_cli::MemoryArgs;

/// Entry point.
pub fn run(ctx: &Ctx, args: MemoryArgs) -> Result<Exit> {
    let report = report(ctx, args.sort)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", render_table(&report))?;
    }
    Ok(Exit::Ok)
}
