//! The cgroup v2 tree above the fleet root: controllers must be enabled in the
//! `cgroup.subtree_control` of every node from the top of the tree we may manage down to the
//! fleet root's parent, or the fleet root never gets a `memory.max`. `spawn` never writes
//! above the fleet root; `setup-host` does it once, and records what it enabled.

use crate::{Error, Result, cgroup::files};
use std::path::{Path, PathBuf};

/// Controllers the fleet wants from its ancestors, most important first. cpu and io are
/// passed down where present so operators can weight agents later; memory and pids are
/// required.
pub const WANTED: [&str; 4] = ["memory", "pids", "cpu", "io"];

/// Controllers the fleet cannot work without.
pub const REQUIRED: [&str; 2] = ["memory", "pids"];

/// The nodes from `top` (inclusive) down to the parent of `fleet_root`. Empty when the
/// fleet root is not below `top`.
pub fn chain(top: &Path, fleet_root: &Path) -> Vec<PathBuf> {
    let Ok(rel) = fleet_root.strip_prefix(top) else { return Vec::new() };
    let mut nodes = vec![top.to_path_buf()];
    let mut at = top.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for c in parts.iter().take(parts.len().saturating_sub(1)) {
        at.push(c);
        nodes.push(at.clone());
    }
    nodes
}

/// Wanted controllers that `node` has but does not hand down yet.
pub fn not_delegated(node: &Path) -> Result<Vec<String>> {
    let available = files::read(&node.join("cgroup.controllers"))?;
    let enabled = files::read(&node.join("cgroup.subtree_control"))?;
    Ok(WANTED
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| c.to_string())
        .collect())
}

/// Required controllers `node` itself does not have (its parent withholds them).
pub fn unavailable(node: &Path) -> Result<Vec<String>> {
    let available = files::read(&node.join("cgroup.controllers"))?;
    Ok(REQUIRED.iter().filter(|c| !available.split_whitespace().any(|a| a == **c)).map(|c| c.to_string()).collect())
}

/// Enables `controllers` in `node`'s subtree_control. The kernel refuses (EBUSY) in a
/// non-root cgroup that has processes of its own: the "no internal processes" rule.
pub fn enable(node: &Path, controllers: &[String]) -> Result<()> {
    change(node, controllers, '+')
}

/// Disables `controllers` again (what `--revert` does).
pub fn disable(node: &Path, controllers: &[String]) -> Result<()> {
    change(node, controllers, '-')
}

fn change(node: &Path, controllers: &[String], sign: char) -> Result<()> {
    if controllers.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = controllers.iter().map(|c| format!("{sign}{c}")).collect();
    let path = node.join("cgroup.subtree_control");
    files::write(&path, &text.join(" "), "cgroup").map_err(|e| match e.io_kind() {
        Some(std::io::ErrorKind::ResourceBusy) => Error::Unsupported(format!(
            "cannot change controllers in {}: it holds processes of its own (cgroup v2's no-internal-processes rule); move them to a child cgroup, or on a systemd host use a unit with Delegate=yes (docs/setup-host.md)",
            node.display()
        )),
        _ => e,
    })
}

/// Reads an interface file (for recording a value before changing it).
pub fn read_value(path: &Path) -> Result<String> {
    Ok(files::read(path)?.trim().to_string())
}

/// Writes an interface file that must exist.
pub fn write_value(path: &Path, value: &str, controller: &'static str) -> Result<()> {
    files::write(path, value, controller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_runs_from_top_to_the_fleet_roots_parent() {
        let c = chain(Path::new("/cg"), Path::new("/cg/a/b/fleet"));
        assert_eq!(c, vec![PathBuf::from("/cg"), PathBuf::from("/cg/a"), PathBuf::from("/cg/a/b")]);
        assert_eq!(chain(Path::new("/cg"), Path::new("/cg/fleet")), vec![PathBuf::from("/cg")]);
        assert!(chain(Path::new("/cg/x"), Path::new("/cg/fleet")).is_empty());
    }

    #[test]
    fn reports_what_a_node_does_not_hand_down() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").expect("seed");
        std::fs::write(tmp.path().join("cgroup.subtree_control"), "memory\n").expect("seed");
        assert_eq!(not_delegated(tmp.path()).expect("read"), ["pids", "cpu", "io"]);
        assert!(unavailable(tmp.path()).expect("read").is_empty());
    }
}
