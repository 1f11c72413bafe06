//! The guest kernel: Debian's cloud kernel package, unpacked under `target/vm/kernel`.
//!
//! The package is downloaded and unpacked with `dpkg-deb -x`, never installed: installing it
//! would run update-initramfs and write to the host's /boot. Debian's cloud kernel (6.1 on
//! bookworm) is small (LZ4, about 5 MB), has cgroup2 with every controller fleetctl uses, and
//! ships `brd.ko` for swap on a RAM disk. Once unpacked it is reused until `target/vm` is removed.

use super::apt::{self, Apt};
use anyhow::{Context, Result, ensure};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

/// The metapackage that names the current cloud kernel.
const PACKAGE: &str = "linux-image-cloud-amd64";

/// An unpacked kernel package: its image and its module tree.
pub struct Kernel {
    pub image: PathBuf,
    pub release: String,
    root: PathBuf,
}

impl Kernel {
    /// The cached kernel under `cache`, fetching and unpacking it first if there is none.
    pub fn prepare(cache: &Path, apt: &mut Apt) -> Result<Kernel> {
        let dir = cache.join("kernel");
        if let Some(kernel) = Kernel::find(&dir)? {
            return Ok(kernel);
        }
        let started = Instant::now();
        let debs = cache.join("debs");
        let deb = match apt::find_deb(&debs, "linux-image-")? {
            Some(deb) => deb,
            None => {
                let package = apt.dependency(PACKAGE, "linux-image-")?;
                apt.download(&package, &debs)?
            }
        };
        // Unpacked beside its final place and renamed, so an interrupted unpack leaves no
        // half a kernel that the next run would take for a cached one.
        let partial = cache.join("kernel.partial");
        if partial.exists() {
            fs::remove_dir_all(&partial)?;
        }
        fs::create_dir_all(&partial)?;
        let status = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial).status();
        ensure!(
            status.is_ok_and(|s| s.success()),
            "dpkg-deb -x {} failed: remove that file and run again (it is downloaded afresh)",
            deb.display()
        );
        fs::rename(&partial, &dir)?;
        let kernel = Kernel::find(&dir)?
            .with_context(|| format!("{} holds no boot/vmlinuz-*: remove it and run again", deb.display()))?;
        super::note(&format!(
            "kernel {} fetched and unpacked in {:.1} s",
            kernel.release,
            started.elapsed().as_secs_f64()
        ));
        Ok(kernel)
    }

    /// A module's file, by its path under the release's `kernel/` directory
    /// (e.g. `drivers/block/brd.ko`).
    pub fn module(&self, relative: &str) -> Result<PathBuf> {
        let path = self.root.join("lib/modules").join(&self.release).join("kernel").join(relative);
        ensure!(path.is_file(), "kernel {} has no module {relative} (looked for {})", self.release, path.display());
        Ok(path)
    }

    /// The release's whole module tree (`lib/modules/<release>`), for a guest with a root disk.
    pub fn modules(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    fn find(dir: &Path) -> Result<Option<Kernel>> {
        let Ok(entries) = fs::read_dir(dir.join("boot")) else { return Ok(None) };
        for entry in entries {
            let entry = entry?;
            if let Some(release) = entry.file_name().to_string_lossy().strip_prefix("vmlinuz-") {
                return Ok(Some(Kernel { image: entry.path(), release: release.to_string(), root: dir.to_path_buf() }));
            }
        }
        Ok(None)
    }
}
