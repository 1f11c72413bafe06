//! `fleetctl queue [--json]`: the spawns waiting in line (`spawn --queue`).

use crate::{
    context::Ctx,
    exit::Exit,
    render::queue::{QueueReport, render_table},
};
use anyhow::Result;
use fleet_cli::QueueArgs;

/// Entry point.
pub fn run(ctx: &Ctx, args: QueueArgs) -> Result<Exit> {
    let waiters = fleet_core::queue::line(&fleet_core::queue::dir(&ctx.dirs.state))?;
    let report = QueueReport::new(&waiters, std::time::SystemTime::now());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    Ok(Exit::Ok)
}
