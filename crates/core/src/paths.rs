//! Where fleetctl keeps its files. Every root is a parameter, so tests move them all into a
//! temp dir.

use crate::id::AgentId;
use std::path::{Path, PathBuf};

/// The state and log directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Per-agent state and locks (`/run/fleet`): gone at reboot, like the processes it describes.
    pub state: PathBuf,
    /// Per-agent logs and the event journal (`/var/log/fleet`): kept across reboots.
    pub log: PathBuf,
}

impl Dirs {
    /// The directory holding agent `id`'s state, lock and kill request.
    pub fn agent_dir(&self, id: &AgentId) -> PathBuf {
        self.state.join("agents").join(id.as_str())
    }

    /// The directory holding every agent's state directory.
    pub fn agents_dir(&self) -> PathBuf {
        self.state.join("agents")
    }

    /// Agent `id`'s lock file, held by its supervisor for the agent's whole life.
    pub fn lock_path(&self, id: &AgentId) -> PathBuf {
        self.agent_dir(id).join("lock")
    }

    /// Agent `id`'s stopping turn: held by whoever is stopping the agent (`kill`, relief, the
    /// watcher), and by `spawn` while it starts one, so that neither works on a cgroup the
    /// other is making or removing.
    pub fn kill_lock_path(&self, id: &AgentId) -> PathBuf {
        self.agent_dir(id).join("kill.lock")
    }

    /// Agent `id`'s state record.
    pub fn state_path(&self, id: &AgentId) -> PathBuf {
        self.agent_dir(id).join("state.json")
    }

    /// Where `kill` and `relief` say who is ending the agent, before they end it, so the
    /// supervisor records the right cause.
    pub fn kill_request_path(&self, id: &AgentId) -> PathBuf {
        self.agent_dir(id).join("kill-request.json")
    }

    /// Agent `id`'s output log.
    pub fn log_path(&self, id: &AgentId) -> PathBuf {
        self.log.join("agents").join(format!("{id}.log"))
    }

    /// The file whose byte ranges are the leases (workspace slots, port blocks).
    pub fn leases_path(&self) -> PathBuf {
        self.state.join("leases.lock")
    }

    /// The admission ledger, whose lock makes spawns decide one at a time
    /// ([`crate::admission`]).
    pub fn admission_path(&self) -> PathBuf {
        self.state.join("admission.lock")
    }

    /// The append-only event journal.
    pub fn journal_path(&self) -> PathBuf {
        self.log.join("events.jsonl")
    }
}

/// Bytes an unprivileged writer can still put on the filesystem holding `dir` (the nearest
/// existing ancestor when `dir` does not exist yet); `None` when it cannot be read.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|a| a.exists())?;
    let s = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Writes `data` to `path` atomically: a temp file in the same directory, then a rename, so
/// a reader sees the old content or the new, never half of either.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
