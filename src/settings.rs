//! Every setting resolved once, into its type: flags > environment > config file > defaults.
//! As ripgrep goes from low args to high args: clap yields the flags and environment as
//! given ([`GlobalArgs`]), the config file its raw values ([`ConfigFile`]), and
//! [`Settings::resolve`] parses each value once, refuses a bad one with one line naming its
//! key, and picks the winner. Nothing after it parses a setting again: sizes are bytes,
//! durations are durations. A spawn's own flags (`--memory-max`, `--soft-timeout` …) win over
//! [`AgentDefaults`] where they are used.

use crate::{
    agent::admission::START_RESERVE,
    config::ConfigFile,
    exit::{Exit, Fail},
};
use anyhow::Result;
use fleet_cli::{GlobalArgs, LimitArgs, Timeout};
use fleet_core::{cgroup::Limits, size::Limit};
use std::{path::PathBuf, time::Duration};

/// The fleet root when nothing says otherwise, on a host without systemd; on a systemd host it
/// is inside fleetctl's delegated scope ([`fleet_core::host::systemd::FLEET_ROOT`]), the one
/// subtree systemd lets fleetctl manage.
const DEFAULT_CGROUP_PARENT: &str = fleet_core::host::packaging::FLEET_ROOT_WITHOUT_SYSTEMD;
const DEFAULT_STATE_DIR: &str = "/run/fleet";
const DEFAULT_LOG_DIR: &str = "/var/log/fleet";
const DEFAULT_WORKSPACE_ROOT: &str = "/var/lib/fleet/workspaces";
const DEFAULT_SCRATCH_ROOT: &str = "/var/lib/fleet/scratch";
/// Host-wide, like the ports and pools it guards: `/run/lock` is where the FHS puts locks on
/// resources several programs share.
const DEFAULT_LOCK_DIR: &str = "/run/lock/fleet";

/// Where `--ports` blocks come from: below Linux's ephemeral range (32768-60999), so an
/// outgoing connection never takes a leased port.
const DEFAULT_PORT_RANGE: (u16, u16) = (20000, 29999);

/// Default thresholds, percent of the fleet budget (the seed's numbers).
const DEFAULT_SPAWN_THRESHOLD: u8 = 85;
/// The kill threshold.
const DEFAULT_KILL_THRESHOLD: u8 = 95;

const DEFAULT_SOFT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_HARD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_LOG_MAX_SIZE: u64 = 64 << 20;
/// A stall: `full` memory pressure above 50 % (half the time every task of the agent waits
/// on memory) ...
const DEFAULT_STALL_THRESHOLD: u8 = 50;
/// ... for 30 s.
const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(30);

/// Every setting fleetctl takes from outside a command's own flags, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where the fleet lives.
    pub paths: Paths,
    /// When spawning stops and killing starts.
    pub thresholds: Thresholds,
    /// What `spawn` and `cgroup-create` use for what their flags leave out.
    pub agent: AgentDefaults,
    /// `[fleet]`: the fleet as a whole.
    pub fleet: FleetSettings,
}

/// `[fleet]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetSettings {
    /// `fleet.memory_max`: the fleet's budget, the fleet root's memory limit, written
    /// whenever the fleet root is made (None: no limit of its own, the host's memory).
    pub memory_max: Option<u64>,
}

/// `--cgroup-parent`, `--state-dir` … or `[paths]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Paths {
    /// The fleet root cgroup: absolute, or relative to the caller's own cgroup.
    pub cgroup_parent: String,
    /// Records and locks.
    pub state_dir: PathBuf,
    /// Logs and the journal.
    pub log_dir: PathBuf,
    /// Where workspace names resolve.
    pub workspace_root: PathBuf,
    /// Where each agent gets its scratch dir.
    pub scratch_root: PathBuf,
    /// Where the lease files are.
    pub lock_dir: PathBuf,
}

/// `[thresholds]`: percentages of the fleet's memory budget, `spawn` below `kill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Stop spawning at or above this.
    pub spawn: u8,
    /// Start killing at or above this.
    pub kill: u8,
    /// Refuse spawns (or queue them) while the fleet has this many agents; None: no cap.
    pub max_agents: Option<u32>,
}

/// `[agent]`, or the built-in defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDefaults {
    /// The limits an agent's cgroup gets where its flags give none.
    pub limits: Limits,
    /// The file set `memory_max`: a limit the operator typed, which admission warns about
    /// when it is above the budget (the built-in default is not warned about).
    pub memory_max_configured: bool,
    /// SIGUSR1 to the main process after this long; None: never.
    pub soft_timeout: Option<Duration>,
    /// SIGTERM to the whole agent after this long; None: never.
    pub hard_timeout: Option<Duration>,
    /// Between the hard timeout's SIGTERM and the kill.
    pub kill_grace: Duration,
    /// Where the agent's log is rotated.
    pub log_max_size: u64,
    /// Where `--ports` blocks come from, inclusive.
    pub port_range: (u16, u16),
    /// What a starting agent counts for at least at admission.
    pub start_reserve: u64,
    /// `agent.user`: who agents run as when `spawn --user` is not given, as written (a user,
    /// `USER:GROUP` or `auto`; resolved against the host's users at spawn).
    pub user: Option<String>,
    /// `agent.uid_range`: where `--user auto` leases each agent's uid from.
    pub uid_range: Option<std::ops::RangeInclusive<u32>>,
    /// What every agent counts for at least at admission for as long as it lives, unless
    /// its `--memory-reserve` says otherwise; None: off.
    pub memory_reserve: Option<u64>,
    /// A stall on memory: `full` pressure above this percentage ...
    pub stall_threshold: u8,
    /// ... for this long; None: stalls are not watched.
    pub stall_after: Option<Duration>,
}

impl AgentDefaults {
    /// An agent's limits: `flags`, then these. A `--memory-max` alone brings its own
    /// memory high ([`Limits::with_memory`]); only a typed high above a typed (or configured)
    /// max is refused, by [`Limits::validate`].
    pub fn limits_with(&self, flags: &LimitArgs) -> Limits {
        let limits = Limits {
            swap_max: flags.swap_max.unwrap_or(self.limits.swap_max),
            pids_max: flags.pids_max.unwrap_or(self.limits.pids_max),
            ..self.limits
        };
        limits.with_memory(flags.memory_max, flags.memory_high, self.memory_max_configured)
    }
}

impl Settings {
    /// Reads the config file (`--config`, `FLEET_CONFIG` or the default path) and resolves
    /// every setting. With `Resolve::Stopping` (kill, relief, gc) a bad value outside
    /// `[paths]` is a warning, returned beside the settings, and its section keeps the
    /// built-in defaults: a config an upgrade now refuses must not stand between an operator
    /// and stopping an agent. Where the fleet lives cannot be guessed, so `[paths]` is
    /// checked in every command.
    pub fn resolve(global: &GlobalArgs, mode: Resolve) -> Result<(Settings, Option<String>)> {
        let file = ConfigFile::load(global.config.as_deref())?;
        match (Settings::from_sources(global, &file), mode) {
            (Ok(settings), _) => Ok((settings, None)),
            (Err(e), Resolve::Stopping) => {
                let paths = paths(global, &file)?;
                let builtin = ConfigFile::default();
                let thresholds = thresholds(&file).or_else(|_| thresholds(&builtin))?;
                let agent = agent_defaults(&file).or_else(|_| agent_defaults(&builtin))?;
                let fleet = fleet_settings(&file).unwrap_or_default();
                Ok((Settings { paths, thresholds, agent, fleet }, Some(format!("{e:#}"))))
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Resolves every setting from the flags and environment (`global`) and the file's raw
    /// values. Every key in the file is checked, whether or not a flag overrides it: a bad
    /// value is refused now, not at the first command that would have used it.
    pub fn from_sources(global: &GlobalArgs, file: &ConfigFile) -> Result<Settings> {
        let thresholds = thresholds(file)?;
        let agent = agent_defaults(file)?;
        let fleet = fleet_settings(file)?;
        let paths = paths(global, file)?;
        Ok(Settings { paths, thresholds, agent, fleet })
    }
}

/// How strictly [`Settings::resolve`] treats a bad config value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Every key must be good: the command refuses to run otherwise.
    Strict,
    /// kill, relief and gc: only `[paths]` must be good.
    Stopping,
}

/// `[thresholds]`, with `spawn` below `kill`.
fn thresholds(file: &ConfigFile) -> Result<Thresholds> {
    let thresholds =
        Thresholds {
            spawn: percent(file, "thresholds.spawn")?.unwrap_or(DEFAULT_SPAWN_THRESHOLD),
            kill: percent(file, "thresholds.kill")?.unwrap_or(DEFAULT_KILL_THRESHOLD),
            max_agents: match file.get("thresholds.max_agents") {
                None => None,
                Some(value) => match value.as_integer().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) if n >= 1 => Some(n),
                    _ => {
                        return Err(config_error(file.bad_value(
                            "thresholds.max_agents",
                            "use a whole number of agents of at least 1 (e.g. 300)",
                        )));
                    }
                },
            },
        };
    if thresholds.spawn >= thresholds.kill {
        let given = |key: &'static str, value: u8| match file.get(key) {
            Some(_) => format!("{key} = {value}"),
            None => format!("{key} = {value} (the default)"),
        };
        return Err(config_error(file.error(&format!(
            "{} is not below {}: spawning must stop before killing starts; lower the one or raise the other",
            given("thresholds.spawn", thresholds.spawn),
            given("thresholds.kill", thresholds.kill)
        ))));
    }
    Ok(thresholds)
}

/// `[fleet]`: the budget is a size, or "max" for none of its own.
fn fleet_settings(file: &ConfigFile) -> Result<FleetSettings> {
    let budget = parsed(
        file,
        "fleet.memory_max",
        r#"not a size; use a number with K, M or G (e.g. "48G"), or "max" for the host's memory"#,
        |v| v.parse::<Limit>(),
    )?;
    Ok(FleetSettings {
        memory_max: match budget {
            Some(Limit::Bytes(bytes)) => Some(bytes),
            Some(Limit::Max) | None => None,
        },
    })
}

/// `[agent]`: what an agent gets where its flags give nothing.
fn agent_defaults(file: &ConfigFile) -> Result<AgentDefaults> {
    let defaults = Limits::default();
    let size = r#"not a size; use a number with K, M or G, or "max" (e.g. "4G")"#;
    let memory_max = parsed(file, "agent.memory_max", size, |v| v.parse::<Limit>())?;
    let memory_high = parsed(file, "agent.memory_high", size, |v| v.parse::<Limit>())?;
    let timeout = r#"not a timeout; use a duration above 0 such as "15m" or "1h30m", or "off""#;
    let agent = AgentDefaults {
        limits: Limits {
            swap_max: parsed(file, "agent.swap_max", size, |v| v.parse())?.unwrap_or(defaults.swap_max),
            pids_max: parsed(
                file,
                "agent.pids_max",
                r#"not a task count; use a whole number of at least 1, or "max" (e.g. "512")"#,
                fleet_cli::parse_pids,
            )?
            .unwrap_or(defaults.pids_max),
            ..defaults
        }
        .with_memory(memory_max, memory_high, false),
        memory_max_configured: memory_max.is_some(),
        soft_timeout: parsed(file, "agent.soft_timeout", timeout, fleet_cli::parse_timeout)?
            .map_or(Some(DEFAULT_SOFT_TIMEOUT), Timeout::duration),
        hard_timeout: parsed(file, "agent.hard_timeout", timeout, fleet_cli::parse_timeout)?
            .map_or(Some(DEFAULT_HARD_TIMEOUT), Timeout::duration),
        kill_grace: parsed(
            file,
            "agent.kill_grace",
            r#"not a duration; use e.g. "10s" or "1m""#,
            fleet_cli::parse_duration,
        )?
        .unwrap_or(DEFAULT_KILL_GRACE),
        log_max_size: parsed(
            file,
            "agent.log_max_size",
            r#"not a log size; use a number of at least 4K with K, M or G (e.g. "64M")"#,
            fleet_cli::parse_log_size,
        )?
        .unwrap_or(DEFAULT_LOG_MAX_SIZE),
        port_range: parsed(
            file,
            "agent.port_range",
            r#"not a port range; give "LOW-HIGH" with 1 <= LOW <= HIGH <= 65535 (e.g. "20000-29999")"#,
            fleet_cli::parse_port_range,
        )?
        .unwrap_or(DEFAULT_PORT_RANGE),
        start_reserve: parsed(
            file,
            "agent.start_reserve",
            r#"not a size; give one such as "32M", or "0" to count starting agents at their use alone"#,
            fleet_core::size::parse_bytes,
        )?
        .unwrap_or(START_RESERVE),
        user: parsed(
            file,
            "agent.user",
            r#"not a user; give a name or uid, "USER:GROUP", or "auto" (e.g. "agent")"#,
            |v| Ok::<_, String>(v.to_string()),
        )?,
        uid_range: parsed(
            file,
            "agent.uid_range",
            r#"not a uid range; give "FIRST-LAST", uids above 0 that no user of this host has (e.g. "200000-200999")"#,
            crate::agent::identity::parse_uid_range,
        )?,
        memory_reserve: parsed(
            file,
            "agent.memory_reserve",
            r#"not a size; give one such as "512M", or leave the key out for no reservation"#,
            fleet_core::size::parse_bytes,
        )?,
        stall_threshold: percent(file, "agent.stall_threshold")?.unwrap_or(DEFAULT_STALL_THRESHOLD),
        stall_after: parsed(
            file,
            "agent.stall_after",
            r#"not a duration; use one of at least 2s such as "30s", or "off" not to watch for stalls"#,
            parse_stall_after,
        )?
        .unwrap_or(Some(DEFAULT_STALL_AFTER)),
    };
    Ok(agent)
}

/// `[paths]` and their flags.
fn paths(global: &GlobalArgs, file: &ConfigFile) -> Result<Paths> {
    let path = |flag: &Option<PathBuf>, key: &'static str, default: &str| -> Result<PathBuf> {
        let configured = parsed(file, key, r#"not a path; give it in quotes (e.g. "/run/fleet")"#, |v| {
            Ok::<_, String>(PathBuf::from(v))
        })?;
        Ok(flag.clone().or(configured).unwrap_or_else(|| PathBuf::from(default)))
    };
    let paths = Paths {
        cgroup_parent: cgroup_parent(global, file)?,
        state_dir: path(&global.state_dir, "paths.state_dir", DEFAULT_STATE_DIR)?,
        log_dir: path(&global.log_dir, "paths.log_dir", DEFAULT_LOG_DIR)?,
        workspace_root: path(&global.workspace_root, "paths.workspace_root", DEFAULT_WORKSPACE_ROOT)?,
        scratch_root: path(&global.scratch_root, "paths.scratch_root", DEFAULT_SCRATCH_ROOT)?,
        lock_dir: path(&global.lock_dir, "paths.lock_dir", DEFAULT_LOCK_DIR)?,
    };
    Ok(paths)
}

/// A bad config file: exit 1, as every config error has been (`docs/exit-codes.md`).
fn config_error(line: String) -> anyhow::Error {
    Fail::error(Exit::Failure, line)
}

/// `key`'s value parsed by `parse`, or the one-line error naming the key and `problem` (what
/// is wrong; what to do) when it is not a string `parse` takes.
fn parsed<T, E>(
    file: &ConfigFile,
    key: &'static str,
    problem: &str,
    parse: impl Fn(&str) -> std::result::Result<T, E>,
) -> Result<Option<T>> {
    match file.get(key) {
        None => Ok(None),
        Some(value) => match value.as_str().map(parse) {
            Some(Ok(parsed)) => Ok(Some(parsed)),
            _ => Err(config_error(file.bad_value(key, problem))),
        },
    }
}

/// `agent.stall_after`: a duration the kernel's pressure windows can measure (2 s at least),
/// or "off".
fn parse_stall_after(text: &str) -> std::result::Result<Option<Duration>, String> {
    match fleet_cli::parse_timeout(text)? {
        Timeout::Off => Ok(None),
        Timeout::After(d) if d >= fleet_core::cgroup::STALL_WINDOW_STEP => Ok(Some(d)),
        Timeout::After(_) => Err("below 2s".into()),
    }
}

/// A `[thresholds]` or `[agent]` percentage.
fn percent(file: &ConfigFile, key: &'static str) -> Result<Option<u8>> {
    match file.get(key) {
        None => Ok(None),
        Some(value) => match value.as_integer().and_then(|n| u8::try_from(n).ok()) {
            Some(n) if (1..=100).contains(&n) => Ok(Some(n)),
            _ => Err(config_error(file.bad_value(key, "use a percentage from 1 to 100"))),
        },
    }
}

/// The fleet root: flag or environment, then the file, then the default; refused with exit 2
/// wherever it came from, as a bad `--cgroup-parent` always has been. The file's value is
/// checked even when a flag overrides it.
fn cgroup_parent(global: &GlobalArgs, file: &ConfigFile) -> Result<String> {
    let key = "paths.cgroup_parent";
    let usage = |m: String| Fail::error(Exit::Usage, m);
    let configured = parsed(file, key, r#"not a cgroup path; give it in quotes (e.g. "/fleet")"#, |v| {
        Ok::<_, String>(v.to_string())
    })?;
    if let Some(value) = &configured {
        fleet_core::cgroup::validate_parent(value).map_err(|m| usage(file.bad_value(key, &m)))?;
    }
    let chosen = global.cgroup_parent.clone().or(configured).unwrap_or_else(default_cgroup_parent);
    fleet_core::cgroup::validate_parent(&chosen).map_err(usage)?;
    Ok(chosen)
}

/// The built-in fleet root: inside fleetctl's scope where systemd runs, `/fleet` elsewhere,
/// and `/fleet` too on a systemd host that still has a fleet there (set up before the scope):
/// its agents stay in sight of status, kill and the guard until the operator moves it
/// (docs/operations.md; doctor says how).
fn default_cgroup_parent() -> String {
    default_cgroup_parent_for(std::path::Path::new("/run"), &fleet_core::roots::Roots::host().cgroup)
}

/// [`default_cgroup_parent`] for a host whose `/run` is `run` and whose cgroup hierarchies
/// are mounted under `cgroup_root`.
fn default_cgroup_parent_for(run: &std::path::Path, cgroup_root: &std::path::Path) -> String {
    let systemd = fleet_core::host::systemd::booted(run);
    match systemd && fleet_core::host::systemd::fleet_outside_scope(cgroup_root) {
        true => DEFAULT_CGROUP_PARENT.into(),
        false => built_in_cgroup_parent(systemd).into(),
    }
}

/// The fleet root a host gets with nothing configured, with or without systemd; setup-host
/// writes `paths.cgroup_parent` only when the fleet root differs from it.
pub fn built_in_cgroup_parent(systemd: bool) -> &'static str {
    match systemd {
        true => fleet_core::host::systemd::FLEET_ROOT,
        false => DEFAULT_CGROUP_PARENT,
    }
}

#[cfg(test)]
mod tests;
