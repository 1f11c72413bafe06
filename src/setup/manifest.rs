//! What `setup-host` changed, so `--revert` can undo exactly that: written after every
//! applied change (a crash mid-run still leaves a complete record), read back by `--revert`.

use anyhow::{Context, Result};
use fleet_core::paths::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Schema of the manifest file.
pub const MANIFEST_SCHEMA: u32 = 1;

/// One change to the host, with what is needed to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// A directory we created (removed again only while empty).
    Dir { path: PathBuf },
    /// A file we wrote; `previous` is its exact content before, or none if it did not exist.
    File { path: PathBuf, previous: Option<Vec<u8>> },
    /// A cgroup we created (in one hierarchy).
    Cgroup { path: PathBuf },
    /// Controllers we enabled in a node's `cgroup.subtree_control`.
    Controllers { node: PathBuf, enabled: Vec<String> },
    /// An interface file (such as the fleet root's `memory.max`) and its value before.
    Value { path: PathBuf, previous: String },
    /// A kernel parameter and its value before.
    Sysctl { key: String, previous: u64 },
    /// A swap device we turned off.
    SwapOff { device: PathBuf },
    /// A tmpfs we mounted.
    Mount { target: PathBuf },
    /// A path we gave to another owner, and its owner before.
    Chown { path: PathBuf, uid: u32, gid: u32 },
    /// A systemd unit we enabled and started (or disabled and stopped), and whether it was
    /// enabled and running before: what `--revert` puts back.
    Service { unit: String, was_enabled: bool, was_active: bool },
}

/// The manifest file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA`].
    pub schema: u32,
    /// Changes in the order they were made.
    pub changes: Vec<Change>,
    /// Directories created to hold the manifest itself, removed with it.
    #[serde(default)]
    pub own_dirs: Vec<PathBuf>,
}

impl Manifest {
    /// Reads the manifest at `path`, or an empty one.
    pub fn load(path: &Path) -> Result<Manifest> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let m: Manifest = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a setup-host manifest; move it aside", path.display()))?;
                anyhow::ensure!(
                    m.schema == MANIFEST_SCHEMA,
                    "{} has schema {}, this fleetctl reads {MANIFEST_SCHEMA}",
                    path.display(),
                    m.schema
                );
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Manifest { schema: MANIFEST_SCHEMA, ..Manifest::default() })
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes it atomically, or removes the file (and the directories made for it) when
    /// nothing is left to undo.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        if self.changes.is_empty() {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            for dir in self.own_dirs.drain(..).rev() {
                let _ = std::fs::remove_dir(dir); // kept if something else lives there now
            }
            return Ok(());
        }
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            let mut missing: Vec<PathBuf> =
                dir.ancestors().take_while(|a| !a.exists()).map(Path::to_path_buf).collect();
            missing.reverse();
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            self.own_dirs.extend(missing);
        }
        let text = serde_json::to_vec_pretty(self)?;
        write_atomic(path, &text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Whether the file at `path` already has its original content on record (a second run
    /// must not record our own text as the "previous" one).
    pub fn has_file(&self, path: &Path) -> bool {
        self.changes.iter().any(|c| matches!(c, Change::File { path: p, .. } if p == path))
    }

    /// Records `change` and saves at once.
    pub fn record(&mut self, change: Change, path: &Path) -> Result<()> {
        self.changes.push(change);
        self.save(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_disappears_when_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("m/manifest.json");
        let mut m = Manifest::load(&path).expect("empty");
        m.record(Change::File { path: "/etc/fstab".into(), previous: Some(b"a\tb\n".to_vec()) }, &path).expect("save");
        m.record(Change::Sysctl { key: "vm.max_map_count".into(), previous: 65530 }, &path).expect("save");
        let back = Manifest::load(&path).expect("load");
        assert_eq!(back.changes, m.changes);
        assert!(back.has_file(Path::new("/etc/fstab")));
        m.changes.clear();
        m.save(&path).expect("save empty");
        assert!(!path.exists() && !tmp.path().join("m").exists(), "the manifest and its directory are gone");
    }
}
