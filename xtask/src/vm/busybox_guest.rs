//! A guest whose whole userland is a static busybox: an initramfs whose `/init` mounts cgroup2
//! as the only hierarchy, runs one shell command as root and reports its exit status.
//!
//! The guest has the binaries it is given (in `/bin`, with the libraries `ldd` lists), kernel
//! modules (at `/<name>.ko`), no network, no disk and no swap unless the command makes some.
//! Kernel messages share the console with the command's output: a host-side reader should
//! look for a prefix of its own on the lines it wants.

use super::{
    Workspace,
    apt::{self, Apt, Suite},
    cpio::Archive,
    kernel::Kernel,
    note,
    qemu::{self, Deadlines, Machine},
};
use anyhow::{Context, Result, ensure};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

const BUSYBOX: &str = "/bin/busybox";
/// The console prefix of the guest's own lines (`VMGUEST: rc=N` closes a run).
const MARKER: &str = "VMGUEST: ";

/// PID 1. Controllers are enabled at the root, where the command runs, so cgroups the command
/// makes get memory and pids; a kernel without them fails here with a named reason.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
echo "VMGUEST: init"
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t tmpfs tmp /tmp
report() { echo "VMGUEST: rc=$1"; poweroff -f; }
echo "VMGUEST: kernel $(uname -r), up $(cut -d' ' -f1 /proc/uptime) s"
cg=/sys/fs/cgroup
mount -t cgroup2 none $cg || { echo "VMGUEST: cannot mount cgroup2"; report 125; }
for c in cpuset cpu io memory pids; do echo "+$c" > $cg/cgroup.subtree_control; done
echo "VMGUEST: controllers: $(cat $cg/cgroup.subtree_control)"
for c in memory pids; do
  grep -qw $c $cg/cgroup.subtree_control || { echo "VMGUEST: this kernel has no $c controller"; report 125; }
done
sh /guest-cmd.sh; report $?
"#;

/// What to run: host binaries copied to `/bin/<name>`, modules by their path under the
/// kernel's `kernel/` directory, and the shell command.
pub struct Guest {
    pub binaries: Vec<(PathBuf, &'static str)>,
    pub modules: Vec<&'static str>,
    pub command: String,
}

/// How a run ended: the command's exit status if the guest reported one, and the serial log.
pub struct Outcome {
    pub status: Option<i32>,
    pub timed_out: bool,
    pub log: PathBuf,
}

/// Prepares what is missing (qemu, busybox-static, the kernel), builds the initramfs and boots
/// it on 512 MiB and two vCPUs, for at most `timeout`.
pub fn run(workspace: &Workspace, guest: &Guest, timeout: Duration) -> Result<Outcome> {
    let started = Instant::now();
    let mut apt = Apt::new(workspace.dir.join("apt"));
    qemu::ensure_installed(&mut apt)?;
    if !apt::is_installed("busybox-static") {
        apt.install(&["busybox-static"], Suite::Release)?;
    }
    let kernel = Kernel::prepare(&workspace.dir, &mut apt)?;
    let dir = workspace.dir.join("busybox");
    fs::create_dir_all(&dir)?;
    let initrd = dir.join("initrd.cpio");
    let mut image = base(&dir, &kernel, &guest.modules)?;
    image.extend(payload(guest)?);
    fs::write(&initrd, &image)?;
    note(&format!(
        "kernel {}, initramfs {} MiB, ready after {:.1} s",
        kernel.release,
        image.len() >> 20,
        started.elapsed().as_secs_f64()
    ));
    let machine = Machine {
        kernel: kernel.image.clone(),
        initrd: Some(initrd),
        append: "console=ttyS0 quiet panic=-1".to_string(),
        memory_mib: 512,
        cpus: 2,
        extra: Vec::new(),
    };
    // The first line of /init comes seconds after qemu starts; two minutes leaves room for a
    // busy host.
    let deadlines = Deadlines { ready_marker: MARKER, ready_within: Duration::from_secs(120), total: timeout };
    let log = dir.join("vm.log");
    // The first line starts after the firmware's terminal escapes.
    let mut echo = |line: &str| {
        if let Some((_, own)) = line.split_once(MARKER) {
            note(&format!("guest: {own}"));
        }
    };
    let boot = qemu::boot(&machine, &deadlines, &log, &mut echo)?;
    let secs = |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    note(&format!(
        "qemu ({:?}): guest init after {}, done after {}",
        boot.accel,
        secs(boot.ready_after),
        secs(Some(boot.total))
    ));
    let text = fs::read_to_string(&log).unwrap_or_default();
    Ok(Outcome { status: status_in(&text), timed_out: boot.timed_out, log })
}

/// The users and groups every host has: fleetctl resolves `--user root` and names like any
/// program does, through /etc/passwd and /etc/group.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// busybox, /init, /etc's users and groups, the device node and the modules: the same for every run with this kernel,
/// so it is built once and kept as `base.cpio` beside the key it was built from.
fn base(dir: &Path, kernel: &Kernel, modules: &[&str]) -> Result<Vec<u8>> {
    let busybox =
        fs::metadata(BUSYBOX).with_context(|| format!("{BUSYBOX} is missing: apt-get install busybox-static"))?;
    let key = format!(
        "{INIT}\n{PASSWD}{GROUP}{}\n{:?}\n{:?}\n{modules:?}\n",
        kernel.release,
        busybox.len(),
        busybox.modified()?
    );
    let (cached, key_file) = (dir.join("base.cpio"), dir.join("base.key"));
    if fs::read_to_string(&key_file).is_ok_and(|k| k == key)
        && let Ok(bytes) = fs::read(&cached)
    {
        return Ok(bytes);
    }
    let mut archive = Archive::default();
    for empty in ["proc", "sys", "tmp"] {
        archive.dir(empty);
    }
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.file("bin/busybox", 0o755, &fs::read(BUSYBOX)?);
    archive.file("init", 0o755, INIT.as_bytes());
    archive.file("etc/passwd", 0o644, PASSWD.as_bytes());
    archive.file("etc/group", 0o644, GROUP.as_bytes());
    for module in modules {
        let path = kernel.module(module)?;
        let name = path.file_name().context("a module file name")?.to_string_lossy().into_owned();
        archive.file(&name, 0o644, &fs::read(&path)?);
    }
    let bytes = archive.finish();
    fs::write(&cached, &bytes)?;
    fs::write(&key_file, key)?;
    Ok(bytes)
}

/// This run's binaries with their libraries, and the command: a second archive after the base.
fn payload(guest: &Guest) -> Result<Vec<u8>> {
    let mut archive = Archive::default();
    for (binary, name) in &guest.binaries {
        let bytes = fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
        archive.file(&format!("bin/{name}"), 0o755, &bytes);
        for library in libraries(binary)? {
            archive.file(&library.to_string_lossy(), 0o755, &fs::read(&library)?);
        }
    }
    archive.file("guest-cmd.sh", 0o644, format!("{}\n", guest.command).as_bytes());
    Ok(archive.finish())
}

/// The shared libraries (and loader) `binary` needs, as `ldd` names them; none for a static one.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("cannot run ldd: apt-get install libc-bin")?;
    let listed = libraries_in(&String::from_utf8_lossy(&out.stdout));
    ensure!(out.status.success() || listed.is_empty(), "ldd {} failed", binary.display());
    Ok(listed)
}

fn libraries_in(ldd: &str) -> Vec<PathBuf> {
    ldd.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/'))).map(PathBuf::from).collect()
}

/// The command's exit status from the guest's closing line.
fn status_in(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|l| l.strip_prefix(MARKER)?.strip_prefix("rc=")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_the_paths_ldd_prints() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            libraries_in(ldd),
            [PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
        assert!(libraries_in("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn the_status_is_the_guests_own_closing_line() {
        assert_eq!(
            status_in("VMGUEST: init\nFLEETTEST: VMGUEST: rc=0\nVMGUEST: rc=101\n[ 9.1] reboot: Power down\n"),
            Some(101)
        );
        assert_eq!(
            status_in("VMGUEST: init\nFLEETTEST: VMGUEST: rc=0\n"),
            None,
            "a test's output cannot pass for the guest"
        );
        assert_eq!(status_in(""), None);
    }
}
