//! `fleetctl cgroup-create NAME [limits]`: the low-level piece the seed's
//! `create-agent-cgroup.sh` was. Idempotent: an existing cgroup gets the limits again.

use crate::out::outln;
use crate::{
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::Result;
use fleet_cli::CgroupCreateArgs;

/// Entry point.
pub fn run(ctx: &Ctx, args: CgroupCreateArgs) -> Result<Exit> {
    let limits = ctx.agent.limits_with(&args.limits);
    limits.validate().map_err(|m| Fail::error(Exit::Usage, m))?;
    crate::systemd::scope::require(ctx)?;
    crate::systemd::scope::make_fleet_root(ctx, false)?;
    let cgroup = ctx.fleet.agent(&args.name);
    let created = cgroup.create()? > 0;
    if let Err(e) = cgroup.apply_limits(&limits) {
        if created {
            let _ = cgroup.remove();
        }
        return Err(e.into());
    }
    let verb = if created { "created" } else { "exists; limits applied" };
    outln!("{}: {verb}", args.name)?;
    for dir in cgroup.dirs() {
        outln!("  {}", dir.display())?;
    }
    Ok(Exit::Ok)
}
