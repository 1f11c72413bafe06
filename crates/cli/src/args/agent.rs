//! The subcommands that make, run in and end one agent: `spawn` (with its cgroup limits),
//! `cgroup-create`, `run-in-cgroup`, `kill` and `logs`.

use super::parse::{
    parse_duration, parse_label, parse_log_size, parse_memory_limit, parse_pids, parse_port_range, parse_selector,
    parse_signal, parse_size, parse_swap_limit, parse_timeout,
};
use clap::{Args, ValueEnum};
use fleet_core::{id::AgentId, labels::Selector, size::Limit};
use std::{path::PathBuf, time::Duration};

/// Limits an agent's cgroup gets; unset ones come from the config file or the defaults.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Hard memory limit; the OOM killer ends the agent beyond it. Given alone, the memory
    /// high follows at 3/4 of it [default: 4G]
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit, allow_hyphen_values = true)]
    pub memory_max: Option<Limit>,
    /// Where the kernel starts reclaiming and throttling [default: 3/4 of the memory max]
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit, allow_hyphen_values = true)]
    pub memory_high: Option<Limit>,
    /// Swap the agent may use [default: 0]
    #[arg(long, value_name = "SIZE", value_parser = parse_swap_limit, allow_hyphen_values = true)]
    pub swap_max: Option<Limit>,
    /// Maximum number of tasks (processes and threads) [default: 512]
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pub pids_max: Option<Limit>,
}

/// Start an agent in its own cgroup under a detached supervisor
#[derive(Debug, Args)]
#[command(after_help = "Example: fleetctl spawn agent-001 ws-001 -- cargo build")]
pub struct SpawnArgs {
    /// The agent's id: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit
    #[arg(allow_hyphen_values = true, value_parser = AgentId::parse_new)]
    pub id: AgentId,
    /// A workspace path, a name under the workspace root (ws-001), or `auto` for a free slot of
    /// the workspace pool
    pub workspace: String,
    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Stay attached: stream the output and exit with the agent's code; Ctrl-C stops the agent
    #[arg(long)]
    pub wait: bool,
    /// Never choose this agent when relieving memory pressure
    #[arg(long)]
    pub protect: bool,
    /// A label KEY=VALUE for selectors (`-l KEY=VALUE` on status, kill ...); repeatable
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Refuse to spawn when fleet memory use, with agents still starting counted at their start
    /// reserve (this one too), would reach this percentage [default: 85]
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub spawn_threshold: Option<u8>,
    /// Where admission would refuse (memory, a pool, the agent cap), wait in line instead,
    /// first come first served, until admitted or until TIMEOUT passes (then exit 75)
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true, default_missing_value = "off", value_parser = parse_timeout)]
    pub queue: Option<Timeout>,
    /// Refuse (or, with --queue, wait) while the fleet has this many agents [default: no cap]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_agents: Option<u32>,
    /// Memory admission counts for this agent for as long as it lives, when it uses less [default: off]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_reserve: Option<u64>,
    /// Size at which the agent's log is rotated (one old file is kept) [default: 64M]
    #[arg(long, value_name = "SIZE", value_parser = parse_log_size)]
    pub log_max_size: Option<u64>,
    /// Print the started agent as JSON (docs/spawn-json.md)
    #[arg(long, conflicts_with = "wait")]
    pub json: bool,
    /// Limits for the agent's cgroup. Its help heading carries on to the fields after it, so
    /// each of those names its own.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// When the agent's main process gets SIGUSR1, a warning to wrap up; "off" for never [default: 15m]
    #[arg(help_heading = "Timeouts", long, value_name = "DURATION", value_parser = parse_timeout)]
    pub soft_timeout: Option<Timeout>,
    /// When every process of the agent gets SIGTERM, then the kill; "off" for never [default: 30m]
    #[arg(help_heading = "Timeouts", long, value_name = "DURATION", value_parser = parse_timeout)]
    pub hard_timeout: Option<Timeout>,
    /// Time between SIGTERM and the kill when the hard timeout fires [default: 10s]
    #[arg(help_heading = "Timeouts", long, value_name = "DURATION", value_parser = parse_duration)]
    pub kill_grace: Option<Duration>,
    /// Restart the agent's command when it fails
    #[arg(help_heading = "Restarts", long, value_enum, default_value_t = RestartArg::Never)]
    pub restart: RestartArg,
    /// First restart delay; it doubles after each failure, up to 5 minutes
    #[arg(help_heading = "Restarts", long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub restart_backoff: Duration,
    /// Failures within 10 minutes that stop restarts (state crash-loop)
    #[arg(help_heading = "Restarts", long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub crash_loop_after: u32,
    /// Lease a block of N consecutive free ports ($FLEET_PORT_BASE, $FLEET_PORTS)
    #[arg(help_heading = "Leases", long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub ports: Option<u16>,
    /// Where port blocks come from [default: 20000-29999]
    #[arg(help_heading = "Leases", long, value_name = "LOW-HIGH", value_parser = parse_port_range)]
    pub port_range: Option<(u16, u16)>,
    /// Who the agent runs as: a user (name or uid), optionally :GROUP; "auto" for a uid of its
    /// own from agent.uid_range [default: agent.user, or the user who ran sudo]
    #[arg(help_heading = "Who and where it runs", long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Set a variable in the agent's environment (repeatable)
    #[arg(help_heading = "Who and where it runs", long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Set the variables of FILE's KEY=VALUE lines (repeatable; # starts a comment)
    #[arg(help_heading = "Who and where it runs", long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Pass your own value of variable NAME to the agent (repeatable)
    #[arg(help_heading = "Who and where it runs", long, value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// Where the agent starts: a directory inside its workspace [default: the workspace]
    #[arg(help_heading = "Who and where it runs", long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Let setuid binaries raise the agent's privileges (no no_new_privs)
    #[arg(help_heading = "Who and where it runs", long)]
    pub allow_new_privs: bool,
    /// Send this signal to the main process when the agent stalls on memory (pressure above
    /// agent.stall_threshold for agent.stall_after), so it can shed memory
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal)]
    pub stall_signal: Option<String>,
    /// Send this signal to the main process before relief or the guard kills the agent, and
    /// give it their --save-grace to save its state
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal)]
    pub save_signal: Option<String>,
    /// What a stall does besides marking the agent `stalled` and the signal
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = OnStall::Mark)]
    pub on_stall: OnStall,
}

/// What a stalled agent gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnStall {
    /// Only marked (and signalled if asked): it runs on
    Mark,
    /// Killed: a restartable end in state `stalled`, restarted under --restart on-failure
    Kill,
}

/// The restart policy as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartArg {
    /// Never restart
    Never,
    /// Restart after a failure or OOM kill, never after a kill or timeout
    OnFailure,
}

/// `fleetctl kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Agents to stop
    #[arg(required_unless_present_any = ["all", "selector"], conflicts_with_all = ["all", "selector"])]
    pub ids: Vec<AgentId>,
    /// Stop every agent of the fleet
    #[arg(long, conflicts_with = "selector")]
    pub all: bool,
    /// Stop every running agent whose labels match (e.g. batch=42, 'team in (a,b)')
    #[arg(short = 'l', long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub selector: Option<Selector>,
    /// Kill the whole cgroup at once, without SIGTERM or grace
    #[arg(long)]
    pub force: bool,
    /// Time between SIGTERM and the kill
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,
}

/// `fleetctl logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The agent
    #[arg(allow_hyphen_values = true, required_unless_present = "selector", conflicts_with = "selector")]
    pub id: Option<AgentId>,
    /// Every agent whose labels match, each log under a `==> ID <==` line
    #[arg(short = 'l', long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub selector: Option<Selector>,
    /// Keep printing new output until the agent ends
    #[arg(short, long, conflicts_with = "selector")]
    pub follow: bool,
    /// Print only the last N lines
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<usize>,
}

/// `fleetctl restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Agents to stop (if running) and start again as their records say
    #[arg(required = true)]
    pub ids: Vec<AgentId>,
    /// Time between SIGTERM and the kill when stopping
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,
}

/// `fleetctl cgroup-create`.
#[derive(Debug, Args)]
pub struct CgroupCreateArgs {
    /// The cgroup's name under the fleet root's agents/ (the agent id rule applies)
    #[arg(allow_hyphen_values = true, value_parser = AgentId::parse_new)]
    pub name: AgentId,
    /// Its limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `fleetctl run-in-cgroup`.
#[derive(Debug, Args)]
pub struct RunInCgroupArgs {
    /// The agent (or cgroup-create name) whose cgroup to run in
    #[arg(allow_hyphen_values = true)]
    pub id: AgentId,
    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// A timeout that may be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No timeout.
    Off,
    /// Fires after this long.
    After(Duration),
}

impl Timeout {
    /// The duration, if on.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Timeout::Off => None,
            Timeout::After(d) => Some(d),
        }
    }
}
