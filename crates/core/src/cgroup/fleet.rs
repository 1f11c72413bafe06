//! The fleet root: where it is in each hierarchy, and the subtree fleetctl keeps under it.
//!
//! ```text
//! <fleet root>/            the fleet's budget (an optional memory.max) covers everything below
//!   agents/<id>/           one leaf per agent, with its limits
//!   supervisors/           supervisors and the watcher: outside every agent's cgroup
//! ```
//! cgroup v2 lets processes live only in leaves once controllers are enabled below a node
//! (the "no internal processes" rule), which is why supervisors get a leaf of their own
//! beside `agents/` instead of living in the fleet root.

use super::{Cgroup, Layout, Mounts, OwnCgroups, files};
use crate::{Error, Result, id::AgentId};
use std::path::{Path, PathBuf};

/// Controllers fleetctl enables inside the fleet on cgroup v2. CPU and I/O burst freely.
const V2_CONTROLLERS: [&str; 2] = ["memory", "pids"];

/// The fleet root and its subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The fleet root in every hierarchy.
    pub root: Cgroup,
}

/// Checks a `--cgroup-parent` value: an absolute or relative path whose components are
/// plain names, so it can never climb out of the hierarchy it is resolved in.
pub fn validate_parent(spec: &str) -> std::result::Result<(), String> {
    let trimmed = spec.trim_start_matches('/');
    let bad =
        trimmed.is_empty() || trimmed.split('/').any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'));
    if bad {
        return Err(format!(
            "invalid cgroup parent '{spec}': give a path such as /fleet (absolute) or fleet-test (under your own cgroup), without '.' or '..' components"
        ));
    }
    Ok(())
}

impl Fleet {
    /// Resolves the fleet root `spec` in every mounted hierarchy. An absolute path is taken
    /// from each hierarchy's mount point; a relative one from the caller's own cgroup there,
    /// which is how tests and delegated users nest their fleet.
    pub fn resolve(mounts: &Mounts, own: &OwnCgroups, spec: &str) -> Result<Fleet> {
        validate_parent(spec).map_err(Error::Unsupported)?;
        let place = |mount: &Path, own_path: Option<&str>| -> PathBuf {
            let rel = if spec.starts_with('/') {
                PathBuf::from(spec.trim_start_matches('/'))
            } else {
                Path::new(own_path.unwrap_or("/").trim_start_matches('/')).join(spec)
            };
            mount.join(rel)
        };
        let root = Cgroup {
            layout: mounts.layout,
            unified: place(&mounts.unified, Some(&own.unified)),
            memory_v1: mounts.memory_v1.as_deref().map(|m| place(m, own.memory_v1.as_deref())),
            pids_v1: mounts.pids_v1.as_deref().map(|m| place(m, own.pids_v1.as_deref())),
        };
        Ok(Fleet { root })
    }

    /// The node that holds every agent's leaf.
    pub fn agents(&self) -> Cgroup {
        self.root.child("agents")
    }

    /// The leaf for supervisors and the watcher.
    pub fn supervisors(&self) -> Cgroup {
        self.root.child("supervisors")
    }

    /// Agent `id`'s leaf.
    pub fn agent(&self, id: &AgentId) -> Cgroup {
        self.agents().child(id.as_str())
    }

    /// Creates the fleet root and its subtree where missing, enabling the memory and pids
    /// controllers top-down inside the fleet on cgroup v2 (never on a leaf: a leaf with
    /// controllers in `subtree_control` could no longer hold processes). It never writes to
    /// a cgroup above the fleet root: if the parent does not hand down the controllers, the
    /// error names the fix.
    pub fn ensure(&self) -> Result<()> {
        self.root.create()?;
        if self.root.layout == Layout::Unified {
            require_controllers(&self.root.unified)?;
            enable_controllers(&self.root.unified)?;
        }
        self.agents().create()?;
        self.supervisors().create()?;
        if self.root.layout == Layout::Unified {
            enable_controllers(&self.agents().unified)?;
        }
        Ok(())
    }

    /// Whether [`Fleet::ensure`] has finished: its last step is `agents/` handing memory and
    /// pids down on cgroup v2, and making `supervisors/` on hybrid hosts (where `create` makes
    /// the unified directory last). A spawn racing the first `ensure` must not take a
    /// half-made subtree for a complete one.
    pub fn is_complete(&self) -> bool {
        if !(self.agents().exists() && self.supervisors().exists()) {
            return false;
        }
        match self.root.layout {
            Layout::Hybrid => true,
            Layout::Unified => files::read(&self.agents().unified.join("cgroup.subtree_control"))
                .is_ok_and(|on| V2_CONTROLLERS.iter().all(|c| on.split_whitespace().any(|e| e == *c))),
        }
    }

    /// The highest cgroup from `agents/` up to the top of the cgroup v2 tree mounted at
    /// `mount` (its root has no such switch) whose `memory.oom.group` is set, or `None`.
    /// When memory runs out in or above a cgroup, the kernel kills the whole of the highest
    /// cgroup with the flag between its victim and the one that ran out, so a flag on any of
    /// these takes every agent: a systemd slice or unit OOM, or the host's, reaches past the
    /// fleet. A level without the memory controller has no flag. Always `None` on hybrid
    /// hosts: cgroup v1 memory has no such switch.
    pub fn highest_oom_group(&self, mount: &Path) -> Result<Option<PathBuf>> {
        if self.root.layout != Layout::Unified {
            return Ok(None);
        }
        let agents = self.agents().unified;
        let mut highest = None;
        for dir in agents.ancestors().take_while(|d| *d != mount && d.starts_with(mount)) {
            let file = dir.join("memory.oom.group");
            match files::read(&file) {
                Ok(text) if files::parse_u64(&text, &file)? != 0 => highest = Some(dir.to_path_buf()),
                Ok(_) => {}
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(highest)
    }

    /// Names of the leaves under `agents/`, sorted.
    pub fn agent_names(&self) -> Result<Vec<String>> {
        let dir = self.agents().unified;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// On v2 the fleet root must receive memory and pids from its parent.
fn require_controllers(dir: &Path) -> Result<()> {
    let available = files::read(&dir.join("cgroup.controllers"))?;
    for c in V2_CONTROLLERS {
        if !available.split_whitespace().any(|a| a == c) {
            let file = if c == "memory" { "memory.max" } else { "pids.max" };
            return Err(files::missing(&dir.join(file), c));
        }
    }
    Ok(())
}

/// Writes `+memory +pids` into `dir/cgroup.subtree_control` unless already enabled.
fn enable_controllers(dir: &Path) -> Result<()> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = files::read(&path)?;
    let wanted: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    files::write(&path, &wanted.join(" "), "cgroup")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Mounts {
        Mounts {
            layout: Layout::Hybrid,
            unified: "/cg/unified".into(),
            memory_v1: Some("/cg/memory".into()),
            pids_v1: Some("/cg/pids".into()),
        }
    }

    #[test]
    fn absolute_parent_hangs_off_each_mount() {
        let own = OwnCgroups::parse("4:memory:/job/7\n8:pids:/\n0::/\n");
        let fleet = Fleet::resolve(&hybrid(), &own, "/fleet").expect("resolve");
        assert_eq!(fleet.root.unified, PathBuf::from("/cg/unified/fleet"));
        assert_eq!(fleet.root.memory_v1, Some(PathBuf::from("/cg/memory/fleet")));
    }

    #[test]
    fn relative_parent_nests_under_own_cgroup_in_each_hierarchy() {
        let own = OwnCgroups::parse("4:memory:/job/7\n8:pids:/\n0::/user.slice\n");
        let fleet = Fleet::resolve(&hybrid(), &own, "t1/fleet").expect("resolve");
        assert_eq!(fleet.root.unified, PathBuf::from("/cg/unified/user.slice/t1/fleet"));
        assert_eq!(fleet.root.memory_v1, Some(PathBuf::from("/cg/memory/job/7/t1/fleet")));
        assert_eq!(fleet.root.pids_v1, Some(PathBuf::from("/cg/pids/t1/fleet")));
        let id: AgentId = "agent-001".parse().expect("id");
        assert_eq!(fleet.agent(&id).unified, PathBuf::from("/cg/unified/user.slice/t1/fleet/agents/agent-001"));
    }

    #[test]
    fn parents_that_escape_are_refused() {
        for bad in ["", "/", "..", "/fleet/../etc", "a//b", "./x"] {
            assert!(validate_parent(bad).is_err(), "{bad}");
        }
        for ok in ["/fleet", "fleet", "a/b-c.d"] {
            assert!(validate_parent(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn ensure_on_a_fake_v2_tree_enables_controllers_inside_the_fleet_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mount = tmp.path().to_path_buf();
        // The fake kernel: the fleet root exists with the interface files the kernel makes.
        let root = mount.join("fleet");
        std::fs::create_dir_all(root.join("agents")).expect("mkdir");
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").expect("seed");
        std::fs::write(root.join("cgroup.subtree_control"), "").expect("seed");
        std::fs::write(root.join("agents/cgroup.subtree_control"), "memory\n").expect("seed");
        let mounts = Mounts { layout: Layout::Unified, unified: mount.clone(), memory_v1: None, pids_v1: None };
        let fleet = Fleet::resolve(&mounts, &OwnCgroups::default(), "/fleet").expect("resolve");
        fleet.ensure().expect("ensure");
        assert_eq!(std::fs::read_to_string(root.join("cgroup.subtree_control")).expect("read"), "+memory +pids");
        assert_eq!(std::fs::read_to_string(root.join("agents/cgroup.subtree_control")).expect("read"), "+pids");
        assert!(root.join("supervisors").is_dir());
    }

    #[test]
    fn a_subtree_whose_agents_do_not_yet_hand_down_memory_is_not_complete() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("fleet");
        std::fs::create_dir_all(root.join("agents")).expect("mkdir");
        std::fs::create_dir_all(root.join("supervisors")).expect("mkdir");
        std::fs::write(root.join("agents/cgroup.subtree_control"), "").expect("seed");
        let mounts = Mounts { layout: Layout::Unified, unified: tmp.path().into(), memory_v1: None, pids_v1: None };
        let fleet = Fleet::resolve(&mounts, &OwnCgroups::default(), "/fleet").expect("resolve");
        assert!(!fleet.is_complete(), "a racing spawn would create an agent without memory.max");
        std::fs::write(root.join("agents/cgroup.subtree_control"), "memory pids\n").expect("seed");
        assert!(fleet.is_complete());
    }

    #[test]
    fn ensure_names_the_fix_when_the_parent_withholds_memory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("fleet");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(root.join("cgroup.controllers"), "cpu pids\n").expect("seed");
        let mounts = Mounts { layout: Layout::Unified, unified: tmp.path().into(), memory_v1: None, pids_v1: None };
        let err = Fleet::resolve(&mounts, &OwnCgroups::default(), "/fleet").expect("resolve").ensure().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("memory controller") && text.contains("setup-host"), "{text}");
    }

    #[test]
    fn the_highest_oom_group_up_to_the_top_of_the_tree_is_found() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mount = tmp.path().to_path_buf();
        // The fake kernel: a slice, a unit in it and the fleet in the unit, each with the
        // flag's file, and a level in between without the memory controller (no file).
        let (slice, unit, root) = ("host.slice", "host.slice/bare/unit.service", "host.slice/bare/unit.service/fleet");
        let agents = format!("{root}/agents");
        std::fs::create_dir_all(mount.join(&agents)).expect("mkdir");
        for dir in ["", slice, unit, root, &agents] {
            std::fs::write(mount.join(dir).join("memory.oom.group"), "0\n").expect("seed");
        }
        let set = |dir: &str| std::fs::write(mount.join(dir).join("memory.oom.group"), "1\n").expect("set");
        let mounts = Mounts { layout: Layout::Unified, unified: mount.clone(), memory_v1: None, pids_v1: None };
        let fleet = Fleet::resolve(&mounts, &OwnCgroups::default(), &format!("/{root}")).expect("resolve");
        assert_eq!(fleet.highest_oom_group(&mount).expect("read"), None);
        // The mount's root is the host, not a cgroup the kernel would kill whole.
        set("");
        assert_eq!(fleet.highest_oom_group(&mount).expect("read"), None);
        for dir in [agents.as_str(), unit, slice] {
            set(dir);
            assert_eq!(fleet.highest_oom_group(&mount).expect("read"), Some(mount.join(dir)), "{dir}");
        }
        // A flag below the highest does not hide it.
        set(root);
        assert_eq!(fleet.highest_oom_group(&mount).expect("read"), Some(mount.join(slice)));
        let hybrid = Fleet { root: Cgroup { layout: Layout::Hybrid, ..fleet.root.clone() } };
        assert_eq!(hybrid.highest_oom_group(&mount).expect("read"), None, "v1 memory has no such switch");
    }
}
