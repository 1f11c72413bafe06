//! `fleetctl metrics`: the host and every agent in Prometheus text format.

use crate::out::out;
use crate::{
    agent::sample::{Detail, status},
    context::Ctx,
    exit::Exit,
    render,
    render::metrics::FleetCounters,
};
use anyhow::Result;

/// Entry point.
pub fn run(ctx: &Ctx) -> Result<Exit> {
    out!("{}", text(ctx)?)?;
    Ok(Exit::Ok)
}

/// The exposition text, for `metrics` and `watch --metrics-file`.
pub fn text(ctx: &Ctx) -> Result<String> {
    let report = status::report(ctx, status::Shown::default(), Detail::Metrics)?;
    // The journal's counts so far: cached with the offset they cover, so a scrape reads only
    // what was appended since the last one.
    let journal = fleet_core::journal_counts::count(&ctx.dirs.journal_path(), &ctx.dirs.journal_counts_path())?;
    let counters = FleetCounters { journal, pressure: fleet_core::meminfo::host_pressure_totals(&ctx.proc_root) };
    Ok(render::metrics::render(&report, &counters))
}
