//! Starting one run of the agent's command: in its cgroup before its first instruction, in
//! its workspace, with its output piped to the supervisor and the FLEET_* environment.

use super::{
    launch::{Launch, Prepared},
    oom_group::OomGroup,
};
use crate::agent::plan::{StallPlan, SupervisorPlan};
use anyhow::{Context, Result};
use fleet_core::{
    cgroup::{Cgroup, OomWatch, Placement, StallTrigger, stall_window},
    timefmt::rfc3339,
};
use nix::{fcntl::OFlag, unistd::pipe2};
use std::{
    ffi::{OsStr, OsString},
    fs::File,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
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
    pub oom: Option<OomGroup>,
    /// The memory-pressure trigger that tells a stall, when stalls are watched; or why it
    /// could not be armed (the agent runs on unwatched).
    pub pressure: Option<Result<StallTrigger, String>>,
}

/// A run made ready before its cgroup exists: for the first run, while `spawn` makes the
/// cgroup, so that the caller waits only for the clone and the exec.
pub struct NextRun {
    launch: Prepared,
    output: File,
    output_write: OwnedFd,
    stdin: File,
    placed: Option<Placed>,
    /// The plan's procfs, for [`NextRun::place`].
    proc_root: PathBuf,
    /// The plan's stall watch, for [`NextRun::place`].
    stall: Option<StallPlan>,
}

/// What needs the cgroup to exist, though not its limits yet.
struct Placed {
    /// On v1 hosts, the OOM notification that lets us kill the whole agent. Registered
    /// before the command starts, so not even its first allocation can OOM unseen.
    oom: Option<OomWatch>,
    /// The cgroup opened for the command to be born in or to join.
    placement: Placement,
    /// Armed before the command starts, like the OOM notification.
    pressure: Option<Result<StallTrigger, String>>,
}

impl Placed {
    fn open(cgroup: &Cgroup, proc_root: &Path, stall: Option<&StallPlan>) -> Result<Placed> {
        let pressure = stall.map(|s| {
            StallTrigger::arm(cgroup, s.threshold_percent, stall_window(s.after))
                .map_err(|e| format!("stalls on memory are not watched: {e}"))
        });
        Ok(Placed { oom: OomWatch::register(cgroup)?, placement: Placement::open(cgroup, proc_root)?, pressure })
    }
}

impl NextRun {
    /// Opens what the start needs of `cgroup`, which must exist (for the first run, while
    /// `spawn` is still writing its limits).
    pub fn place(&mut self, cgroup: &Cgroup) -> Result<()> {
        self.placed = Some(Placed::open(cgroup, &self.proc_root, self.stall.as_ref())?);
        Ok(())
    }
}

/// Prepares a run of the agent's command: its output pipe, argv, environment and path.
pub fn prepare(plan: &SupervisorPlan) -> Result<NextRun> {
    let (read_end, output_write) = pipe2(OFlag::O_CLOEXEC).context("cannot create the output pipe")?;
    let output = File::from(read_end);
    set_nonblocking(&output)?;
    let ports = plan.ports;
    let text = |v: String| Some(OsString::from(v));
    let env = vec![
        ("FLEET_AGENT_ID", text(plan.id.to_string())),
        ("FLEET_WORKSPACE", Some(plan.workspace.clone().into_os_string())),
        ("FLEET_CGROUP", Some(plan.cgroup.memory_dir().as_os_str().to_owned())),
        ("FLEET_MEMORY_MAX", text(plan.limits.memory_max.to_v2())),
        ("FLEET_MEMORY_HIGH", text(plan.limits.memory_high.to_v2())),
        // Set by `start`, from the moment the run starts.
        ("FLEET_SOFT_DEADLINE", None),
        ("FLEET_HARD_DEADLINE", None),
        ("FLEET_SCRATCH", plan.scratch.clone().map(PathBuf::into_os_string)),
        ("FLEET_PORT_BASE", ports.and_then(|p| text(p.base.to_string()))),
        ("FLEET_PORTS", ports.and_then(|p| text(p.count.to_string()))),
    ];
    let launch = Prepared::new(Launch {
        program: &plan.command[0],
        args: &plan.command[1..],
        cwd: plan.cwd.as_ref().unwrap_or(&plan.workspace),
        base_env: &plan.env,
        env,
        credentials: plan.credentials.as_ref(),
        no_new_privs: plan.no_new_privs,
    })
    .with_context(|| format!("cannot start '{}'", plan.command[0]))?;
    let stdin = File::open("/dev/null").context("cannot open /dev/null")?;
    Ok(NextRun {
        launch,
        output,
        output_write,
        stdin,
        placed: None,
        proc_root: plan.proc_root.clone(),
        stall: plan.stall.clone(),
    })
}

/// Starts a prepared run. The cgroup must exist with its limits. With `reset_oom_score`, the
/// command gives up the supervisor's OOM protection before it starts.
pub fn start(plan: &SupervisorPlan, mut next: NextRun, reset_oom_score: bool) -> Result<Running> {
    let mut placed = match next.placed.take() {
        Some(placed) => placed,
        None => Placed::open(&plan.cgroup, &plan.proc_root, plan.stall.as_ref())?,
    };
    placed.placement.set_oom_score_reset(reset_oom_score);
    let started_at = SystemTime::now();
    let mut launch = next.launch;
    for (key, timeout) in [("FLEET_SOFT_DEADLINE", plan.soft_timeout), ("FLEET_HARD_DEADLINE", plan.hard_timeout)] {
        if let Some(d) = timeout {
            launch.set_env(key, OsStr::new(&rfc3339(started_at + d)))?;
        }
    }
    let pid = launch
        .start(next.stdin.into(), next.output_write, &placed.placement)
        .with_context(|| format!("cannot start '{}' in {}", plan.command[0], plan.workspace.display()))?;
    // `start` closed our copy of the pipe's write end: EOF now means every process of the
    // agent that held it is gone.
    Ok(Running {
        pid,
        output: next.output,
        started: Instant::now(),
        started_at,
        oom: placed.oom.map(OomGroup::new),
        pressure: placed.pressure,
    })
}

fn set_nonblocking(file: &File) -> Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL).context("F_GETFL")?);
    fcntl(file, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).context("F_SETFL")?;
    Ok(())
}
