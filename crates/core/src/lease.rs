//! Leases on what agents share: workspace slots and port blocks.
//!
//! A lease is a byte-range lock, taken with open-file-description locks (`F_OFD_SETLK`), on
//! the lease file of what it leases from: each workspace pool has one (slot `n` is byte
//! `n`), and the host has one for ports (port `p` is byte `p`), both in the host's lock dir
//! (`/run/lock/fleet`), so every fleet leasing from one pool, and every fleet on the host for
//! ports, excludes the others. `spawn` opens each file it needs once, takes the agent's leases
//! on those descriptors and hands them to the supervisor, so:
//! - taking a lease is one atomic system call: two spawns racing for a slot cannot both win;
//! - a lease is released by the kernel when the last descriptor closes, which is when the
//!   supervisor exits or dies: there is never a stale lease to clean up;
//! - a block of ports is one lock, and a conflict tells us where the holder's range ends, so
//!   a scan skips whole blocks instead of probing port by port.
//!
//! Slots named on the command line take a shared lock (several agents may be told to use the
//! same workspace), `auto` takes an exclusive one: it never picks a slot someone is in, and a
//! slot handed out by `auto` cannot be named by anyone else while it is held.

use crate::{Error, Result, paths::path_key};
use std::{
    collections::BTreeSet,
    fs::File,
    ops::RangeInclusive,
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
};

/// The prefix of a workspace slot's directory name: `ws-001`, `ws-500`.
pub const SLOT_PREFIX: &str = "ws-";

/// The lease file of the workspace pool at `pool` (its canonical path) in the host's lock
/// dir: `pool-var-lib-fleet-workspaces.lock`.
pub fn pool_lease_path(lock_dir: &Path, pool: &Path) -> PathBuf {
    lock_dir.join(format!("pool-{}.lock", path_key(pool)))
}

/// The host's port lease file in its lock dir.
pub fn ports_lease_path(lock_dir: &Path) -> PathBuf {
    lock_dir.join("ports.lock")
}

/// The host's uid lease file in its lock dir: uid `n` is byte `n` (`spawn --user auto`).
pub fn uids_lease_path(lock_dir: &Path) -> PathBuf {
    lock_dir.join("uids.lock")
}

/// One lease file, opened on a description of its own.
#[derive(Debug)]
pub struct LeaseFile {
    file: File,
    path: PathBuf,
}

/// Everything one agent leases (its slot on its pool's file, its ports on the host's), held
/// through its own descriptions: what `spawn` hands to the supervisor, which keeps it.
#[derive(Debug, Default)]
pub struct Leases {
    files: Vec<LeaseFile>,
}

impl Leases {
    /// Keeps `file`'s leases with the others.
    pub fn add(&mut self, file: LeaseFile) {
        self.files.push(file);
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The descriptors, for the supervisor to keep open.
    pub fn fds(&self) -> Vec<RawFd> {
        self.files.iter().map(|f| f.file.as_raw_fd()).collect()
    }

    /// New descriptors on the same open file descriptions (so on the same locks), for the
    /// supervisor `spawn` forks.
    pub fn try_clone(&self) -> Result<Leases> {
        let files = self
            .files
            .iter()
            .map(|f| {
                let file = f.file.try_clone().map_err(|e| Error::io("duplicate", &f.path, e))?;
                Ok(LeaseFile { file, path: f.path.clone() })
            })
            .collect::<Result<_>>()?;
        Ok(Leases { files })
    }
}

/// A block of ports: `base .. base + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortBlock {
    /// The first port.
    pub base: u16,
    /// How many.
    pub count: u16,
}

/// Whether a range could be locked.
enum Attempt {
    Taken,
    /// Someone else holds a lock overlapping it, ending before this offset (`None`: the
    /// lock reaches the end of the file, or the holder let go while we looked).
    Conflict(Option<u64>),
}

impl LeaseFile {
    /// Opens (creating it and the lock dir if needed) the lease file at `path` with a fresh
    /// open file description (never shared with another spawn: locks on one description
    /// never conflict with each other). The file is the owner's alone (0600): a lock needs
    /// only an open descriptor, so anyone who could open it could block every slot.
    pub fn open(path: &Path) -> Result<LeaseFile> {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| Error::io("create", dir, e))?;
        }
        let file = crate::lock::open_private(std::fs::OpenOptions::new().read(true), path)
            .map_err(|e| Error::io("open lease file", path, e))?;
        Ok(LeaseFile { file, path: path.to_path_buf() })
    }

    /// Opens an existing lease file only to look at its locks (`doctor`); `None` when there
    /// is none, so nothing was ever leased from it.
    pub fn inspect(path: &Path) -> Result<Option<LeaseFile>> {
        match File::open(path) {
            Ok(file) => Ok(Some(LeaseFile { file, path: path.to_path_buf() })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open lease file", path, e)),
        }
    }

    /// Leases slot `n` exclusively (for `auto`); false when anyone is in it.
    pub fn try_slot_exclusive(&self, n: u32) -> Result<bool> {
        Ok(matches!(self.attempt(n as u64, 1, libc::F_WRLCK)?, Attempt::Taken))
    }

    /// Joins slot `n` (a workspace named on the command line); false when `auto` gave it to
    /// someone.
    pub fn try_slot_shared(&self, n: u32) -> Result<bool> {
        Ok(matches!(self.attempt(n as u64, 1, libc::F_RDLCK)?, Attempt::Taken))
    }

    /// The first free slot of `slots` (ascending), leased exclusively.
    pub fn lease_any_slot(&self, slots: &[u32]) -> Result<Option<u32>> {
        for &n in slots {
            if self.try_slot_exclusive(n)? {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Leases `count` consecutive ports inside `range`, skipping ports in `busy` (something
    /// listens there) and blocks other agents hold. `None` when no such block is left.
    pub fn lease_ports(
        &self,
        range: RangeInclusive<u16>,
        count: u16,
        busy: &BTreeSet<u16>,
    ) -> Result<Option<PortBlock>> {
        if count == 0 {
            return Ok(None);
        }
        let (lo, hi) = (*range.start() as u64, *range.end() as u64);
        let n = count as u64;
        let mut base = lo;
        // A conflict whose holder let go while we looked is retried a bounded number of
        // times, so a pathological churn cannot spin us forever.
        let mut retries = 0;
        while base + n - 1 <= hi {
            let end = base + n; // exclusive
            if let Some(&p) = busy.range(base as u16..=(end - 1) as u16).next_back() {
                base = p as u64 + 1;
                continue;
            }
            match self.attempt(base, n, libc::F_WRLCK)? {
                Attempt::Taken => return Ok(Some(PortBlock { base: base as u16, count })),
                Attempt::Conflict(Some(next)) if next > base => base = next,
                Attempt::Conflict(Some(_)) => base += 1,
                Attempt::Conflict(None) if retries < 16 => retries += 1,
                Attempt::Conflict(None) => base += 1,
            }
        }
        Ok(None)
    }

    /// Leases the first free number of `range` exclusively (a uid for `--user auto`);
    /// `None` when every one is held. A conflict says where its holder's lock ends, so a
    /// scan skips a run of held numbers at once, as [`LeaseFile::lease_ports`] does.
    pub fn lease_number(&self, range: RangeInclusive<u32>) -> Result<Option<u32>> {
        let (mut n, hi) = (*range.start() as u64, *range.end() as u64);
        let mut retries = 0;
        while n <= hi {
            match self.attempt(n, 1, libc::F_WRLCK)? {
                Attempt::Taken => return Ok(Some(n as u32)),
                Attempt::Conflict(Some(next)) if next > n => n = next,
                Attempt::Conflict(None) if retries < 16 => retries += 1,
                Attempt::Conflict(_) => n += 1,
            }
        }
        Ok(None)
    }

    /// Whether anyone but us holds slot `n`, read without taking anything.
    pub fn slot_held(&self, n: u32) -> Result<bool> {
        Ok(self.probe(n as u64, 1, libc::F_WRLCK)?.is_some())
    }

    /// Whether any port of `block` is held by anyone but us.
    #[cfg(test)]
    pub fn ports_held(&self, block: PortBlock) -> Result<bool> {
        Ok(self.probe(block.base as u64, block.count as u64, libc::F_WRLCK)?.is_some())
    }

    fn attempt(&self, start: u64, len: u64, kind: i32) -> Result<Attempt> {
        let mut lock = flock(start, len, kind);
        // SAFETY: fcntl on a descriptor we own, with a valid flock for the command.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
        if rc == 0 {
            return Ok(Attempt::Taken);
        }
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) {
            return Err(Error::io("lock a range of", &self.path, err));
        }
        // SAFETY: as above; F_OFD_GETLK fills `lock` with a conflicting lock, if any.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        if rc != 0 || lock.l_type == libc::F_UNLCK as i16 || lock.l_len == 0 {
            return Ok(Attempt::Conflict(None));
        }
        Ok(Attempt::Conflict(Some((lock.l_start + lock.l_len) as u64)))
    }

    /// The conflicting lock's start, if a lock of `kind` on the range would conflict.
    fn probe(&self, start: u64, len: u64, kind: i32) -> Result<Option<u64>> {
        let mut lock = flock(start, len, kind);
        // SAFETY: fcntl on a descriptor we own; F_OFD_GETLK only fills `lock`.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        if rc != 0 {
            return Err(Error::io("inspect locks of", &self.path, std::io::Error::last_os_error()));
        }
        Ok((lock.l_type != libc::F_UNLCK as i16).then_some(lock.l_start as u64))
    }
}

fn flock(start: u64, len: u64, kind: i32) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value that we then fill in.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as i16;
    lock.l_whence = libc::SEEK_SET as i16;
    lock.l_start = start as i64;
    lock.l_len = len as i64;
    lock.l_pid = 0; // required by F_OFD_*
    lock
}

/// The workspace pool: directories `ws-<n>` directly under the workspace root, by number.
pub fn pool_slots(workspace_root: &Path) -> Result<Vec<(u32, String)>> {
    let entries = match std::fs::read_dir(workspace_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", workspace_root, e)),
    };
    let mut slots: Vec<(u32, String)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let n = slot_number(&name)?;
            e.file_type().ok()?.is_dir().then_some((n, name))
        })
        .collect();
    slots.sort();
    Ok(slots)
}

/// `ws-042` → 42; anything else is not a pool slot.
pub fn slot_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(SLOT_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The name setup-host gives slot `n` of a pool of `total`: zero-padded to at least 3 digits.
pub fn slot_name(n: u32, total: u32) -> String {
    let width = total.to_string().len().max(3);
    format!("{SLOT_PREFIX}{n:0width$}")
}

/// Ports something listens on (TCP) or is bound to (UDP), from `<proc_root>/net/*`.
pub fn busy_ports(proc_root: &Path) -> BTreeSet<u16> {
    use procfs::{
        FromReadSI,
        net::{TcpNetEntries, TcpState, UdpNetEntries},
    };
    let info = procfs::current_system_info();
    let mut busy = BTreeSet::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(t) = TcpNetEntries::from_file(proc_root.join(table), info) {
            busy.extend(t.0.iter().filter(|e| e.state == TcpState::Listen).map(|e| e.local_address.port()));
        }
    }
    for table in ["net/udp", "net/udp6"] {
        if let Ok(t) = UdpNetEntries::from_file(proc_root.join(table), info) {
            busy.extend(t.0.iter().map(|e| e.local_address.port()));
        }
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path) -> PathBuf {
        dir.join("leases.lock")
    }

    #[test]
    fn port_blocks_are_disjoint_and_skip_busy_ports() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (LeaseFile::open(&file(tmp.path())).expect("a"), LeaseFile::open(&file(tmp.path())).expect("b"));
        let busy: BTreeSet<u16> = [20001].into();
        let first = a.lease_ports(20000..=20019, 4, &busy).expect("io").expect("free");
        assert_eq!(first, PortBlock { base: 20002, count: 4 }, "skips the listening 20001");
        let second = b.lease_ports(20000..=20019, 4, &busy).expect("io").expect("free");
        assert_eq!(second.base, 20006, "skips a's whole block at once");
        assert!(a.ports_held(second).expect("probe") && b.ports_held(first).expect("probe"));
        drop(a);
        let c = LeaseFile::open(&file(tmp.path())).expect("c");
        assert_eq!(c.lease_ports(20000..=20019, 4, &busy).expect("io").expect("free").base, 20002, "freed by close");
        assert_eq!(c.lease_ports(20000..=20019, 16, &busy).expect("io"), None, "no room for 16");
    }

    #[test]
    fn auto_slots_are_exclusive_and_named_slots_shared() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let open = || LeaseFile::open(&file(tmp.path())).expect("open");
        let (x, y, z) = (open(), open(), open());
        assert!(x.try_slot_shared(1).expect("io") && y.try_slot_shared(1).expect("io"), "two named users");
        assert_eq!(z.lease_any_slot(&[1, 2, 3]).expect("io"), Some(2), "auto skips a slot in use");
        assert!(!x.try_slot_shared(2).expect("io"), "cannot join an auto-leased slot");
        assert!(x.slot_held(2).expect("probe") && !z.slot_held(2).expect("own lock"));
    }

    #[test]
    fn numbers_are_leased_once_and_freed_by_close() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let open = || LeaseFile::open(&file(tmp.path())).expect("open");
        let (a, b) = (open(), open());
        assert_eq!(a.lease_number(200_000..=200_002).expect("io"), Some(200_000));
        assert_eq!(b.lease_number(200_000..=200_002).expect("io"), Some(200_001), "skips a's");
        assert_eq!(open().lease_number(200_000..=200_001).expect("io"), None, "both held");
        drop(a);
        assert_eq!(open().lease_number(200_000..=200_002).expect("io"), Some(200_000), "freed by close");
    }

    #[test]
    fn slot_names_round_trip() {
        assert_eq!(slot_name(7, 500), "ws-007");
        assert_eq!(slot_name(1234, 2000), "ws-1234");
        assert_eq!(slot_number("ws-007"), Some(7));
        for bad in ["ws-", "ws-1a", "ws_001", "x-001", "ws--1"] {
            assert_eq!(slot_number(bad), None, "{bad}");
        }
    }
}
