//! `fleetctl metrics`: the host and every agent in Prometheus text format.

use crate::out::out;
use crate::{agent::sample::metrics, context::Ctx, exit::Exit};
use anyhow::Result;

/// Entry point.
pub fn run(ctx: &Ctx) -> Result<Exit> {
    out!("{}", metrics::text(ctx)?)?;
    Ok(Exit::Ok)
}
