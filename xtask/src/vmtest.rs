//! `cargo xtask vm-test`: the integration tests on a pure cgroup v2 kernel.
//!
//! Builds the fleetctl hosts install (`cargo xtask dist`: static musl) and the
//! integration-test binary, then boots them in a throwaway busybox guest under qemu
//! (Debian's cloud kernel, cgroup2 only; `vm/` prepares the kernel, the guest and qemu, and
//! caches them under `target/vm`), and runs the whole suite inside as root, with the test
//! binary pointed at the copied fleetctl through `FLEETCTL_BIN`. (The host tier tests the
//! glibc build `cargo test` makes, and `.ci/run` the installed build on the host too.)

use crate::vm::{
    Workspace,
    busybox_guest::{self, Guest},
};
use anyhow::{Context, Result, bail, ensure};
use std::{path::Path, process::Command, time::Duration};

/// The suite runs for minutes under TCG; this leaves room for a busy host, and a hung guest
/// still ends.
const TIMEOUT: Duration = Duration::from_secs(1200);

/// Swap on a RAM disk first: without swap in the guest, `memory.swap.max=0` proves nothing
/// (a build that forgot it would still pass). With it, a hog past its memory.max would swap
/// and survive instead of being OOM-killed. Then the suite, its output prefixed as it comes
/// so the host can tell it from kernel messages on the same console (and a run that times
/// out still shows how far it got). As in `.ci/run`, a test that finds
/// itself without root fails instead of skipping.
const GUEST_COMMAND: &str = "insmod /brd.ko rd_nr=1 rd_size=262144 && mkswap /dev/ram0 >/dev/null && swapon /dev/ram0 \
       && echo \"FLEETTEST: guest swap: $(awk '/SwapTotal/ {print $2, $3}' /proc/meminfo)\" || exit 1; \
     ( FLEETCTL_THROWAWAY_KERNEL=1 FLEETCTL_TEST_AS_ROOT=1 FLEETCTL_BIN=/bin/fleetctl /bin/fleetctl-tests --test-threads=1 2>&1; \
       echo $? > /tmp/rc ) | sed 's/^/FLEETTEST: /'; exit $(cat /tmp/rc)";

pub fn run(root: &Path) -> Result<()> {
    // Locked before building, so a second run waits for nothing and says so at once.
    let workspace = Workspace::open(root)?;
    let fleetctl = crate::dist::build(root)?;
    let tests = tests_binary(root)?;
    let guest = Guest {
        binaries: vec![(fleetctl, "fleetctl"), (tests, "fleetctl-tests")],
        modules: vec!["drivers/block/brd.ko"],
        command: GUEST_COMMAND.to_string(),
    };
    let outcome = busybox_guest::run(&workspace, &guest, TIMEOUT)?;
    let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
    for line in report(&log) {
        println!("{line}");
    }
    match outcome.status {
        Some(0) => println!("cgroup v2 VM tier: PASS"),
        Some(status) => {
            bail!("the cgroup v2 VM tier failed (exit status {status}); serial log: {}", outcome.log.display())
        }
        None if outcome.timed_out => {
            bail!(
                "the cgroup v2 VM tier timed out after {} s; serial log: {}",
                TIMEOUT.as_secs(),
                outcome.log.display()
            )
        }
        None => {
            bail!("the VM stopped before the tests reported (kernel panic?); serial log: {}", outcome.log.display())
        }
    }
    Ok(())
}

/// The integration-test executable `cargo test` builds.
pub fn tests_binary(root: &Path) -> Result<std::path::PathBuf> {
    let out = Command::new("cargo")
        .args(["test", "--quiet", "--test", "tests", "--no-run", "--message-format", "json"])
        .current_dir(root)
        .output()?;
    ensure!(out.status.success(), "building the test binary failed");
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"name\":\"tests\"") && l.contains("\"executable\":\""))
        .find_map(|l| l.split("\"executable\":\"").nth(1)?.split('"').next().map(str::to_string))
        .context("cannot find the integration-test executable")?;
    Ok(path.into())
}

/// From the serial log: the pass/fail list, and on failure each failing test's own report
/// (without backtrace frames).
fn report(log: &str) -> Vec<&str> {
    let mut in_failures = false;
    let mut lines = Vec::new();
    for line in log.lines().filter_map(|l| l.strip_prefix("FLEETTEST: ")) {
        in_failures |= line == "failures:";
        let listed = line.starts_with("test ") || line.starts_with("guest ") || line.starts_with("SKIPPED");
        if listed || (in_failures && !line.trim_start().starts_with("at ") && !line.contains(": 0x")) {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_keeps_the_suites_lines_and_drops_the_kernels() {
        let log = "VMGUEST: init\nFLEETTEST: guest swap: 262140 kB\n[ 86.5] Memory cgroup out of memory: Killed process 2347 (sh)\n\
                   FLEETTEST: running 2 tests\nFLEETTEST: test a::one ... ok\nFLEETTEST: SKIPPED promtool check\n\
                   FLEETTEST: test a::two ... FAILED\nFLEETTEST: failures:\nFLEETTEST: ---- a::two stdout ----\n\
                   FLEETTEST: thread panicked at tests/a.rs:9:5\nFLEETTEST:    0: 0x55d1 - std::backtrace\n\
                   FLEETTEST:              at /rustc/library/std/src/panicking.rs:1\nVMGUEST: rc=101\n";
        assert_eq!(
            report(log),
            [
                "guest swap: 262140 kB",
                "test a::one ... ok",
                "SKIPPED promtool check",
                "test a::two ... FAILED",
                "failures:",
                "---- a::two stdout ----",
                "thread panicked at tests/a.rs:9:5"
            ]
        );
    }
}
