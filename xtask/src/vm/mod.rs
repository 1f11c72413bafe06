//! The VM tier's machinery: Debian packages, the guest kernel, qemu, and the guests it boots.
//!
//! Everything downloaded or built lives under `target/vm/` and is reused by the next run:
//! `apt/` (private apt lists and downloads), `debs/` (the kernel package), `kernel/` (it,
//! unpacked), and one directory per guest kind (`busybox/`: the cached base initramfs, the
//! last run's initramfs and serial log). Remove `target/vm` to start afresh (a newer kernel).
//!
//! - `apt`: packages from the host's configured Debian mirror, with private lists.
//! - `kernel`: Debian's cloud kernel, unpacked, never installed.
//! - `qemu`: installing qemu, KVM or TCG, one boot with its console logged under deadlines.
//! - `cpio`: the initramfs archive format.
//! - `busybox_guest`: a guest whose userland is a static busybox and the binaries it is given.
//! - `systemd_guest`: Debian 12 with systemd as PID 1 on a cached root image (its cache is
//!   `/var/cache/fleetctl-vm`, shared by checkouts), pure cgroup v2 or hybrid.

pub mod apt;
pub mod busybox_guest;
pub mod cpio;
pub mod kernel;
pub mod qemu;
pub mod systemd_guest;

use anyhow::{Context, Result, bail};
use std::{
    fs::{self, File, TryLockError},
    path::{Path, PathBuf},
};

/// `target/vm`, held locked for the whole run: two runs in one checkout would overwrite each
/// other's initramfs and serial log, and race on the caches.
pub struct Workspace {
    pub dir: PathBuf,
    _lock: File,
}

impl Workspace {
    pub fn open(root: &Path) -> Result<Workspace> {
        let dir = root.join("target/vm");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => Ok(Workspace { dir, _lock: lock }),
            Err(TryLockError::WouldBlock) => {
                bail!("another VM run holds {} in this checkout: wait for it to finish", lock_path.display())
            }
            Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", lock_path.display())),
        }
    }
}

/// One progress line on stderr, so stdout stays the tier's report.
pub fn note(line: &str) {
    eprintln!("vm: {line}");
}
