//! The per-agent lock: held by the agent's supervisor for the agent's whole life, so a
//! second spawn of the same id is refused, and released by the kernel when its holder dies,
//! so there is never a stale PID file to clean up.
//!
//! Locks are `flock(2)` locks through std's `File::try_lock`. They belong to the open file
//! description, so `spawn` takes the lock and hands the descriptor to the supervisor it
//! starts; the lock stays held as long as either has it open. The lock file records its
//! holder (pid and start time) for error messages only: the lock itself is the truth.

use crate::{Error, Result};
use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Seek, Write},
    path::{Path, PathBuf},
};

/// A held lock. Dropping it (or the holder dying) releases it.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

/// Who holds a lock, as its holder wrote it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// The holder's pid.
    pub pid: i32,
    /// What the holder is ("spawn", "supervisor", "kill" ...).
    pub role: String,
    /// When it took the lock (RFC 3339).
    pub since: String,
}

impl Lock {
    /// Takes the lock at `path` without waiting; `Ok(None)` when someone else holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        loop {
            let file = open_lock_file(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
            }
            // A holder may delete the lock file before releasing it (a failed spawn cleaning
            // up). If we locked such an unlinked file, the lock guards nothing: start over.
            if same_file(&file, path) {
                return Ok(Some(Lock { file, path: path.to_path_buf() }));
            }
        }
    }

    /// Records who holds the lock now.
    pub fn set_holder(&mut self, role: &str) -> Result<()> {
        let holder = Holder {
            pid: std::process::id() as i32,
            role: role.to_string(),
            since: crate::timefmt::rfc3339(std::time::SystemTime::now()),
        };
        let text = serde_json::to_string(&holder).unwrap_or_default();
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(text.as_bytes())
        };
        write(&mut self.file).map_err(|e| Error::io("write", &self.path, e))
    }

    /// The open file, to hand to a child process.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Wraps an inherited descriptor that already holds the lock.
    pub fn from_inherited(file: File, path: PathBuf) -> Lock {
        Lock { file, path }
    }
}

/// Opens (creating it and its directory if needed) a file whose locks are the point, never
/// its content: it is opened without truncating, so opening cannot disturb a holder.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    open_private(OpenOptions::new().read(true), path).map_err(|e| Error::io("open lock", path, e))
}

/// Opens `path` for writing with `options` (read or not), creating it 0600 and making an
/// existing one 0600 too (a host upgraded from when lock files were 0644): a `flock(2)` or
/// OFD lock needs only a descriptor, even a read-only one, so anyone who could open a lock
/// or lease file could hold it and freeze every kill, spawn or relief that waits on it.
pub fn open_private(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = options.write(true).create(true).truncate(false).mode(0o600).open(path)?;
    crate::paths::narrow_mode(&file, 0o600)?;
    Ok(file)
}

/// Whether `file` is still the file at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Reads who holds the lock at `path`, if anyone wrote it.
pub fn read_holder(path: &Path) -> Option<Holder> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The set of files someone holds a lock on, read once from `/proc/locks`, so commands can
/// tell whether an agent's supervisor is alive without taking its lock (taking it, even for a
/// moment, would make a concurrent spawn of that id see it as busy).
#[derive(Debug, Default)]
pub struct HeldLocks(std::collections::HashSet<(u32, u32, u64)>);

impl HeldLocks {
    /// Reads `<proc_root>/locks`.
    pub fn read(proc_root: &Path) -> HeldLocks {
        let text = std::fs::read_to_string(proc_root.join("locks")).unwrap_or_default();
        // Lines look like "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF": hex major and
        // minor device numbers, then the decimal inode.
        let held = text
            .lines()
            .filter_map(|l| {
                let mut id = l.split_whitespace().nth(5)?.split(':');
                let major = u32::from_str_radix(id.next()?, 16).ok()?;
                let minor = u32::from_str_radix(id.next()?, 16).ok()?;
                Some((major, minor, id.next()?.parse().ok()?))
            })
            .collect();
        HeldLocks(held)
    }

    /// Whether the file at `path` is locked by anyone.
    pub fn contains(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        let dev = meta.dev();
        self.0.contains(&(libc::major(dev), libc::minor(dev), meta.ino()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_until_release() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a/lock");
        let mut first = Lock::try_acquire(&path).expect("io").expect("free");
        first.set_holder("test").expect("holder");
        assert!(Lock::try_acquire(&path).expect("io").is_none(), "must be busy");
        assert_eq!(read_holder(&path).expect("holder").role, "test");
        assert!(HeldLocks::read(Path::new("/proc")).contains(&path));
        drop(first);
        assert!(!HeldLocks::read(Path::new("/proc")).contains(&path));
        assert!(Lock::try_acquire(&path).expect("io").is_some(), "free again");
    }
}
