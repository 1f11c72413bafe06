//! The argument structs: raw input, checked only for shape. Commands turn them into a
//! validated plan before touching the system.

use clap::{Args, Parser, Subcommand, ValueEnum};
use fleet_core::{id::AgentId, size::Limit, state::AgentState};
use std::{path::PathBuf, time::Duration};

/// Run hundreds of coding agents on one Linux host without running out of memory.
///
/// Each agent runs in its own memory-limited cgroup under a small supervisor of its own;
/// there is no daemon. Memory is the only hard constraint: spawns are refused when the fleet
/// is near its budget, and every agent's end is recorded with its cause.
#[derive(Debug, Parser)]
#[command(name = "fleetctl", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Paths every command shares.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `fleetctl spawn …` and nothing else: [`Cli`] with one subcommand. Its settings must stay
/// those of `Cli` (a test compares the two parsers); [`crate::parse_from`] says why it exists.
#[derive(Debug, Parser)]
#[command(name = "fleetctl", version, propagate_version = true, max_term_width = 100)]
pub struct SpawnCli {
    /// Paths every command shares.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Always spawn.
    #[command(subcommand)]
    pub command: SpawnOnly,
}

/// The one subcommand [`SpawnCli`] knows.
#[derive(Debug, Subcommand)]
pub enum SpawnOnly {
    // Its help text is on `SpawnArgs`, as in `Command`.
    Spawn(SpawnArgs),
}

impl From<SpawnCli> for Cli {
    fn from(cli: SpawnCli) -> Cli {
        let SpawnOnly::Spawn(args) = cli.command;
        Cli { global: cli.global, command: Command::Spawn(args) }
    }
}

/// Where fleetctl finds the fleet. Flags win over environment variables, which win over the
/// config file.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// The fleet root cgroup; a relative path nests under your own cgroup [default: /fleet]
    #[arg(long, env = "FLEET_CGROUP_PARENT", global = true, value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Per-agent state and locks [default: /run/fleet]
    #[arg(long, env = "FLEET_STATE_DIR", global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Per-agent logs and the event journal [default: /var/log/fleet]
    #[arg(long, env = "FLEET_LOG_DIR", global = true, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Where workspace names such as ws-001 resolve [default: /var/lib/fleet/workspaces]
    #[arg(long, env = "FLEET_WORKSPACE_ROOT", global = true, value_name = "DIR")]
    pub workspace_root: Option<PathBuf>,
    /// Where each agent gets its scratch dir ($FLEET_SCRATCH), a tmpfs after setup-host [default: /var/lib/fleet/scratch]
    #[arg(long, env = "FLEET_SCRATCH_ROOT", global = true, value_name = "DIR")]
    pub scratch_root: Option<PathBuf>,
    /// Lease files every fleet on the host shares: one per workspace pool, one for ports [default: /run/lock/fleet]
    #[arg(long, env = "FLEET_LOCK_DIR", global = true, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// Thresholds and defaults (TOML) [default: /etc/fleet/fleet.toml if present]
    #[arg(long, env = "FLEET_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "made once per run: spawn's flags need no box")]
pub enum Command {
    // Its help text is on `SpawnArgs`, so that `SpawnCli` shows the same.
    Spawn(SpawnArgs),
    /// Stop agents: SIGTERM to every process, a grace period, then kill the whole cgroup
    Kill(KillArgs),
    /// Show an agent's output
    Logs(LogsArgs),
    /// The host and every agent on one screen
    Status(StatusArgs),
    /// Per-agent memory: usage, limits, events and pressure, largest first
    Memory(MemoryArgs),
    /// The event journal: spawns, exits and their causes, timeouts, OOM kills, relief
    Events(EventsArgs),
    /// Kill agents, largest first, until fleet memory use is below TARGET percent
    #[command(after_help = "Example: sudo fleetctl relief 75 --dry-run")]
    Relief(ReliefArgs),
    /// The host and every agent in Prometheus text format
    Metrics,
    /// Live view of fleet memory; with --auto-kill, the protected memory guard
    Watch(WatchArgs),
    /// Collect what no live process owns: old records of ended agents, empty cgroups, scratch dirs
    Gc(GcArgs),
    /// Prepare this host for a fleet: cgroups, kernel parameters, workspace pool, scratch tmpfs
    #[command(after_help = "Example: sudo fleetctl setup-host --dry-run")]
    SetupHost(SetupHostArgs),
    /// Check that this host is ready for a fleet, with a fix for each failing line
    Doctor(DoctorArgs),
    /// Create (or update) a leaf cgroup under the fleet root with limits
    CgroupCreate(CgroupCreateArgs),
    /// Run a command inside an existing agent's cgroup, in the foreground
    RunInCgroup(RunInCgroupArgs),
}

/// Limits an agent's cgroup gets; unset ones come from the config file or the defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// Hard memory limit; the OOM killer ends the agent beyond it [default: 4G]
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
    pub memory_max: Option<Limit>,
    /// Where the kernel starts reclaiming and throttling [default: 3G]
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
    pub memory_high: Option<Limit>,
    /// Swap the agent may use [default: 0]
    #[arg(long, value_name = "SIZE", value_parser = parse_limit)]
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
    /// A workspace path, or a name under the workspace root
    pub workspace: String,
    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Limits for the agent's cgroup.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// When the agent's main process gets SIGUSR1, a warning to wrap up; "off" for never [default: 15m]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub soft_timeout: Option<Timeout>,
    /// When every process of the agent gets SIGTERM, then the kill; "off" for never [default: 30m]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub hard_timeout: Option<Timeout>,
    /// Time between SIGTERM and the kill when the hard timeout fires [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub kill_grace: Option<Duration>,
    /// Restart the agent's command when it fails
    #[arg(long, value_enum, default_value_t = RestartArg::Never)]
    pub restart: RestartArg,
    /// First restart delay; it doubles after each failure, up to 5 minutes
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub restart_backoff: Duration,
    /// Failures within 10 minutes that stop restarts (state crash-loop)
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub crash_loop_after: u32,
    /// Stay attached: stream the output and exit with the agent's code; Ctrl-C stops the agent
    #[arg(long)]
    pub wait: bool,
    /// Never choose this agent when relieving memory pressure
    #[arg(long)]
    pub protect: bool,
    /// Refuse to spawn when fleet memory use, with agents still starting counted at their start
    /// reserve (this one too), would reach this percentage [default: 85]
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub spawn_threshold: Option<u8>,
    /// Size at which the agent's log is rotated (one old file is kept) [default: 64M]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub log_max_size: Option<u64>,
    /// Lease a block of N consecutive free ports ($FLEET_PORT_BASE, $FLEET_PORTS)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub ports: Option<u16>,
    /// Where port blocks come from [default: 20000-29999]
    #[arg(long, value_name = "LOW-HIGH", value_parser = parse_port_range)]
    pub port_range: Option<(u16, u16)>,
    /// Who the agent runs as: a user (name or uid), optionally :GROUP; "auto" for a uid of its
    /// own from agent.uid_range [default: agent.user, or the user who ran sudo]
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Set a variable in the agent's environment (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Set the variables of FILE's KEY=VALUE lines (repeatable; # starts a comment)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Pass your own value of variable NAME to the agent (repeatable)
    #[arg(long, value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// Where the agent starts: a directory inside its workspace [default: the workspace]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Let setuid binaries raise the agent's privileges (no no_new_privs)
    #[arg(long)]
    pub allow_new_privs: bool,
}

/// `fleetctl setup-host`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("mode").args(["dry_run", "check", "revert"]))]
pub struct SetupHostArgs {
    /// Print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Change nothing; exit 1 listing what is missing (for config management)
    #[arg(long)]
    pub check: bool,
    /// Undo what earlier runs changed, from their manifest
    #[arg(long)]
    pub revert: bool,
    /// Prefix for every file path setup-host touches (tests apply it to a temp tree)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Run only these steps (dirs, cgroups, swap, sysctl, workspaces, scratch, delegate, watcher)
    #[arg(long, value_name = "STEP,...", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these steps
    #[arg(long, value_name = "STEP,...", value_delimiter = ',')]
    pub skip: Vec<String>,
    /// The fleet's memory budget: memory.max on the fleet root
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub fleet_memory_max: Option<u64>,
    /// Workspace slots to create (ws-001 ...)
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=99_999))]
    pub slots: u32,
    /// Size cap of the scratch tmpfs: a size (16G) or a percentage of RAM (10%)
    #[arg(long, value_name = "SIZE", default_value = "10%", value_parser = parse_tmpfs_size)]
    pub scratch_size: String,
    /// Also turn host swap off and comment it out of fstab (agents get swap 0 regardless)
    #[arg(long)]
    pub swapoff: bool,
    /// Let USER run fleetctl on the fleet subtree without root (cgroup v2 delegation)
    #[arg(long, value_name = "USER")]
    pub delegate: Option<String>,
}

/// `fleetctl doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The same prefix setup-host was given
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
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
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<AgentId>,
    /// Stop every agent of the fleet
    #[arg(long)]
    pub all: bool,
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
    #[arg(allow_hyphen_values = true)]
    pub id: AgentId,
    /// Keep printing new output until the agent ends
    #[arg(short, long)]
    pub follow: bool,
    /// Print only the last N lines
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<usize>,
}

/// `fleetctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show only these agents
    pub ids: Vec<AgentId>,
    /// Show only agents in these states (comma-separated)
    #[arg(long, value_delimiter = ',', value_parser = parse_state)]
    pub state: Vec<AgentState>,
    /// One JSON object: {"schema", "host", "agents"}
    #[arg(long)]
    pub json: bool,
}

/// `fleetctl memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Sort by this column, largest first
    #[arg(long, value_enum, default_value_t = MemorySort::Current)]
    pub sort: MemorySort,
    /// One JSON object: {"schema", "budget", "agents", "totals"}
    #[arg(long)]
    pub json: bool,
}

/// Columns `memory --sort` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MemorySort {
    /// Memory in use now
    Current,
    /// Percent of the agent's own limit
    Percent,
    /// Most ever used
    Peak,
    /// OOM kills
    OomKills,
    /// Memory pressure (PSI some avg10)
    Pressure,
    /// Agent id (ascending)
    Id,
}

/// `fleetctl events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this agent's events
    #[arg(allow_hyphen_values = true)]
    pub id: Option<AgentId>,
    /// Only events newer than this long ago (e.g. 1h, 30m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Keep printing new events as they are written
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line, as written in the journal
    #[arg(long)]
    pub json: bool,
}

/// `fleetctl relief`.
#[derive(Debug, Args)]
pub struct ReliefArgs {
    /// Kill until fleet memory use is below this percentage of the budget (1-99)
    #[arg(value_parser = parse_target, allow_hyphen_values = true)]
    pub target: u8,
    /// Which agents to kill, and how.
    #[command(flatten)]
    pub victims: VictimArgs,
    /// Print the plan (victims, memory freed, projected use) and kill nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// How relief and the watcher's guard choose and stop victims: one definition, so the two
/// take the same options. Their defaults differ (`WatchArgs` overrides them).
#[derive(Debug, Clone, Args)]
pub struct VictimArgs {
    /// Which agents go first
    #[arg(long, value_enum, default_value_t = ReliefOrder::Largest)]
    pub order: ReliefOrder,
    /// Never kill this agent (repeatable); agents spawned with --protect are always spared
    #[arg(long, value_name = "ID")]
    pub protect: Vec<AgentId>,
    /// Time between SIGTERM and the kill, per victim
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub grace: Duration,
}

/// The order relief and the guard pick victims in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReliefOrder {
    /// Largest memory first: the fewest kills that reach the target
    Largest,
    /// Most recently started first: the least work lost
    Newest,
    /// Longest running first
    Oldest,
    /// The agent that grew the most over the last 10 s first (then largest): the runaway.
    /// Only the watcher, which samples, knows growth
    #[value(alias = "growing")]
    Growth,
}

/// `fleetctl watch`.
#[derive(Debug, Args)]
#[command(
    mut_arg("order", |a| a.default_value("growth").requires("auto_kill")),
    mut_arg("grace", |a| a.default_value("0s").requires("auto_kill")),
    mut_arg("protect", |a| a.requires("auto_kill"))
)]
pub struct WatchArgs {
    /// At or above the kill threshold (95 %), kill agents (by --order, protected spared)
    /// until use is below the spawn threshold (85 %)
    #[arg(long)]
    pub auto_kill: bool,
    /// How often to refresh when memory is calm (at least 100ms); it samples faster as
    /// headroom shrinks
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, default_value = "1s")]
    pub interval: Duration,
    /// Rewrite this file atomically each tick with `fleetctl metrics` output (for
    /// node_exporter's textfile collector)
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Which agents the guard kills, and how (with --auto-kill).
    #[command(flatten)]
    pub victims: VictimArgs,
}

/// `fleetctl gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Collect records of agents that ended longer ago than this
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "24h")]
    pub older_than: Duration,
    /// Also delete logs of collected agents
    #[arg(long)]
    pub logs: bool,
    /// Print what would be collected and change nothing
    #[arg(long)]
    pub dry_run: bool,
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

/// Parses a memory limit ("4G", "512M", "max").
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    text.parse()
}

/// The smallest memory limit taken. Below it not even a shell starts, and a number there is
/// almost always a missing unit: `--memory-max 10` meaning 10G.
pub const MIN_MEMORY_LIMIT: u64 = 1 << 20;

/// Parses `--memory-max` and `--memory-high`: a limit of at least [`MIN_MEMORY_LIMIT`].
pub fn parse_memory_limit(text: &str) -> Result<Limit, String> {
    match parse_limit(text)? {
        Limit::Bytes(n) if n < MIN_MEMORY_LIMIT => {
            let unitless = text.trim().bytes().all(|b| b.is_ascii_digit());
            let hint = if unitless {
                format!(" (a number alone is bytes: did you mean {}G?)", text.trim())
            } else {
                String::new()
            };
            Err(format!("a memory limit of {} cannot run anything: give at least 1M{hint}", Limit::Bytes(n)))
        }
        limit => Ok(limit),
    }
}

/// Parses a byte size (no "max").
pub fn parse_size(text: &str) -> Result<u64, String> {
    fleet_core::size::parse_bytes(text)
}

/// `20000-29999`: an inclusive port range.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port range '{text}': give LOW-HIGH with 1 <= LOW <= HIGH <= 65535, e.g. 20000-29999");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// A tmpfs `size=`: bytes with an IEC suffix, or a percentage of RAM from 1 to 100.
pub fn parse_tmpfs_size(text: &str) -> Result<String, String> {
    if let Some(pct) = text.strip_suffix('%') {
        return match pct.parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(text.to_string()),
            _ => Err(format!("invalid size '{text}': a percentage must be 1% to 100%")),
        };
    }
    let bytes = fleet_core::size::parse_bytes(text)?;
    if bytes < 1 << 20 {
        return Err(format!("invalid size '{text}': give at least 1M"));
    }
    Ok(bytes.to_string())
}

/// Parses a task count or "max".
pub fn parse_pids(text: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(Limit::Max);
    }
    match text.parse::<u64>() {
        Ok(0) => Err("pids max must be at least 1 (or 'max')".into()),
        Ok(n) => Ok(Limit::Bytes(n)),
        Err(_) => Err(format!("invalid task count '{text}': use a whole number such as 512, or 'max'")),
    }
}

/// Parses "10s", "15m", "1h 30m" (humantime); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration '{text}' ({e}): use e.g. 10s, 15m, 1h30m"))
}

/// The shortest refresh `watch --interval` takes: below it the view would redraw faster
/// than anyone reads it, and 0 would spin a core. The guard's own sampling speeds up near
/// the threshold whatever the interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Parses `watch --interval`: a duration of at least [`MIN_INTERVAL`].
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d < MIN_INTERVAL => Err(format!("an interval of {text} is too short: give at least 100ms, e.g. 1s")),
        d => Ok(d),
    }
}

/// Parses a duration or "off".
pub fn parse_timeout(text: &str) -> Result<Timeout, String> {
    if matches!(text, "off" | "none" | "never") {
        return Ok(Timeout::Off);
    }
    match parse_duration(text)? {
        d if d.is_zero() => Err("a timeout of 0 would fire at once: give a duration, or 'off' for no timeout".into()),
        d => Ok(Timeout::After(d)),
    }
}

/// Parses a relief target percentage.
pub fn parse_target(text: &str) -> Result<u8, String> {
    match text.trim_end_matches('%').parse::<u8>() {
        Ok(n) if (1..=99).contains(&n) => Ok(n),
        _ => Err(format!("invalid target '{text}': give a percentage of the fleet budget from 1 to 99, e.g. 75")),
    }
}

/// Parses a state name from the status contract.
pub fn parse_state(text: &str) -> Result<AgentState, String> {
    AgentState::ALL.into_iter().find(|s| s.name() == text).ok_or_else(|| {
        let names: Vec<&str> = AgentState::ALL.iter().map(|s| s.name()).collect();
        format!("unknown state '{text}': use one of {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        crate::command().debug_assert();
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("15m"), Ok(Timeout::After(Duration::from_secs(900))));
        assert_eq!(parse_timeout("2"), Ok(Timeout::After(Duration::from_secs(2))));
        assert_eq!(parse_timeout("off"), Ok(Timeout::Off));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").unwrap_err().contains("e.g. 10s"));
    }

    #[test]
    fn memory_limits_have_a_floor_that_names_a_missing_unit() {
        assert_eq!(parse_memory_limit("512M"), Ok(Limit::Bytes(512 << 20)));
        assert_eq!(parse_memory_limit("max"), Ok(Limit::Max));
        assert!(parse_memory_limit("10").unwrap_err().contains("did you mean 10G?"));
        let err = parse_memory_limit("64K").unwrap_err();
        assert!(err.contains("at least 1M") && !err.contains("did you mean"), "{err}");
    }

    #[test]
    fn watch_intervals_have_a_floor() {
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("0.1"), Ok(MIN_INTERVAL));
        assert!(parse_interval("0").unwrap_err().contains("at least 100ms"));
        assert!(parse_interval("10ms").is_err());
    }

    #[test]
    fn ids_with_a_leading_dash_reach_the_id_rule() {
        let err = Cli::try_parse_from(["fleetctl", "spawn", "-rf", "ws", "--", "true"]).unwrap_err().to_string();
        assert!(err.contains("starting with a letter or digit"), "{err}");
    }

    #[test]
    fn spawn_parses_the_same_through_either_definition() {
        let lines: &[&[&str]] = &[
            &["a1", "ws", "--", "cargo", "build", "-j8"],
            &["--memory-max", "2G", "--swap-max", "max", "--wait", "--ports", "4", "a1", "/w", "--", "sleep", "1"],
            &["a1", "ws", "--state-dir", "/tmp/s", "--soft-timeout", "off", "--restart", "on-failure", "--", "x"],
            &["-rf", "ws", "--", "true"],
            &["../x", "ws", "--", "true"],
            &["a1", "ws"],
            &["a1"],
            &[],
            &["--memory-max", "lots", "a1", "ws", "--", "x"],
            &["--bogus", "a1", "ws", "--", "x"],
            &["--restart", "sometimes", "a1", "ws", "--", "x"],
            &["--help"],
            &["-h"],
            &["--version"],
        ];
        for line in lines {
            let argv: Vec<&str> = ["fleetctl", "spawn"].into_iter().chain(line.iter().copied()).collect();
            let full = Cli::try_parse_from(&argv);
            let fast = crate::parse_from(&argv);
            match (full, fast) {
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{argv:?}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{argv:?}");
                    assert_eq!(a.render().to_string(), b.render().to_string(), "{argv:?}");
                }
                (a, b) => panic!("{argv:?}: the full definition gave {a:?}, spawn's alone {b:?}"),
            }
        }
    }

    #[test]
    fn spawn_needs_a_command() {
        assert!(Cli::try_parse_from(["fleetctl", "spawn", "a1", "ws"]).is_err());
        let ok = Cli::try_parse_from(["fleetctl", "spawn", "a1", "ws", "--", "cargo", "build", "-j8"]).expect("parse");
        let Command::Spawn(args) = ok.command else { panic!("spawn expected") };
        assert_eq!(args.command, ["cargo", "build", "-j8"]);
    }
}
