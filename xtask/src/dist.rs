//! `cargo xtask dist`: the fleetctl to install on a host, statically linked against musl.
//!
//! spawn latency is one start of fleetctl plus the agent's own exec, so start-up matters:
//! - A static binary has no loader and no relocations against libc: `fleetctl --version`
//!   starts faster than the dynamically linked glibc build (docs/decisions.md).
//! - musl rather than static glibc: glibc's start-up asks the CPU about itself with about 50
//!   CPUID instructions, and in a VM each one traps to the hypervisor.
//! - mimalloc (v2, transparent huge pages off) instead of musl's allocator, which is slow
//!   under the threads `status` and `memory` use and maps and unmaps a page for each file
//!   the C library opens (passwd, group): mimalloc takes the C library's allocations too.
//!   See docs/decisions.md.
//!
//! `cargo rustc` passes `crt-static` to the final binary only: proc-macro crates cannot be
//! built static, which is why it is not in `.cargo/config.toml`. mimalloc is C, compiled with
//! musl-gcc (Debian's musl-tools).

use anyhow::{Result, ensure};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the static binary and returns its path
/// (`target/dist/x86_64-unknown-linux-musl/release/fleetctl`).
pub fn build(root: &Path) -> Result<PathBuf> {
    preflight()?;
    let status = Command::new("cargo")
        .args(["rustc", "--release", "--quiet", "--locked", "--bin", "fleetctl", "--target", TARGET])
        .args(["--target-dir", "target/dist", "--", "-C", "target-feature=+crt-static"])
        .env(format!("CC_{}", TARGET.replace('-', "_")), "musl-gcc")
        .current_dir(root)
        .status()?;
    ensure!(status.success(), "cargo rustc (static fleetctl) failed");
    Ok(root.join("target/dist").join(TARGET).join("release/fleetctl"))
}

/// What the build needs beyond cargo, each missing piece named with the command that adds it.
fn preflight() -> Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    let has_target = installed.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).lines().any(|l| l == TARGET));
    ensure!(has_target, "the static build needs Rust's musl target: rustup target add {TARGET}");
    let has_cc = Command::new("musl-gcc").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    ensure!(has_cc.is_ok(), "the static build compiles mimalloc with musl-gcc: apt-get install musl-tools");
    Ok(())
}

pub fn run(root: &Path) -> Result<()> {
    let bin = build(root)?;
    println!("{}", bin.display());
    Ok(())
}
