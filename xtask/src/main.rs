//! fleetctl's developer tasks, run as `cargo xtask <task>`:
//!
//! - `codegen [--check]`: shell completions (`completions/`) and man pages (`docs/man/`)
//!   from the one clap definition; `--check` fails when the committed files are stale.
//! - `bench`: spawn latency against bare fork+exec and the bash baseline, 300 agents up
//!   and down, supervisor resident memory (needs root).
//! - `vm-test`: the integration tests inside a VM whose only hierarchy is cgroup v2.
//! - `dist`: the statically linked release binary to install on hosts.

mod bench;
mod bench_memory;
mod bench_scale;
mod bench_spawn;
mod codegen;
mod dist;
mod vmtest;

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("codegen") => codegen::run(&root(), args.iter().any(|a| a == "--check")),
        Some("bench") => bench::run(&root(), &args[1..]),
        Some("vm-test") => vmtest::run(&root()),
        Some("dist") => dist::run(&root()),
        _ => bail!(
            "usage: cargo xtask codegen [--check] | bench [--agents N] [--rounds N] [--trials N] | vm-test | dist"
        ),
    }
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}
