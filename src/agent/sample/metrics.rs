//! The fleet's metrics: the status sample at the metrics level of detail, with the journal's
//! counts and the host's pressure totals, rendered for Prometheus. `metrics` prints it and
//! `watch --metrics-file` rewrites a textfile with it.

use super::{Detail, status};
use crate::{
    context::Ctx,
    render::{self, metrics::FleetCounters},
};
use anyhow::Result;

/// The exposition text.
pub fn text(ctx: &Ctx) -> Result<String> {
    let report = status::report(ctx, status::Shown::default(), Detail::Metrics)?;
    // The journal's counts so far: cached with the offset they cover, so a scrape reads only
    // what was appended since the last one.
    let journal = fleet_core::journal_counts::count(&ctx.dirs.journal_path(), &ctx.dirs.journal_counts_path())?;
    let counters = FleetCounters { journal, pressure: fleet_core::meminfo::host_pressure_totals(&ctx.proc_root) };
    Ok(render::metrics::render(&report, &counters))
}
