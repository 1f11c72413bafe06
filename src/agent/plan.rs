//! The plan `spawn` hands to the supervisor it forks: every decision already made and
//! validated, with absolute paths, so the supervisor needs no flags, config or environment.

use fleet_core::{
    cgroup::{Cgroup, Limits},
    id::AgentId,
    lease::PortBlock,
    paths::Dirs,
    state::RestartPolicy,
};
use std::{ffi::OsString, path::PathBuf, time::Duration};

/// Everything a supervisor needs.
#[derive(Debug, Clone)]
pub struct SupervisorPlan {
    /// The agent.
    pub id: AgentId,
    /// Its working directory, resolved.
    pub workspace: PathBuf,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The agent's leaf cgroup.
    pub cgroup: Cgroup,
    /// Where supervisors live, outside every agent's cgroup.
    pub supervisors: Cgroup,
    /// The agent's limits.
    pub limits: Limits,
    /// SIGUSR1 to the main process after this long.
    pub soft_timeout: Option<Duration>,
    /// SIGTERM to every process after this long, then the kill after `kill_grace`.
    pub hard_timeout: Option<Duration>,
    /// Between SIGTERM and the kill.
    pub kill_grace: Duration,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// First restart delay; doubles up to [`MAX_BACKOFF`].
    pub restart_backoff: Duration,
    /// Failures within [`CRASH_LOOP_WINDOW`] that stop restarts.
    pub crash_loop_after: u32,
    /// Never a relief victim.
    pub protect: bool,
    /// Its labels, for selectors.
    pub labels: fleet_core::labels::Labels,
    /// State and log directories.
    pub state_dir: PathBuf,
    /// Where logs and the journal go.
    pub log_dir: PathBuf,
    /// Log rotation size.
    pub log_max_size: u64,
    /// The agent's scratch directory ($FLEET_SCRATCH), removed when it ends.
    pub scratch: Option<PathBuf>,
    /// The workspace pool slot it leases, if any.
    pub slot: Option<String>,
    /// The ports it leases ($FLEET_PORT_BASE, $FLEET_PORTS).
    pub ports: Option<PortBlock>,
    /// Whether the supervisor holds leases (a slot or ports).
    pub has_leases: bool,
    /// procfs, for everything the supervisor reads or writes there (its own pid's start
    /// time, OOM score and maps, its thread count, the agent's OOM score at start).
    pub proc_root: PathBuf,
    /// Who the agent runs as; `None` keeps the supervisor's user (a delegated fleet).
    pub credentials: Option<crate::agent::identity::Credentials>,
    /// Its environment but the FLEET_* variables (see [`crate::agent::environment`]).
    pub env: Vec<(OsString, OsString)>,
    /// Where it starts, inside the workspace; `None` for the workspace itself.
    pub cwd: Option<PathBuf>,
    /// Sets no_new_privs, so no setuid binary gives it more than it has.
    pub no_new_privs: bool,
    /// What counts as a stall on memory and what it does; None: not watched.
    pub stall: Option<StallPlan>,
    /// The signal relief and the guard send before they kill it (`--save-signal`).
    pub save_signal: Option<String>,
    /// Leave the caller's cgroup for `supervisors/` in the cgroup2 tree before the start, not
    /// in the housekeeping: on hosts where systemd runs, which ends units by their cgroup.
    pub join_early: bool,
}

/// A stall on memory: `full` pressure above `threshold_percent` for `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StallPlan {
    /// Percent of wall time all the agent's tasks waited on memory.
    pub threshold_percent: u8,
    /// How long the pressure must stay above the threshold.
    pub after: Duration,
    /// The signal for the main process (`SIGUSR2` ...), if the agent asked for one.
    pub signal: Option<String>,
    /// Kill it (a restartable end, state `stalled`).
    pub kill: bool,
}

/// The longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The crash-loop breaker's window.
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(600);

impl SupervisorPlan {
    /// The state and log directories as one value.
    pub fn dirs(&self) -> Dirs {
        Dirs { state: self.state_dir.clone(), log: self.log_dir.clone() }
    }
}
