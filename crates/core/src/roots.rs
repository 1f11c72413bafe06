//! Where the kernel's filesystems are mounted on a real host: the one place their paths are
//! written down. Everything else takes them as parameters (a fake tree in a temp dir for unit
//! tests), and the binary gets them from [`Roots::host`].

use std::path::PathBuf;

/// The kernel filesystems fleetctl reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// procfs: processes, their cgroups, mounts, locks, kernel parameters.
    pub proc: PathBuf,
    /// Where hosts mount their cgroup hierarchies ([`crate::cgroup::Mounts::probe`] looks
    /// there first; elsewhere `<proc>/self/mountinfo` says where they are).
    pub cgroup: PathBuf,
}

impl Roots {
    /// The roots of the running host: `/proc` and `/sys/fs/cgroup`.
    pub fn host() -> Roots {
        Roots { proc: PathBuf::from("/proc"), cgroup: PathBuf::from("/sys/fs/cgroup") }
    }
}

impl Default for Roots {
    fn default() -> Roots {
        Roots::host()
    }
}
