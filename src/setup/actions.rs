//! Applying an [`Action`] (recording each [`Change`] as it happens) and undoing a change.

use super::{Action, Change, FileEdit, Manifest, missing_dirs, steps::is_swap_line};
use anyhow::{Context, Result};
use fleet_core::{
    cgroup,
    host::{ancestry, mounts, swap, sysctl},
};
use std::path::{Path, PathBuf};

/// The prefix that marks a line setup-host commented out.
const COMMENT: &str = "# fleetctl: ";

/// Applies `action`, recording every change in `manifest` (saved at `at`) the moment it is
/// made, so a failure half-way still leaves an exact record.
pub fn apply(action: &Action, proc_root: &Path, manifest: &mut Manifest, at: &Path) -> Result<()> {
    match action {
        Action::MakeDirs(dirs) => make_dirs(dirs, manifest, at)?,
        Action::MakeCgroup(dir) => {
            if cgroup::make_dir(dir)? {
                manifest.record(Change::Cgroup { path: dir.clone() }, at)?;
            }
        }
        Action::EnableControllers(node) => {
            let wanted = ancestry::not_delegated(node)?;
            ancestry::enable(node, &wanted)?;
            manifest.record(Change::Controllers { node: node.clone(), enabled: wanted }, at)?;
        }
        Action::SetValue { path, value, controller } => {
            let previous = ancestry::read_value(path)?;
            ancestry::write_value(path, value, controller)?;
            manifest.record(Change::Value { path: path.clone(), previous }, at)?;
        }
        Action::Sysctl { key, value } => {
            let previous = sysctl::read(proc_root, key)?;
            sysctl::write(proc_root, key, *value)?;
            manifest.record(Change::Sysctl { key: key.to_string(), previous }, at)?;
        }
        Action::WriteFile { path, content } => write_file(path, content.as_bytes(), manifest, at)?,
        Action::EditFile { path, edit } => {
            let before = std::fs::read_to_string(path).unwrap_or_default();
            let after = match edit {
                FileEdit::CommentOutSwap => before
                    .split_inclusive('\n')
                    .map(|l| if is_swap_line(l) { format!("{COMMENT}{l}") } else { l.to_string() })
                    .collect::<String>(),
                FileEdit::AppendLine(line) if before.lines().any(|l| l == line) => before.clone(),
                FileEdit::AppendLine(line) => {
                    let sep = if before.is_empty() || before.ends_with('\n') { "" } else { "\n" };
                    format!("{before}{sep}{line}\n")
                }
            };
            if after != before {
                write_file(path, after.as_bytes(), manifest, at)?;
            }
        }
        Action::SwapOff(device) => {
            swap::off(device).map_err(|e| {
                anyhow::anyhow!("{e:#}: the kernel refused; swap stays on (free memory so its pages fit, then retry)")
            })?;
            manifest.record(Change::SwapOff { device: device.clone() }, at)?;
        }
        Action::MountTmpfs { target, size } => {
            mounts::mount_tmpfs(target, size)?;
            manifest.record(Change::Mount { target: target.clone() }, at)?;
        }
        Action::Chown { paths, uid, gid } => {
            use std::os::unix::fs::MetadataExt;
            for path in paths {
                let meta = std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
                std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                    .with_context(|| format!("cannot give {} to uid {uid}", path.display()))?;
                manifest.record(Change::Chown { path: path.clone(), uid: meta.uid(), gid: meta.gid() }, at)?;
            }
        }
        Action::EnableService(unit) => {
            systemctl(&["daemon-reload"])?;
            let (was_enabled, was_active) = (service_state(unit, "is-enabled"), service_state(unit, "is-active"));
            manifest.record(Change::Service { unit: unit.to_string(), was_enabled, was_active }, at)?;
            systemctl(&["enable", "--now", unit])?;
        }
        Action::DisableService(unit) => {
            let (was_enabled, was_active) = (service_state(unit, "is-enabled"), service_state(unit, "is-active"));
            manifest.record(Change::Service { unit: unit.to_string(), was_enabled, was_active }, at)?;
            systemctl(&["disable", "--now", unit])?;
        }
    }
    Ok(())
}

/// Runs `systemctl ARGS`; an error carries what it said.
fn systemctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("systemctl").args(args).output().context("cannot run systemctl")?;
    anyhow::ensure!(
        out.status.success(),
        "systemctl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).split_whitespace().collect::<Vec<_>>().join(" ")
    );
    Ok(())
}

/// `systemctl is-enabled UNIT` or `is-active UNIT`: whether it says yes.
pub fn service_state(unit: &str, question: &str) -> bool {
    std::process::Command::new("systemctl")
        .args([question, "--quiet", unit])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes a file, first recording what it held (only the first time: a second run must not
/// record our own text as the original).
fn write_file(path: &Path, content: &[u8], manifest: &mut Manifest, at: &Path) -> Result<()> {
    if !manifest.has_file(path) {
        let previous = match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if let Some(dir) = path.parent() {
            make_dirs(&missing_dirs(dir), manifest, at)?;
        }
        manifest.record(Change::File { path: path.to_path_buf(), previous }, at)?;
    }
    fleet_core::paths::write_atomic(path, content).with_context(|| format!("cannot write {}", path.display()))
}

/// Creates `dirs` in order (parents first), recording each one it made.
fn make_dirs(dirs: &[PathBuf], manifest: &mut Manifest, at: &Path) -> Result<()> {
    for dir in dirs {
        match std::fs::create_dir(dir) {
            Ok(()) => manifest.record(Change::Dir { path: dir.clone() }, at)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    Ok(())
}

/// Whether `path` is a unit file of the real host's systemd (not one under a `--root` prefix).
fn is_system_unit(path: &Path) -> bool {
    path.parent() == Some(Path::new("/etc/systemd/system"))
}

/// Undoes one change. Directories and cgroups that are no longer empty are kept: they hold
/// someone's work.
pub fn revert(change: &Change, proc_root: &Path) -> Result<()> {
    match change {
        Change::Dir { path } => match std::fs::remove_dir(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.with_context(|| format!("kept {}: it is not empty", path.display())),
        },
        Change::Cgroup { path } => cgroup::remove_empty_dir(path)
            .map(drop)
            .with_context(|| format!("kept cgroup {}: it still has processes or children", path.display())),
        Change::File { path, previous } => {
            match previous {
                Some(bytes) => fleet_core::paths::write_atomic(path, bytes)
                    .with_context(|| format!("cannot restore {}", path.display()))?,
                None => match std::fs::remove_file(path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    r => r.with_context(|| format!("cannot remove {}", path.display()))?,
                },
            }
            // systemd keeps a removed or changed unit loaded until it reloads.
            if is_system_unit(path) && fleet_core::host::systemd::booted_here() {
                systemctl(&["daemon-reload"])?;
            }
            Ok(())
        }
        Change::Controllers { node, enabled } => Ok(ancestry::disable(node, enabled)?),
        Change::Value { path, previous } => Ok(ancestry::write_value(path, previous, "memory")?),
        Change::Sysctl { key, previous } => Ok(sysctl::write(proc_root, key, *previous)?),
        Change::SwapOff { device } => Ok(swap::on(device)?),
        Change::Mount { target } => Ok(mounts::unmount(target)?),
        Change::Chown { path, uid, gid } => std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
            .with_context(|| format!("cannot give {} back to uid {uid}", path.display())),
        // The unit as it was. Stopping the watcher's service stops the guard only: agents
        // live in the fleet's scope.
        Change::Service { unit, was_enabled, was_active } => {
            systemctl(&[if *was_enabled { "enable" } else { "disable" }, unit])?;
            systemctl(&[if *was_active { "start" } else { "stop" }, unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverting_a_unit_file_of_the_host_reloads_systemd() {
        assert!(is_system_unit(Path::new("/etc/systemd/system/fleetctl.service")));
        // Under a --root prefix it is a tree of files, not the host's systemd.
        assert!(!is_system_unit(Path::new("/tmp/root/etc/systemd/system/fleetctl.service")));
        assert!(!is_system_unit(Path::new("/etc/fleet/fleet.toml")));
    }
}
