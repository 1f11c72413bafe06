//! `fleetctl run-in-cgroup ID -- CMD…`: a command in an existing agent's cgroup, placed
//! before exec, in the foreground, counted against the agent's limits.

use crate::{
    agent::place::place_before_exec,
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::{Context, Result};
use fleet_cli::RunInCgroupArgs;
use std::{os::unix::process::ExitStatusExt, process::Command};

/// Entry point.
pub fn run(ctx: &Ctx, args: RunInCgroupArgs) -> Result<Exit> {
    let cgroup = ctx.fleet.agent(&args.id);
    if !cgroup.exists() {
        return Err(Fail::error(
            Exit::NoSuchAgent,
            format!(
                "no cgroup for {} under {}: spawn the agent or `fleetctl cgroup-create {}` first",
                args.id,
                ctx.fleet.agents().unified.display(),
                args.id
            ),
        ));
    }
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    place_before_exec(&mut cmd, &cgroup, &ctx.proc_root)?;
    // The command shares our terminal: Ctrl-C reaches it directly, and we wait for its
    // verdict instead of dying first and leaving it running unattended.
    // SAFETY: setting a signal disposition to SIG_IGN has no handler to be unsafe about.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = cmd.spawn().with_context(|| format!("cannot start '{}'", args.command[0]))?.wait()?;
    Ok(Exit::Code(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))))
}
