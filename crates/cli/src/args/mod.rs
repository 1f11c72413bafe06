//! The argument structs: raw input, checked only for shape. Commands turn them into a
//! validated plan before touching the system. This module holds the top of the command line
//! (the global flags and the list of subcommands); each group of subcommands has its own.

mod agent;
mod host;
mod parse;
mod pressure;
mod report;

pub use agent::*;
pub use host::*;
pub use parse::*;
pub use pressure::*;
pub use report::*;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
#[command(next_help_heading = "Global options")]
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
    /// Stop agents (as kill does) and start them again with the command, limits, workspace,
    /// labels and settings of their records
    Restart(RestartArgs),
    /// Show an agent's output
    Logs(LogsArgs),
    /// The host and every agent on one screen
    Status(StatusArgs),
    /// Per-agent memory: usage, limits, events and pressure, largest first
    Memory(MemoryArgs),
    /// The spawns waiting in line (`spawn --queue`): for what, since when, at which position
    Queue(QueueArgs),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        crate::command().debug_assert();
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
            &["--queue", "a1", "ws", "--", "x"],
            &["--queue=5m", "--max-agents", "300", "--memory-reserve", "1G", "a1", "ws", "--", "x"],
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

    /// The section of `help` under `heading`, up to the next heading.
    fn section<'a>(help: &'a str, heading: &str) -> &'a str {
        let Some((_, rest)) = help.split_once(&format!("\n{heading}:\n")) else { return "" };
        let end = rest.find("\n\n").map_or(rest.len(), |i| {
            // Long help separates entries with blank lines: the section ends at the next
            // line that starts in column one.
            rest[i..]
                .lines()
                .skip(1)
                .find(|l| !l.is_empty() && !l.starts_with(' '))
                .map_or(rest.len(), |next| rest.find(&format!("\n{next}")).unwrap_or(rest.len()))
        });
        &rest[..end]
    }

    #[test]
    fn global_options_have_their_own_heading_in_every_subcommand() {
        let globals = [
            "--cgroup-parent",
            "--state-dir",
            "--log-dir",
            "--workspace-root",
            "--scratch-root",
            "--lock-dir",
            "--config",
        ];
        let mut cli = crate::command();
        cli.build();
        // clap's own `help` subcommand takes no options.
        for sub in cli.get_subcommands_mut().filter(|s| s.get_name() != "help") {
            for long in [false, true] {
                let help = if long { sub.render_long_help() } else { sub.render_help() }.to_string();
                let name = sub.get_name();
                let global = section(&help, "Global options");
                let own = section(&help, "Options");
                for flag in globals {
                    assert!(global.contains(flag), "{name}: {flag} not under Global options:\n{help}");
                    assert!(!own.contains(flag), "{name}: {flag} among the command's own options:\n{help}");
                }
            }
        }
    }

    #[test]
    fn spawn_groups_its_options_and_names_auto() {
        let help = crate::command().find_subcommand_mut("spawn").expect("spawn").render_help().to_string();
        for (heading, flags) in [
            ("Options", &["--wait", "--protect", "--label", "--spawn-threshold", "--log-max-size", "--json"][..]),
            ("Limits", &["--memory-max", "--memory-high", "--swap-max", "--pids-max"]),
            ("Timeouts", &["--soft-timeout", "--hard-timeout", "--kill-grace"]),
            ("Restarts", &["--restart ", "--restart-backoff", "--crash-loop-after"]),
            ("Leases", &["--ports", "--port-range"]),
            ("Who and where it runs", &["--user", "--env", "--env-file", "--pass-env", "--cwd", "--allow-new-privs"]),
        ] {
            let part = section(&help, heading);
            for flag in flags {
                assert!(part.contains(flag), "{flag} not under {heading}:\n{help}");
            }
        }
        let workspace = help.lines().find(|l| l.contains("<WORKSPACE>") && !l.contains("Usage")).expect("WORKSPACE");
        assert!(workspace.contains("`auto`"), "{workspace}");
    }

    #[test]
    fn spawn_needs_a_command() {
        assert!(Cli::try_parse_from(["fleetctl", "spawn", "a1", "ws"]).is_err());
        let ok = Cli::try_parse_from(["fleetctl", "spawn", "a1", "ws", "--", "cargo", "build", "-j8"]).expect("parse");
        let Command::Spawn(args) = ok.command else { panic!("spawn expected") };
        assert_eq!(args.command, ["cargo", "build", "-j8"]);
    }
}
