//! qemu for the VM tier: installed when missing, KVM or TCG chosen, one boot run to its end
//! with the serial console logged and every stage under a deadline.

use super::apt::{self, Apt, Suite};
use anyhow::{Context, Result, bail, ensure};
use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

const QEMU: &str = "qemu-system-x86_64";

/// Installs qemu when the host has none. It comes from backports: on bookworm, the release's
/// qemu 7.2 would remove a newer qemu-utils that the host already has, and backports' qemu
/// installs beside it.
pub fn ensure_installed(apt: &mut Apt) -> Result<()> {
    if apt::on_path(QEMU) {
        return Ok(());
    }
    apt.install(&["qemu-system-x86"], Suite::Backports)?;
    ensure!(apt::on_path(QEMU), "qemu-system-x86 is installed but {QEMU} is not on PATH: add /usr/bin to PATH");
    Ok(())
}

/// How qemu runs the guest's CPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when `/dev/kvm` is usable hardware KVM, otherwise TCG with the reason.
    /// A PVM `/dev/kvm` (`kvm_pvm`, as on this project's machines) boots only guests made
    /// for PVM: a stock kernel hangs under it without a line of output.
    pub fn detect() -> (Accel, Option<&'static str>) {
        let writable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        choose(writable, Path::new("/sys/module/kvm_pvm").exists())
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-enable-kvm", "-cpu", "host"],
            Accel::Tcg => &["-accel", "tcg"],
        }
    }
}

fn choose(kvm_writable: bool, kvm_is_pvm: bool) -> (Accel, Option<&'static str>) {
    match (kvm_writable, kvm_is_pvm) {
        (true, false) => (Accel::Kvm, None),
        (true, true) => (Accel::Tcg, Some("/dev/kvm is PVM (kvm_pvm), which cannot boot a stock kernel")),
        (false, _) => (Accel::Tcg, Some("no usable /dev/kvm")),
    }
}

/// What to boot: a kernel, its command line and an optional initramfs, on `memory_mib` of
/// RAM and `cpus` vCPUs, with no network. `extra` carries further qemu arguments (disks).
pub struct Machine {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub append: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub extra: Vec<String>,
}

/// The deadlines of one boot: `ready_marker` must appear on the console within
/// `ready_within`, and qemu must have exited within `total`, both counted from qemu's start.
pub struct Deadlines {
    pub ready_marker: &'static str,
    pub ready_within: Duration,
    pub total: Duration,
}

/// How a boot went.
pub struct Boot {
    pub accel: Accel,
    pub ready_after: Option<Duration>,
    pub total: Duration,
    pub timed_out: bool,
}

/// Boots `machine` with the console (carriage returns removed) written to `log` and each line
/// handed to `on_line`. On KVM, a guest that prints no ready marker is booted again under TCG.
pub fn boot(machine: &Machine, deadlines: &Deadlines, log: &Path, on_line: &mut dyn FnMut(&str)) -> Result<Boot> {
    let (accel, why_not_kvm) = Accel::detect();
    if let Some(why) = why_not_kvm {
        super::note(&format!("{why}: booting under TCG (emulated, slower; hardware KVM makes this faster)"));
    }
    let boot = boot_once(machine, accel, deadlines, log, on_line)?;
    if boot.accel == Accel::Kvm && boot.ready_after.is_none() {
        super::note("the guest printed nothing under KVM: booting again under TCG");
        return boot_once(machine, Accel::Tcg, deadlines, log, on_line);
    }
    Ok(boot)
}

fn boot_once(
    machine: &Machine,
    accel: Accel,
    deadlines: &Deadlines,
    log: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<Boot> {
    let mut command = Command::new(QEMU);
    command.args(accel.args()).args(["-m", &format!("{}M", machine.memory_mib), "-smp", &machine.cpus.to_string()]);
    command.args(["-nic", "none", "-nographic", "-no-reboot"]).arg("-kernel").arg(&machine.kernel);
    if let Some(initrd) = &machine.initrd {
        command.arg("-initrd").arg(initrd);
    }
    command.arg("-append").arg(&machine.append).args(&machine.extra);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut qemu = command.spawn().with_context(|| format!("cannot start {QEMU}: install qemu-system-x86"))?;
    let (stdout, mut stderr) =
        (qemu.stdout.take().context("qemu's stdout")?, qemu.stderr.take().context("qemu's stderr")?);
    let (lines, console) = mpsc::channel::<String>();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).replace('\r', "");
            if lines.send(text.trim_end_matches('\n').to_string()).is_err() {
                break;
            }
            line.clear();
        }
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut file = File::create(log).with_context(|| format!("cannot write the serial log {}", log.display()))?;
    let (mut ready_after, mut timed_out) = (None, false);
    loop {
        let deadline = if ready_after.is_none() { deadlines.ready_within } else { deadlines.total };
        match console.recv_timeout(deadline.saturating_sub(started.elapsed())) {
            Ok(line) => {
                writeln!(file, "{line}")?;
                if ready_after.is_none() && line.contains(deadlines.ready_marker) {
                    ready_after = Some(started.elapsed());
                }
                on_line(&line);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                // Our own child, by its handle.
                let _ = qemu.kill();
                break;
            }
        }
    }
    let status = qemu.wait()?;
    let errors = errors.join().unwrap_or_default();
    if ready_after.is_none() && !timed_out && !status.success() {
        let first = errors.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        bail!("{QEMU} failed before the guest started ({first}): check qemu with `{QEMU} --version`");
    }
    Ok(Boot { accel, ready_after, total: started.elapsed(), timed_out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_when_it_is_usable_hardware_kvm() {
        assert_eq!(choose(true, false), (Accel::Kvm, None));
        assert_eq!(choose(true, true).0, Accel::Tcg);
        assert_eq!(choose(false, false).0, Accel::Tcg);
        assert!(choose(false, true).1.is_some_and(|why| why.contains("/dev/kvm")));
    }
}
