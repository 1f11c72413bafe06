//! Starting one run of the agent's command: in its cgroup before its first instruction, in
//! its workspace, with its output piped to the supervisor and the FLEET_* environment.

use super::launch::{Launch, launch};
use crate::agent::plan::SupervisorPlan;
use anyhow::{Context, Result};
use fleet_core::{cgroup::OomWatch, timefmt::rfc3339};
use nix::{fcntl::OFlag, unistd::pipe2};
use std::{
    ffi::OsString,
    fs::File,
    path::PathBuf,
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
    let deadline = |d: Option<Duration>| d.map(|d| OsString::from(rfc3339(started_at + d)));
    let ports = plan.ports;
    let text = |v: String| Some(OsString::from(v));
    let env = vec![
        ("FLEET_AGENT_ID", text(plan.id.to_string())),
        ("FLEET_WORKSPACE", Some(plan.workspace.clone().into_os_string())),
        ("FLEET_CGROUP", Some(plan.cgroup.memory_dir().as_os_str().to_owned())),
        ("FLEET_MEMORY_MAX", text(plan.limits.memory_max.to_v2())),
        ("FLEET_MEMORY_HIGH", text(plan.limits.memory_high.to_v2())),
        ("FLEET_SOFT_DEADLINE", deadline(plan.soft_timeout)),
        ("FLEET_HARD_DEADLINE", deadline(plan.hard_timeout)),
        ("FLEET_SCRATCH", plan.scratch.clone().map(PathBuf::into_os_string)),
        ("FLEET_PORT_BASE", ports.and_then(|p| text(p.base.to_string()))),
        ("FLEET_PORTS", ports.and_then(|p| text(p.count.to_string()))),
    ];
    let stdin = File::open("/dev/null").context("cannot open /dev/null")?;
    let pid = launch(Launch {
        program: &plan.command[0],
        args: &plan.command[1..],
        cwd: &plan.workspace,
        env,
        stdin: stdin.into(),
        output: write_end,
        cgroup: &plan.cgroup,
    })
    .with_context(|| format!("cannot start '{}' in {}", plan.command[0], plan.workspace.display()))?;
    // `launch` closed our copy of the pipe's write end: EOF now means every process of the
    // agent that held it is gone.
    Ok(Running { pid, output, started: Instant::now(), started_at, oom })
}

fn set_nonblocking(file: &File) -> Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL).context("F_GETFL")?);
    fcntl(file, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).context("F_SETFL")?;
    Ok(())
}
