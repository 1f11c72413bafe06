//! The subcommands about the host rather than one agent: `setup-host`, `doctor` and `gc`.

use super::parse::{parse_duration, parse_size, parse_tmpfs_size};
use clap::Args;
use std::{path::PathBuf, time::Duration};

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
    /// Run only these steps (config, dirs, cgroups, swap, sysctl, workspaces, scratch, delegate, watcher)
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
    /// Print every check as JSON (docs/doctor-json.md)
    #[arg(long)]
    pub json: bool,
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
    /// Print what was (or would be) collected as JSON (docs/gc-json.md)
    #[arg(long)]
    pub json: bool,
}
