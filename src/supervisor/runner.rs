//! Starting one run of the agent's command: in its cgroup before its first instruction, in
//! its workspace, with its output piped to the supervisor and the FLEET_* environment.

use crate::agent::{place::place_before_exec, plan::SupervisorPlan};
use anyhow::{Context, Result};
use fleet_core::{cgroup::OomWatch, timefmt::rfc3339};
use nix::{fcntl::OFlag, unistd::pipe2};
use std::{
    fs::File,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

/// A run in progress.
pub struct Running {
    /// The main process.
    pub pid: i32,
    /// The read end of the agent's stdout+stderr pipe (non-blocking).
    pub output: File,
    /// When it started, for timeouts.
    pub started: Instant,
    /// The same, on the wall clock.
    pub started_at: SystemTime,
    /// On v1 hosts, the OOM notification that lets us kill the whole agent.
    pub oom: Option<OomWatch>,
}

/// Starts the agent's command. The cgroup must exist with its limits.
pub fn start(plan: &SupervisorPlan) -> Result<Running> {
    // Registered before the command starts, so not even its first allocation can OOM unseen.
    let oom = OomWatch::register(&plan.cgroup)?;
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).context("cannot create the output pipe")?;
    let output = File::from(read_end);
    set_nonblocking(&output)?;

    let started_at = SystemTime::now();
    let deadline = |d: Option<Duration>| d.map(|d| rfc3339(started_at + d));
    let mut cmd = Command::new(&plan.command[0]);
    cmd.args(&plan.command[1..])
        .current_dir(&plan.workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end.try_clone().context("cannot duplicate the output pipe")?))
        .stderr(Stdio::from(write_end))
        .env("FLEET_AGENT_ID", plan.id.as_str())
        .env("FLEET_WORKSPACE", &plan.workspace)
        .env("FLEET_CGROUP", plan.cgroup.memory_dir())
        .env("FLEET_MEMORY_MAX", plan.limits.memory_max.to_v2())
        .env("FLEET_MEMORY_HIGH", plan.limits.memory_high.to_v2())
        // Its own process group, so signals meant for the supervisor's never reach it.
        .process_group(0);
    let ports = plan.ports;
    for (name, value) in [
        ("FLEET_SOFT_DEADLINE", deadline(plan.soft_timeout)),
        ("FLEET_HARD_DEADLINE", deadline(plan.hard_timeout)),
        ("FLEET_SCRATCH", plan.scratch.as_ref().map(|d| d.display().to_string())),
        ("FLEET_PORT_BASE", ports.map(|p| p.base.to_string())),
        ("FLEET_PORTS", ports.map(|p| p.count.to_string())),
    ] {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    place_before_exec(&mut cmd, &plan.cgroup)?;
    let child =
        cmd.spawn().with_context(|| format!("cannot start '{}' in {}", plan.command[0], plan.workspace.display()))?;
    // Dropping `cmd` closed our copies of the pipe's write end: EOF now means every process
    // of the agent that held it is gone.
    Ok(Running { pid: child.id() as i32, output, started: Instant::now(), started_at, oom })
}

fn set_nonblocking(file: &File) -> Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL).context("F_GETFL")?);
    fcntl(file, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).context("F_SETFL")?;
    Ok(())
}
