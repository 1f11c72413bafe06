//! A guest with systemd as PID 1: Debian 12 on a cached ext4 image, booted straight from the
//! cloud kernel (NVMe and ext4 are built in: no initramfs), pure cgroup v2 or hybrid.
//!
//! - The image: `mmdebstrap --variant=minbase` of bookworm with systemd and what the scenarios
//!   use, customized by `xtask/vm/systemd-image.sh` (the kernel's modules, a fixed machine-id,
//!   masked gettys and timers, an operator with sudo, `KillUserProcesses=yes`, systemd-oomd
//!   masked, and `vmtest.service`, the runner), packed by `mkfs.ext4 -d`. It is cached in
//!   `/var/cache/fleetctl-vm/img-<key>`, the key a hash of everything that shapes it (the hook,
//!   the packages, the suite, the kernel release, the mirror), and rebuilt when that changes.
//! - The disks, namespaces of one NVMe controller (stable names): n1 the image (`snapshot=on`:
//!   the guest's writes are thrown away), n2 a tar of `{cmd, in/}`, n3 a sparse disk the
//!   guest writes a tar of `{rc, out/}` to (`out/journal.txt` is the boot's journal).
//! - The runner, `vmtest.service` (`Type=exec`), waits for `systemctl is-system-running
//!   --wait` (a settled system), runs `bash cmd` in `in/` with each output line on the console
//!   after `SDVM| `, writes the output disk, and powers off at once (`poweroff --force --force`).

use super::{
    Workspace,
    apt::{self, Apt, Suite},
    kernel::Kernel,
    note,
    qemu::{self, Deadlines, Machine},
};
use anyhow::{Context, Result, bail, ensure};
use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Debian 12: systemd 252, the oldest systemd the fleet's design is measured on.
const SUITE: &str = "bookworm";
/// What the guest has beyond minbase: systemd as PID 1 and its login and oomd pieces, python3
/// and procps for the scenarios, kmod for modprobe (brd: swap), sudo for the operator, strace
/// for `--bench`'s proof that spawn makes no D-Bus round trip.
const PACKAGES: &str = "systemd,systemd-sysv,udev,dbus,procps,python3,kmod,sudo,libpam-systemd,systemd-oomd,strace";
const HOOK: &str = include_str!("../../vm/systemd-image.sh");
const CACHE: &str = "/var/cache/fleetctl-vm";
/// The runner's own console lines (`SDVM: start ...`, `SDVM: rc=N`).
const MARKER: &str = "SDVM: ";
/// Before each line of the command's output on the console.
const OUTPUT: &str = "SDVM| ";

/// The cgroup layout the guest boots with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layout {
    Unified,
    Hybrid,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Unified => "unified",
            Layout::Hybrid => "hybrid",
        }
    }

    fn kernel_option(self) -> &'static str {
        match self {
            Layout::Unified => "systemd.unified_cgroup_hierarchy=1",
            Layout::Hybrid => "systemd.unified_cgroup_hierarchy=0",
        }
    }
}

/// What boots: the kernel and the cached root image.
pub struct Prepared {
    kernel: Kernel,
    image: PathBuf,
}

/// Installs what is missing on the host (mmdebstrap, e2fsprogs, qemu), fetches the kernel and
/// builds the image unless it is cached.
pub fn prepare(workspace: &Workspace) -> Result<Prepared> {
    let mut apt = Apt::new(workspace.dir.join("apt"));
    qemu::ensure_installed(&mut apt)?;
    for (tool, package) in [("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs")] {
        if !apt::on_path(tool) {
            apt.install(&[package], Suite::Release)?;
            ensure!(apt::on_path(tool), "{package} is installed but {tool} is not on PATH: add /usr/sbin to PATH");
        }
    }
    let kernel = Kernel::prepare(&workspace.dir, &mut apt)?;
    let image = image(&kernel)?;
    Ok(Prepared { kernel, image })
}

/// The cached image for this recipe and kernel, built first if there is none. Built under a
/// lock in the cache, so two checkouts never build it at once; other images are removed.
fn image(kernel: &Kernel) -> Result<PathBuf> {
    let cache = Path::new(CACHE);
    fs::create_dir_all(cache).with_context(|| format!("cannot create {CACHE} (the VM tier runs as root)"))?;
    let lock = File::create(cache.join("lock"))?;
    lock.lock().with_context(|| format!("cannot lock {CACHE}/lock"))?;
    let mirror = apt::mirror()?;
    let key = sha256(&format!("{HOOK}\n{PACKAGES}\n{SUITE}\n{}\n{mirror}\n", kernel.release))?;
    let dir = cache.join(format!("img-{}", &key[..12]));
    let image = dir.join("rootfs.img");
    if image.is_file() {
        return Ok(image);
    }
    let started = Instant::now();
    note(&format!("building the Debian {SUITE} image from {mirror} (about 30 s, cached after)"));
    let build = cache.join(format!("build-{}", std::process::id()));
    if build.exists() {
        fs::remove_dir_all(&build)?;
    }
    fs::create_dir_all(&build)?;
    let hook = build.join("hook.sh");
    fs::write(&hook, HOOK)?;
    let rootfs = build.join("rootfs");
    let log = build.join("mmdebstrap.log");
    // --skip=cleanup/reproducible keeps the machine-id the hook writes.
    let status = Command::new("mmdebstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), "--skip=cleanup/reproducible"])
        .arg(format!("--customize-hook=bash {} \"$1\" {}", hook.display(), kernel.modules().display()))
        .arg(SUITE)
        .arg(&rootfs)
        .arg(format!("deb {mirror} {SUITE} main"))
        .arg(format!("deb {mirror} {SUITE}-updates main"))
        .stdout(File::create(&log)?)
        .stderr(File::options().append(true).open(&log)?)
        .status()
        .context("cannot run mmdebstrap: apt-get install mmdebstrap")?;
    if !status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        bail!("mmdebstrap failed (log: {}): check the mirror {mirror} and run again", log.display());
    }
    // Sparse 4 GiB: ~0.4 GB of system, the rest room for what the tests write (into the
    // snapshot). lazy_journal_init: the new file already reads as zeros.
    let packed = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vmroot", "-E", "lazy_journal_init=1", "-d"])
        .arg(&rootfs)
        .arg(build.join("rootfs.img"))
        .arg("4G")
        .status()
        .context("cannot run mkfs.ext4: apt-get install e2fsprogs")?;
    ensure!(packed.success(), "mkfs.ext4 -d {} failed", rootfs.display());
    fs::remove_dir_all(&rootfs)?;
    fs::rename(&build, &dir)?;
    // Images of older recipes or kernels, and builds that died half way: only this cache's own.
    for entry in fs::read_dir(cache)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.starts_with("img-") || name.starts_with("build-")) && entry.path() != dir {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    note(&format!("image built in {:.1} s: {}", started.elapsed().as_secs_f64(), image.display()));
    Ok(image)
}

fn sha256(text: &str) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run sha256sum")?;
    child.stdin.take().context("sha256sum's stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "sha256sum failed");
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string())
}

/// One boot: `inputs` (host files, each with its name in the guest's `in/`) and the command.
pub struct Run<'a> {
    pub layout: Layout,
    pub inputs: &'a [(PathBuf, &'a str)],
    pub command: &'a str,
    pub timeout: Duration,
}

/// How a boot went: the command's exit status if the guest reported one, where the console
/// log and the guest's `out/` are, and when the command started.
pub struct Outcome {
    pub status: Option<i32>,
    pub timed_out: bool,
    pub log: PathBuf,
    pub started_after: Option<Duration>,
    pub total: Duration,
}

/// Boots the guest on 2 GiB and two vCPUs, hands each line of the command's output to
/// `on_output` as it comes, and collects the output disk into `target/vm/systemd/<layout>/`.
pub fn run(workspace: &Workspace, prepared: &Prepared, run: &Run, on_output: &mut dyn FnMut(&str)) -> Result<Outcome> {
    let dir = workspace.dir.join("systemd").join(run.layout.name());
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    let stage = dir.join("stage");
    fs::create_dir_all(stage.join("in"))?;
    fs::write(stage.join("cmd"), format!("{}\n", run.command))?;
    for (input, name) in run.inputs {
        fs::copy(input, stage.join("in").join(name)).with_context(|| format!("cannot copy {}", input.display()))?;
    }
    let input = dir.join("in.tar");
    let tarred = Command::new("tar").arg("-cf").arg(&input).arg("-C").arg(&stage).args(["cmd", "in"]).status()?;
    ensure!(tarred.success(), "tar of {} failed", stage.display());
    let output = dir.join("out.img");
    File::create(&output)?.set_len(1 << 30)?; // sparse: costs what the guest writes
    let drive = |id: &str, path: &Path, extra: &str, nsid: u32| {
        [
            "-drive".to_string(),
            format!("if=none,id={id},file={},format=raw{extra}", path.display()),
            "-device".to_string(),
            format!("nvme-ns,bus=nvme0,drive={id},nsid={nsid}"),
        ]
    };
    let mut extra = vec!["-device".to_string(), "nvme,id=nvme0,serial=vmtest".to_string()];
    extra.extend(drive("root", &prepared.image, ",snapshot=on", 1));
    extra.extend(drive("in", &input, ",readonly=on", 2));
    extra.extend(drive("out", &output, "", 3));
    let machine = Machine {
        kernel: prepared.kernel.image.clone(),
        initrd: None,
        append: format!(
            "console=ttyS0 root=/dev/nvme0n1 rootfstype=ext4 rw rootwait panic=-1 quiet {}",
            run.layout.kernel_option()
        ),
        memory_mib: 2048,
        cpus: 2,
        extra,
    };
    // Boot to the command takes 6-7 s under TCG on an idle host; three minutes leaves room
    // for a busy one.
    let deadlines =
        Deadlines { ready_marker: "SDVM: start", ready_within: Duration::from_secs(180), total: run.timeout };
    let log = dir.join("console.log");
    let mut route = |line: &str| {
        if let Some((_, text)) = line.split_once(OUTPUT) {
            on_output(text);
        } else if let Some((_, own)) = line.split_once(MARKER) {
            note(&format!("guest: {own}"));
        }
    };
    let boot = qemu::boot(&machine, &deadlines, &log, &mut route)?;
    let unpacked = Command::new("tar").arg("-xf").arg(&output).arg("-C").arg(&dir).stderr(Stdio::null()).status();
    let from_disk = unpacked
        .is_ok_and(|s| s.success())
        .then(|| fs::read_to_string(dir.join("rc")).ok()?.trim().parse().ok())
        .flatten();
    let console = fs::read_to_string(&log).unwrap_or_default();
    Ok(Outcome {
        status: from_disk.or_else(|| status_in(&console)),
        timed_out: boot.timed_out,
        log,
        started_after: boot.ready_after,
        total: boot.total,
    })
}

/// The command's exit status from the runner's closing console line (when the output disk
/// could not be read).
fn status_in(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|l| {
        let (before, own) = l.split_once(MARKER)?;
        (!before.contains(OUTPUT.trim_end())).then_some(())?;
        own.strip_prefix("rc=")?.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_the_runners_own_closing_line() {
        let console = "SDVM: start uptime=5.1 state=running\nSDVM| SDVM: rc=0\nSDVM: rc=1 uptime=80.2\n[ 81.0] reboot: Power down\n";
        assert_eq!(status_in(console), Some(1));
        assert_eq!(
            status_in("SDVM: start\nSDVM| SDVM: rc=0\n"),
            None,
            "the command's output cannot pass for the runner"
        );
        assert_eq!(status_in(""), None);
    }

    #[test]
    fn hybrid_boots_with_the_v1_controllers() {
        assert_eq!(Layout::Hybrid.kernel_option(), "systemd.unified_cgroup_hierarchy=0");
        assert_eq!(Layout::Unified.kernel_option(), "systemd.unified_cgroup_hierarchy=1");
    }
}
