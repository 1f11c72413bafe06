//! Everything a command needs to find the fleet: the settings (`settings.rs`, resolved once
//! from flags, environment, config file and defaults) and the cgroup layout they point into.

use crate::settings::{AgentDefaults, FleetSettings, Resolve, Settings, Thresholds};
use anyhow::Result;
use fleet_cli::GlobalArgs;
use fleet_core::{
    cgroup::{Fleet, Mounts, OwnCgroups},
    paths::Dirs,
    procs::ProcessRef,
    roots::Roots,
};
use std::path::PathBuf;

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
    /// When spawning stops and killing starts.
    pub thresholds: Thresholds,
    /// What an agent gets where its flags give nothing.
    pub agent: AgentDefaults,
    /// The fleet as a whole (its budget).
    pub fleet_settings: FleetSettings,
    /// This process, read once ([`Ctx::me`]).
    me: std::sync::OnceLock<Option<ProcessRef>>,
}

impl Ctx {
    /// Resolves paths and detects the cgroup layout. A config warning (see [`Resolve`]) is
    /// printed here, once, before the command runs.
    pub fn resolve(global: &GlobalArgs, mode: Resolve) -> Result<Ctx> {
        let (Settings { paths, thresholds, agent, fleet: fleet_settings }, warning) = Settings::resolve(global, mode)?;
        if let Some(warning) = warning {
            eprintln!("fleetctl: warning: {warning}; going ahead with the built-in defaults for that section");
        }
        let Roots { proc: proc_root, cgroup: cgroup_root } = Roots::host();
        let mounts = Mounts::locate(&cgroup_root, &proc_root)?;
        let own = OwnCgroups::read(&proc_root)?;
        let fleet = Fleet::resolve(&mounts, &own, &paths.cgroup_parent)?;
        Ok(Ctx {
            dirs: Dirs { state: paths.state_dir, log: paths.log_dir },
            workspace_root: paths.workspace_root,
            scratch_root: paths.scratch_root,
            lock_dir: paths.lock_dir,
            fleet,
            cgroup_parent: paths.cgroup_parent,
            mounts,
            own,
            proc_root,
            thresholds,
            agent,
            fleet_settings,
            me: std::sync::OnceLock::new(),
        })
    }

    /// This process, as ledger lines and kill requests name it: read from procfs once, as
    /// `kill` over hundreds of agents would otherwise read it for each.
    pub fn me(&self) -> Option<ProcessRef> {
        let pid = std::process::id() as i32;
        match *self.me.get_or_init(|| ProcessRef::of(&self.proc_root, pid)) {
            Some(me) if me.pid == pid => Some(me),
            // A fork of the process that read it (or procfs could not say): read afresh.
            _ => ProcessRef::of(&self.proc_root, pid),
        }
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
        self.thresholds.spawn
    }

    /// The kill threshold in percent.
    pub fn kill_threshold(&self) -> u8 {
        self.thresholds.kill
    }
}
