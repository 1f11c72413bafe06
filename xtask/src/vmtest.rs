//! `cargo xtask vm-test`: the integration tests on a pure cgroup v2 kernel.
//!
//! Builds the fleetctl hosts install (`cargo xtask dist`: static musl) and the
//! integration-test binary, then boots a throwaway VM with `../shared/tools/run-vm-test.sh`
//! (Debian's cloud kernel under qemu, cgroup2 only; see `../shared/notes/cgroup-v2-vm.md`)
//! and runs the whole suite inside as root, with the test binary pointed at the copied
//! fleetctl through `FLEETCTL_BIN`. (The host tier tests the glibc build `cargo test`
//! makes, and `.ci/run` the installed build on the host too.)

use anyhow::{Context, Result, bail, ensure};
use std::{path::Path, process::Command};

pub fn run(root: &Path) -> Result<()> {
    let script = root.join("../shared/tools/run-vm-test.sh");
    ensure!(script.exists(), "{} not found: the VM tier needs ../shared beside the checkout", script.display());
    let fleetctl = crate::dist::build(root)?;
    let out = Command::new("cargo")
        .args(["test", "--quiet", "--test", "tests", "--no-run", "--message-format", "json"])
        .current_dir(root)
        .output()?;
    ensure!(out.status.success(), "building the test binary failed");
    let tests_bin = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"name\":\"tests\"") && l.contains("\"executable\":\""))
        .find_map(|l| l.split("\"executable\":\"").nth(1)?.split('"').next().map(str::to_string))
        .context("cannot find the integration-test executable")?;
    let work = std::env::temp_dir().join("fleetctl-vmtest");
    std::fs::create_dir_all(&work)?;
    // Names the guest can find: run-vm-test.sh copies binaries into the guest's /bin.
    std::fs::copy(&fleetctl, work.join("fleetctl"))?;
    std::fs::copy(&tests_bin, work.join("fleetctl-tests"))?;
    // Swap on a RAM disk first: without swap in the guest, `memory.swap.max=0` proves nothing
    // (a build that forgot it would still pass). With it, a hog past its memory.max would
    // swap and survive instead of being OOM-killed.
    let guest = "insmod /brd.ko rd_nr=1 rd_size=262144 && mkswap /dev/ram0 >/dev/null && swapon /dev/ram0 \
                   && echo \"FLEETTEST: guest swap: $(awk '/SwapTotal/ {print $2, $3}' /proc/meminfo)\" || exit 1; \
                 FLEETCTL_THROWAWAY_KERNEL=1 FLEETCTL_BIN=/bin/fleetctl /bin/fleetctl-tests --test-threads=1 > /tmp/t.out 2>&1; rc=$?; \
                 sed 's/^/FLEETTEST: /' /tmp/t.out; exit $rc";
    let status = Command::new("bash")
        .arg(&script)
        .env("VMTEST_DIR", work.join("vm"))
        .env("VMTEST_TIMEOUT", "900")
        .env("VMTEST_BINS", format!("{} {}", work.join("fleetctl").display(), work.join("fleetctl-tests").display()))
        .env("VMTEST_GUEST_CMD", guest)
        .status()?;
    let log = std::fs::read_to_string(work.join("vm/vm.log")).unwrap_or_default();
    // The pass/fail list, and on failure each failing test's own report.
    let mut in_failures = false;
    for line in log.lines().filter_map(|l| l.strip_prefix("FLEETTEST: ")) {
        in_failures |= line == "failures:";
        let listed = line.starts_with("test ") || line.starts_with("guest ") || line.starts_with("SKIPPED");
        if listed || (in_failures && !line.trim_start().starts_with("at ") && !line.contains(": 0x")) {
            println!("{line}");
        }
    }
    if !status.success() {
        bail!("the cgroup v2 VM tier failed; serial log: {}", work.join("vm/vm.log").display());
    }
    println!("cgroup v2 VM tier: PASS");
    Ok(())
}
