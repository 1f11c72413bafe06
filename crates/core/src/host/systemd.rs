//! The fleet on a systemd host: where its delegated scope is in the cgroup tree, and the
//! tracking hierarchy (`name=systemd`) of hybrid hosts, through which systemd decides which
//! unit a process belongs to.
//!
//! systemd owns the cgroup tree and allows one writer per cgroup: a tool that manages
//! cgroups gets a subtree from a unit with `Delegate=yes`. fleetctl's is the transient scope
//! [`SCOPE_UNIT`] in `system.slice`; its attributes are systemd's, its `cgroup.subtree_control`
//! and everything below it are fleetctl's. A small anchor process keeps the scope alive when
//! no agent runs, from the leaf `<scope>/anchor` (cgroup v2 allows controllers to be handed
//! down only from a cgroup with no processes of its own).

use crate::{
    Result,
    cgroup::{Cgroup, Fleet, Layout, Mounts, OwnCgroups, files},
};
use std::path::{Path, PathBuf};

/// The fleet's scope unit.
pub const SCOPE_UNIT: &str = "fleetctl-fleet.scope";

/// The scope's cgroup, from the top of each hierarchy.
pub const SCOPE_CGROUP: &str = "/system.slice/fleetctl-fleet.scope";

/// The fleet root on a systemd host: `fleet/` inside the scope, beside the anchor's leaf.
pub const FLEET_ROOT: &str = "/system.slice/fleetctl-fleet.scope/fleet";

/// The anchor's leaf in the scope.
const ANCHOR: &str = "anchor";

/// The controllers the scope hands down to the fleet root on cgroup v2.
const SCOPE_CONTROLLERS: [&str; 2] = ["memory", "pids"];

/// Whether systemd is the running init system (`sd_booted(3)`: the directory it makes at
/// boot under `run`, the host's `/run`).
pub fn booted(run: &Path) -> bool {
    run.join("systemd/system").is_dir()
}

/// [`booted`] for this host: the one place that names its `/run`.
pub fn booted_here() -> bool {
    booted(Path::new("/run"))
}

/// Whether the cgroup2 tree under `cgroup_root` (the hierarchies' mount point) holds a
/// fleet at the old default `/fleet`, outside any delegated unit: a host set up before the
/// scope, whose agents the default must keep in sight.
pub fn fleet_outside_scope(cgroup_root: &Path) -> bool {
    // Pure cgroup v2 at the mount point; hybrid's cgroup2 under `unified/`.
    ["fleet", "unified/fleet"].iter().any(|dir| cgroup_root.join(dir).is_dir())
}

/// Whether the fleet root `cgroup_parent` lives in fleetctl's scope: only then do spawn and
/// the watcher need the scope, and only then does fleetctl ever create it.
pub fn in_scope(cgroup_parent: &str) -> bool {
    cgroup_parent.strip_prefix(SCOPE_CGROUP).is_some_and(|rest| rest.starts_with('/'))
}

/// The scope's cgroup in every hierarchy fleetctl uses.
pub fn scope(mounts: &Mounts) -> Result<Cgroup> {
    Ok(Fleet::resolve(mounts, &OwnCgroups::default(), SCOPE_CGROUP)?.root)
}

/// Puts the calling process (the anchor, which systemd just placed in the scope) into the
/// scope's leaf `anchor/` in every hierarchy, then, on cgroup v2, has the scope hand memory
/// and pids down to what is below it. Idempotent: a second anchor finds both done.
pub fn settle_anchor(mounts: &Mounts) -> Result<()> {
    let scope = scope(mounts)?;
    let anchor = scope.child(ANCHOR);
    anchor.create()?;
    anchor.attach(0)?;
    if mounts.layout == Layout::Unified {
        let controllers: Vec<String> = SCOPE_CONTROLLERS.iter().map(|c| c.to_string()).collect();
        let missing = super::ancestry::not_delegated(&scope.unified)?;
        let wanted: Vec<String> = controllers.into_iter().filter(|c| missing.contains(c)).collect();
        if !wanted.is_empty() {
            super::ancestry::enable(&scope.unified, &wanted)?;
        }
    }
    Ok(())
}

/// Whether the scope is there and ready for the fleet: its cgroup exists and, on cgroup v2,
/// hands memory and pids down (what [`settle_anchor`] does last).
pub fn scope_ready(mounts: &Mounts) -> bool {
    let Ok(scope) = scope(mounts) else { return false };
    if !scope.exists() {
        return false;
    }
    match mounts.layout {
        Layout::Hybrid => true,
        Layout::Unified => files::read(&scope.unified.join("cgroup.subtree_control"))
            .is_ok_and(|on| SCOPE_CONTROLLERS.iter().all(|c| on.split_whitespace().any(|e| e == *c))),
    }
}

/// The `name=systemd` hierarchy of a hybrid host (`<cgroup_root>/systemd`), where systemd
/// tracks which unit each process belongs to; None on pure cgroup v2 (systemd tracks in the
/// unified tree, which fleetctl already places every process in) and without systemd.
pub fn tracking_mount(cgroup_root: &Path) -> Option<PathBuf> {
    use nix::sys::statfs::{CGROUP_SUPER_MAGIC, statfs};
    let mount = cgroup_root.join("systemd");
    let is_v1 = statfs(&mount).is_ok_and(|s| s.filesystem_type() == CGROUP_SUPER_MAGIC);
    (is_v1 && mount.join("cgroup.procs").exists()).then_some(mount)
}

/// The controllers `dir` (a cgroup v2 directory) hands down: its `cgroup.subtree_control`.
pub fn handed_down(dir: &Path) -> Result<Vec<String>> {
    Ok(files::read(&dir.join("cgroup.subtree_control"))?.split_whitespace().map(str::to_string).collect())
}

/// Where a supervisor (and so its agents, which inherit it) belongs in the `name=systemd`
/// hierarchy mounted at `mount` for the absolute fleet root `cgroup_parent`: the deepest
/// existing cgroup on the fleet root's path, never the hierarchy's own root (a fleet root at
/// the top, `/fleet`, has no unit to be tracked in: its processes stay in the caller's, as
/// before). For the scope's fleet that is the scope itself, which systemd made.
pub fn tracking_cgroup(mount: &Path, cgroup_parent: &str) -> Option<PathBuf> {
    let rel = cgroup_parent.strip_prefix('/')?;
    let full = mount.join(rel);
    full.ancestors().take_while(|a| *a != mount && a.starts_with(mount)).find(|a| a.is_dir()).map(Path::to_path_buf)
}

/// Moves process `pid` into the `name=systemd` cgroup `dir`.
pub fn track_in(dir: &Path, pid: i32) -> Result<()> {
    files::write(&dir.join("cgroup.procs"), &pid.to_string(), "name=systemd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_root_inside_the_scope_needs_it() {
        assert!(in_scope(FLEET_ROOT));
        assert!(in_scope("/system.slice/fleetctl-fleet.scope/other"));
        assert!(!in_scope(SCOPE_CGROUP));
        assert!(!in_scope("/system.slice/fleetctl-fleet.scope-x/fleet"));
        assert!(!in_scope("/fleet"));
        assert!(!in_scope("fleet-test"));
    }

    #[test]
    fn the_scope_hangs_off_each_mount() {
        let mounts = Mounts {
            layout: Layout::Hybrid,
            unified: "/cg/unified".into(),
            memory_v1: Some("/cg/memory".into()),
            pids_v1: Some("/cg/pids".into()),
        };
        let scope = scope(&mounts).expect("resolves");
        assert_eq!(scope.unified, PathBuf::from("/cg/unified/system.slice/fleetctl-fleet.scope"));
        assert_eq!(scope.memory_v1, Some(PathBuf::from("/cg/memory/system.slice/fleetctl-fleet.scope")));
    }

    #[test]
    fn a_supervisor_is_tracked_in_the_deepest_existing_cgroup_below_the_top() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mount = tmp.path();
        assert_eq!(tracking_cgroup(mount, FLEET_ROOT), None, "nothing made yet");
        let scope = mount.join("system.slice/fleetctl-fleet.scope");
        std::fs::create_dir_all(&scope).expect("mkdir");
        assert_eq!(tracking_cgroup(mount, FLEET_ROOT), Some(scope.clone()));
        std::fs::create_dir_all(scope.join("fleet")).expect("mkdir");
        assert_eq!(tracking_cgroup(mount, FLEET_ROOT), Some(scope.join("fleet")));
        assert_eq!(tracking_cgroup(mount, "/fleet"), None, "the top has no unit");
        assert_eq!(tracking_cgroup(mount, "fleet-test"), None, "relative roots are the caller's");
    }
}
