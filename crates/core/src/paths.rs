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

    /// The admission ledger, whose lock makes spawns decide one at a time
    /// ([`crate::admission`]).
    pub fn admission_path(&self) -> PathBuf {
        self.state.join("admission.lock")
    }

    /// The append-only event journal.
    pub fn journal_path(&self) -> PathBuf {
        self.log.join("events.jsonl")
    }

    /// The journal's counts so far and the offset they cover (`journal_counts`): a cache,
    /// kept beside the journal so that it lasts as long as the journal does (the state dir
    /// is usually a tmpfs, emptied at every reboot, and a lost cache means counting the
    /// whole journal again).
    pub fn journal_counts_path(&self) -> PathBuf {
        self.log.join("events.counts.json")
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

/// The longest [`path_key`] spelled out in full; file names stop at 255 bytes.
const MAX_KEY: usize = 200;

/// One file name that stands for an absolute path, readable and never the same for two
/// paths: `/run/fleet` → `run-fleet`, `/srv/a-b` → `srv-a%2Db` (every byte but letters,
/// digits, `_` and `.` is escaped, `/` becomes `-`). A key that would be too long for a file
/// name keeps its tail and ends in `~` and a hash of the whole path; [`key_path`] cannot
/// read those back.
pub fn path_key(path: &Path) -> String {
    use std::{fmt::Write, os::unix::ffi::OsStrExt};
    let bytes = path.as_os_str().as_bytes();
    let mut key = String::new();
    for &b in bytes.strip_prefix(b"/").unwrap_or(bytes) {
        match b {
            b'/' => key.push('-'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' => key.push(b as char),
            _ => {
                let _ = write!(key, "%{b:02X}");
            }
        }
    }
    if key.is_empty() || key.len() > MAX_KEY {
        // FNV-1a: stable across builds and Rust versions, unlike std's hasher.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        let tail = &key[key.len().saturating_sub(MAX_KEY / 2)..];
        return format!("{tail}~{hash:016x}");
    }
    key
}

/// The path a [`path_key`] stands for; `None` for a hashed key or a name that is no key.
pub fn key_path(key: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut bytes = vec![b'/'];
    let mut rest = key.bytes();
    while let Some(b) = rest.next() {
        match b {
            b'-' => bytes.push(b'/'),
            b'%' => {
                let hex = [rest.next()?, rest.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' => bytes.push(b),
            _ => return None,
        }
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// `path` with symlinks resolved: what two spellings of one directory agree on. Of a path
/// that does not exist yet, its nearest existing ancestor is resolved and the rest appended,
/// so the answer is the same before and after the directory is made (a fleet's key must not
/// change when spawn creates its state dir). The missing tail holds no symlink, so a `..` in
/// it only steps back over a name of the tail.
pub fn canonical_or_absolute(path: &Path) -> PathBuf {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return resolved;
    }
    let Ok(absolute) = std::path::absolute(path) else { return path.to_path_buf() };
    let mut tail = Vec::new();
    let mut existing = absolute.as_path();
    let mut resolved = loop {
        match existing.parent() {
            Some(parent) => {
                // A path whose last name is `..` has no file name.
                tail.push(existing.file_name().map_or(Path::new(".."), Path::new));
                existing = parent;
                if let Ok(resolved) = std::fs::canonicalize(existing) {
                    break resolved;
                }
            }
            None => break existing.to_path_buf(),
        }
    };
    for name in tail.iter().rev() {
        match name.components().next() {
            Some(std::path::Component::ParentDir) => {
                resolved.pop();
            }
            _ => resolved.push(name),
        }
    }
    resolved
}

/// Removes directory `dir` and everything in it; one that is gone already is fine. The one
/// way fleetctl removes what an agent leaves on disk: its scratch dir (at its end, at a new
/// spawn of its id, by `gc`), and its state dir (`gc`).
pub fn remove_dir_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Takes from the open file `file` every permission bit `mode` does not grant: creating a
/// file with a mode does nothing to one an older fleetctl made (a lock file 0644, a log
/// another uid could read), so the files agents must not reach are narrowed each time they
/// are opened. One `fstat`, and a `fchmod` only when there is something to take. A file of
/// another user's that this (non-root) process may write is left as it is: only its owner
/// can narrow it.
pub fn narrow_mode(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = file.metadata()?;
    let now = meta.mode() & 0o7777;
    let euid = nix::unistd::geteuid();
    if now & !mode != 0 && (euid.is_root() || euid.as_raw() == meta.uid()) {
        file.set_permissions(std::fs::Permissions::from_mode(now & mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wider_file_is_narrowed_and_a_narrower_one_left() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("f");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        for (before, after) in [(0o644, 0o640), (0o600, 0o600), (0o666, 0o640)] {
            std::fs::write(&path, "").expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(before)).expect("chmod");
            narrow_mode(&std::fs::File::open(&path).expect("open"), 0o640).expect("narrow");
            assert_eq!(mode(&path), after, "{before:o}");
        }
    }

    #[test]
    fn remove_dir_tree_removes_a_tree_and_takes_one_gone_as_done() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("scratch/a1");
        std::fs::create_dir_all(dir.join("deep")).expect("mkdir");
        std::fs::write(dir.join("deep/file"), "x").expect("write");
        remove_dir_tree(&dir).expect("remove");
        assert!(!dir.exists());
        remove_dir_tree(&dir).expect("gone already is fine");
        std::fs::write(tmp.path().join("file"), "x").expect("write");
        assert!(remove_dir_tree(&tmp.path().join("file")).is_err(), "not a directory");
    }

    #[test]
    fn path_keys_are_readable_distinct_and_read_back() {
        assert_eq!(path_key(Path::new("/run/fleet")), "run-fleet");
        let (a, b) = (path_key(Path::new("/srv/a-b")), path_key(Path::new("/srv/a/b")));
        assert_ne!(a, b, "a dash in a name is not a slash");
        for p in ["/run/fleet", "/srv/a-b", "/srv/a/b", "/tmp/x y/%/ünï", "/"] {
            let key = path_key(Path::new(p));
            assert!(!key.contains('/') && !key.is_empty() && key.len() <= 255, "{p}: {key}");
            if p != "/" {
                assert_eq!(key_path(&key).as_deref(), Some(Path::new(p)), "{key}");
            }
        }
        let long = format!("/{}", "d/".repeat(200));
        let key = path_key(Path::new(&long));
        assert!(key.len() <= 255 && key.contains('~') && key_path(&key).is_none(), "{key}");
        assert_ne!(key, path_key(Path::new(&format!("{long}e"))), "hashed keys still differ");
        assert_eq!(key_path("not a key"), None);
    }

    #[test]
    fn a_path_resolves_alike_before_and_after_it_exists() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = std::fs::canonicalize(tmp.path()).expect("canonical tmp").join("real");
        std::fs::create_dir(&real).expect("real");
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).expect("symlink");
        let state = tmp.path().join("link/state/fleet");
        let before = canonical_or_absolute(&state);
        assert_eq!(before, real.join("state/fleet"));
        assert_eq!(canonical_or_absolute(&tmp.path().join("link/new/../state/fleet")), before, "a `..` in the tail");
        std::fs::create_dir_all(&state).expect("state dir");
        assert_eq!(canonical_or_absolute(&state), before, "the key changed once the dir existed");
    }
}
