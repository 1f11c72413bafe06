//! Everything a command needs to find the fleet, resolved once from flags, environment,
//! config file and defaults.

use crate::config::Config;
use anyhow::Result;
use fleet_cli::GlobalArgs;
use fleet_core::{
    cgroup::{Fleet, Mounts, OwnCgroups},
    paths::Dirs,
    roots::Roots,
};
use std::path::PathBuf;

/// Built-in defaults, for what no flag, environment variable or config key sets.
pub const DEFAULT_CGROUP_PARENT: &str = "/fleet";
const DEFAULT_STATE_DIR: &str = "/run/fleet";
const DEFAULT_LOG_DIR: &str = "/var/log/fleet";
const DEFAULT_WORKSPACE_ROOT: &str = "/var/lib/fleet/workspaces";
const DEFAULT_SCRATCH_ROOT: &str = "/var/lib/fleet/scratch";
/// Host-wide, like the ports and pools it guards: `/run/lock` is where the FHS puts locks on
/// resources several programs share.
const DEFAULT_LOCK_DIR: &str = "/run/lock/fleet";

/// Where `--ports` blocks come from: below Linux's ephemeral range (32768-60999), so an
/// outgoing connection never takes a leased port.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (20000, 29999);

/// Default thresholds, percent of the fleet budget (the seed's numbers).
pub const DEFAULT_SPAWN_THRESHOLD: u8 = 85;
/// The kill threshold.
pub const DEFAULT_KILL_THRESHOLD: u8 = 95;

/// The resolved context.
#[derive(Clone)]
pub struct Ctx {
    /// State and log directories.
    pub dirs: Dirs,
    /// The fleet root in every hierarchy.
    pub fleet: Fleet,
    /// The `--cgroup-parent` it was resolved from.
    pub cgroup_parent: String,
    /// Where the hierarchies are mounted.
    pub mounts: Mounts,
    /// Our own cgroups.
    pub own: OwnCgroups,
    /// Where workspace names resolve.
    pub workspace_root: PathBuf,
    /// Where each agent gets its scratch dir.
    pub scratch_root: PathBuf,
    /// Where the lease files are: every fleet leasing from one pool, or ports on this host,
    /// must use the same one.
    pub lock_dir: PathBuf,
    /// procfs ([`Roots::host`]).
    pub proc_root: PathBuf,
    /// The config file's contents.
    pub config: Config,
}

impl Ctx {
    /// Resolves paths and detects the cgroup layout.
    pub fn resolve(global: &GlobalArgs) -> Result<Ctx> {
        let config = Config::load(global.config.as_deref())?;
        let Roots { proc: proc_root, cgroup: cgroup_root } = Roots::host();
        let cgroup_parent = global
            .cgroup_parent
            .clone()
            .or_else(|| config.paths.cgroup_parent.clone())
            .unwrap_or_else(|| DEFAULT_CGROUP_PARENT.into());
        fleet_core::cgroup::validate_parent(&cgroup_parent)
            .map_err(|m| crate::exit::Fail::error(crate::exit::Exit::Usage, m))?;
        let mounts = Mounts::locate(&cgroup_root, &proc_root)?;
        let own = OwnCgroups::read(&proc_root)?;
        let fleet = Fleet::resolve(&mounts, &own, &cgroup_parent)?;
        let pick = |flag: &Option<PathBuf>, file: &Option<PathBuf>, default: &str| {
            flag.clone().or_else(|| file.clone()).unwrap_or_else(|| PathBuf::from(default))
        };
        Ok(Ctx {
            dirs: Dirs {
                state: pick(&global.state_dir, &config.paths.state_dir, DEFAULT_STATE_DIR),
                log: pick(&global.log_dir, &config.paths.log_dir, DEFAULT_LOG_DIR),
            },
            workspace_root: pick(&global.workspace_root, &config.paths.workspace_root, DEFAULT_WORKSPACE_ROOT),
            scratch_root: pick(&global.scratch_root, &config.paths.scratch_root, DEFAULT_SCRATCH_ROOT),
            lock_dir: pick(&global.lock_dir, &config.paths.lock_dir, DEFAULT_LOCK_DIR),
            fleet,
            cgroup_parent,
            mounts,
            own,
            proc_root,
            config,
        })
    }

    /// The top of the cgroup v2 tree fleetctl may manage: the mount for an absolute fleet
    /// root, the caller's own cgroup for a relative one.
    pub fn cgroup_top(&self) -> PathBuf {
        if self.cgroup_parent.starts_with('/') {
            self.mounts.unified.clone()
        } else {
            self.mounts.unified.join(self.own.unified.trim_start_matches('/'))
        }
    }

    /// The name this fleet's entries have in roots it may share with other fleets (its
    /// scratch dirs live in `<scratch-root>/<key>/`): its state dir, where its records are,
    /// as a [`fleet_core::paths::path_key`].
    pub fn fleet_key(&self) -> String {
        fleet_core::paths::path_key(&fleet_core::paths::canonical_or_absolute(&self.dirs.state))
    }

    /// This fleet's directory in the scratch root, holding one scratch dir per agent.
    pub fn own_scratch_root(&self) -> PathBuf {
        self.scratch_root.join(self.fleet_key())
    }

    /// The spawn threshold in percent.
    pub fn spawn_threshold(&self) -> u8 {
        self.config.thresholds.spawn.unwrap_or(DEFAULT_SPAWN_THRESHOLD)
    }

    /// The range `--ports` leases from: config file, then the default. (A bad value in the
    /// file is caught when the config is loaded.)
    pub fn port_range(&self) -> (u16, u16) {
        self.config
            .agent
            .port_range
            .as_deref()
            .and_then(|r| fleet_cli::parse_port_range(r).ok())
            .unwrap_or(DEFAULT_PORT_RANGE)
    }

    /// The kill threshold in percent.
    pub fn kill_threshold(&self) -> u8 {
        self.config.thresholds.kill.unwrap_or(DEFAULT_KILL_THRESHOLD)
    }
}
