//! `fleetctl spawn ID WORKSPACE [options] -- COMMAND…`: start an agent under its own
//! supervisor. The work is `agent::spawn`'s, which `restart` shares.

use crate::{context::Ctx, exit::Exit};
use anyhow::Result;
use fleet_cli::SpawnArgs;

/// Entry point.
pub fn run(ctx: &Ctx, args: SpawnArgs) -> Result<Exit> {
    crate::agent::spawn::run(ctx, args)
}
