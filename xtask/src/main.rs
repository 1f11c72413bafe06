//! fleetctl's developer tasks, run as `cargo xtask <task>`:
//!
//! - `codegen [--check]`: shell completions (`completions/`) and man pages (`docs/man/`)
//!   from the one clap definition; `--check` fails when the committed files are stale.
//! - `bench`: spawn latency against bare fork+exec and the bash baseline, 300 agents up
//!   and down, supervisor resident memory (needs root).
//! - `soak`: a seeded, randomized run under a small budget with the guard on, checking that
//!   nothing is lost (every run ended once, no unchosen kill, nothing left behind).
//! - `vm-test`: the integration tests inside a VM whose only hierarchy is cgroup v2 (qemu,
//!   Debian's cloud kernel and a busybox guest, all prepared by `vm/` and cached in `target/vm`).
//!   With `--systemd`: the package installed and the scenarios run on Debian 12 with systemd
//!   as PID 1, pure v2 and hybrid (`vmtest_systemd.rs`).
//! - `dist`: the statically linked release binary to install on hosts.
//! - `deb`: the Debian package of that binary, with the unit, completions, man pages and config.

mod bench;
mod bench_baseline;
mod bench_memory;
mod bench_pair;
mod bench_queue;
mod bench_scale;
mod bench_spawn;
mod codegen;
mod deb;
mod dist;
mod soak;
#[cfg(test)]
mod tidy;
mod vm;
mod vmtest;
mod vmtest_systemd;

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: cargo xtask codegen [--check] | bench [--agents N] [--rounds N] [--trials N] [--only spawn,reaction,queue,scale] [--fleetctl PATH] [--cgroup-parent PATH] [--baseline-rev REV] | soak [--minutes N] [--agents N] [--seed S] | vm-test [--systemd [--layout unified|hybrid|both] [--tests unified|hybrid|both|none] [--deb PATH] [--bench]] | dist | deb";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--help` anywhere asks for this line, never for a task: bench takes minutes.
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let (task, rest) = args.split_first().map(|(t, r)| (t.as_str(), r)).unwrap_or(("", &[]));
    match (task, rest) {
        ("codegen", []) => codegen::run(&root(), false),
        ("codegen", [check]) if check == "--check" => codegen::run(&root(), true),
        ("bench", _) => bench::run(&root(), &bench_options(rest)?),
        ("soak", _) => soak::run(&root(), &soak::Options::parse(rest)?),
        ("vm-test", []) => vmtest::run(&root()),
        ("vm-test", [systemd, rest @ ..]) if systemd == "--systemd" => {
            vmtest_systemd::run(&root(), &vmtest_systemd::Options::parse(rest)?)
        }
        ("dist", []) => dist::run(&root()),
        ("deb", []) => deb::run(&root()),
        _ => bail!("{USAGE}"),
    }
}

/// bench's options: each `--agents`, `--rounds` or `--trials` with a count, `--only` with
/// parts, `--fleetctl` and `--cgroup-parent` with a path, `--baseline-rev` with a revision;
/// anything else is refused rather than ignored.
fn bench_options(args: &[String]) -> Result<bench::Options> {
    let mut options = bench::Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--only" {
            let list = it.next().ok_or_else(|| anyhow::anyhow!("bench: --only needs parts, e.g. --only scale"))?;
            options.only = bench::Part::parse_list(list)?;
            continue;
        }
        if flag == "--fleetctl" || flag == "--cgroup-parent" {
            let value = it.next().ok_or_else(|| anyhow::anyhow!("bench: {flag} needs a path"))?;
            if flag == "--fleetctl" {
                options.fleetctl = Some(PathBuf::from(value));
            } else {
                options.cgroup_parent = Some(value.clone());
            }
            continue;
        }
        if flag == "--baseline-rev" {
            let rev =
                it.next().ok_or_else(|| anyhow::anyhow!("bench: --baseline-rev needs a revision, e.g. 40ad280"))?;
            options.baseline_rev = Some(rev.clone());
            continue;
        }
        let slot = match flag.as_str() {
            "--agents" => &mut options.agents,
            "--rounds" => &mut options.rounds,
            "--trials" => &mut options.trials,
            _ => bail!("bench: unknown option '{flag}'\n{USAGE}"),
        };
        let value = it.next().ok_or_else(|| anyhow::anyhow!("bench: {flag} needs a count"))?;
        *slot = match value.parse() {
            Ok(n) if n > 0 => n,
            _ => bail!("bench: {flag} takes a count above zero, not '{value}'"),
        };
    }
    Ok(options)
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod bench_options_tests {
    use super::bench_options;
    use std::path::PathBuf;

    #[test]
    fn bench_takes_an_installed_fleetctl_and_a_fleet_root() {
        let parse = |args: &[&str]| bench_options(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        let options = parse(&["--fleetctl", "/usr/bin/fleetctl", "--cgroup-parent", "/a.scope/bench"]).unwrap();
        assert_eq!(options.fleetctl, Some(PathBuf::from("/usr/bin/fleetctl")));
        assert_eq!(options.cgroup_parent.as_deref(), Some("/a.scope/bench"));
        let default = parse(&["--rounds", "5"]).unwrap();
        assert_eq!((default.rounds, &default.fleetctl, &default.cgroup_parent), (5, &None, &None));
        assert!(parse(&["--fleetctl"]).is_err());
        assert!(parse(&["--cgroup-parent"]).is_err());
        assert_eq!(parse(&["--baseline-rev", "40ad280"]).unwrap().baseline_rev.as_deref(), Some("40ad280"));
        assert_eq!(default.baseline_rev, None);
        assert!(parse(&["--baseline-rev"]).is_err());
    }
}
