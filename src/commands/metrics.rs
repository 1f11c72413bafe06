//! `fleetctl metrics`: the host and every agent in Prometheus text format.

use crate::{commands::status, context::Ctx, exit::Exit, render};
use anyhow::Result;
use fleet_cli::StatusArgs;

/// Entry point.
pub fn run(ctx: &Ctx) -> Result<Exit> {
    print!("{}", text(ctx)?);
    Ok(Exit::Ok)
}

/// The exposition text, for `metrics` and `watch --metrics-file`.
pub fn text(ctx: &Ctx) -> Result<String> {
    let all = StatusArgs { ids: Vec::new(), state: Vec::new(), json: false };
    Ok(render::metrics::render(&status::build(ctx, &all)?))
}
