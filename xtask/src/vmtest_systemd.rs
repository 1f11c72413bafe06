//! `cargo xtask vm-test --systemd [--layout unified|hybrid|both] [--tests unified|hybrid|both|none]
//! [--deb PATH] [--bench]`: fleetctl as a host installs it, on Debian 12 with systemd as PID 1
//! (`vm/systemd_guest.rs`). `--deb` tries a package built elsewhere instead of this tree's.
//! `--bench` runs `xtask bench --only spawn` in the guest instead of the tests and scenarios:
//! the packaged `/usr/bin/fleetctl`, its fleet root beside setup-host's in
//! `fleetctl-fleet.scope`, against fork+exec in the same VM; and one spawn under `strace`, to
//! show it connects to no socket (no D-Bus round trip).
//!
//! Each layout boots once: the guest installs the package (`cargo xtask deb`) as the docs'
//! blocks fenced `sh systemd` say, each command as written (else with `dpkg -i`), runs
//! `fleetctl setup-host --fleet-memory-max 1G`, the integration tests against
//! `/usr/bin/fleetctl` (in the layouts `--tests` names: they take 10-12 minutes per layout
//! under TCG), and then the scenarios of `xtask/vm/systemd-scenarios.sh`, each one
//! `PASS <name>` or `FAIL <name>: <why>` (the guest's steps: `xtask/vm/systemd-guest.sh`).
//! Output streams as it comes; a summary per layout closes the run.

use crate::vm::{
    Workspace,
    systemd_guest::{self, Layout, Run},
};
use anyhow::{Context, Result, bail};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// The suite runs for minutes under TCG, the scenarios for a few more; a hung guest still ends.
const TIMEOUT: Duration = Duration::from_secs(1500);

/// The spawn benchmark's interleaved rounds in the guest: about two minutes under TCG.
const BENCH_ROUNDS: usize = 30;

/// The tier's options.
pub struct Options {
    pub layouts: Vec<Layout>,
    /// The layouts whose boot also runs the integration tests.
    pub tests: Vec<Layout>,
    /// A package to install instead of building this tree's.
    pub deb: Option<PathBuf>,
    /// Run the spawn benchmark instead of the tests and scenarios.
    pub bench: bool,
}

impl Options {
    /// `--systemd` is the caller's; the rest: `--layout unified|hybrid|both` (both), the
    /// layouts to boot, and `--tests unified|hybrid|both|none` (both), those of them that also
    /// run the integration tests.
    pub fn parse(args: &[String]) -> Result<Options> {
        let both = vec![Layout::Unified, Layout::Hybrid];
        let mut options = Options { layouts: both.clone(), tests: both, deb: None, bench: false };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--deb" {
                let path = it.next().context("vm-test --systemd: --deb takes the path of a .deb")?;
                options.deb = Some(PathBuf::from(path));
                continue;
            }
            if arg == "--bench" {
                options.bench = true;
                continue;
            }
            if arg != "--layout" && arg != "--tests" {
                bail!("vm-test --systemd: unknown option '{arg}'");
            }
            let value = it.next().map(String::as_str);
            let layouts = match value {
                Some("unified") => vec![Layout::Unified],
                Some("hybrid") => vec![Layout::Hybrid],
                Some("both") => vec![Layout::Unified, Layout::Hybrid],
                Some("none") if arg == "--tests" => Vec::new(),
                _ => bail!("vm-test --systemd: {arg} takes unified, hybrid or both, not {value:?}"),
            };
            if arg == "--layout" {
                options.layouts = layouts;
            } else {
                options.tests = layouts;
            }
        }
        Ok(options)
    }
}

/// What one layout's run said.
#[derive(Default)]
struct Report {
    scenarios: Vec<String>,
    tests: Vec<String>,
    notes: Vec<String>,
    bench: Vec<String>,
}

impl Report {
    fn take(&mut self, line: &str) {
        if ["PASS ", "FAIL ", "NOTE "].iter().any(|p| line.starts_with(p)) {
            self.scenarios.push(line.to_string());
        } else if let Some(row) = line.strip_prefix("BENCH: ") {
            self.bench.push(row.to_string());
        } else if let Some(note) = line.strip_prefix("SDVMTEST: ") {
            self.notes.push(note.to_string());
        } else if let Some(test) = line.strip_prefix("TEST: ")
            && (test.starts_with("test result:") || test.ends_with("FAILED"))
        {
            self.tests.push(test.to_string());
        }
    }
}

pub fn run(root: &Path, options: &Options) -> Result<()> {
    let workspace = Workspace::open(root)?;
    let deb = match &options.deb {
        Some(deb) => deb.canonicalize().with_context(|| format!("no package at {}", deb.display()))?,
        None => crate::deb::build(root)?,
    };
    // The bench's guest runs this very xtask (a glibc build: the guest is bookworm, like the
    // hosts this tier is built on); the tests' guest, the integration tests.
    let (guest_binary, guest_name) = if options.bench {
        (std::env::current_exe().context("cannot find xtask's own executable")?, "xtask")
    } else {
        (crate::vmtest::tests_binary(root)?, "fleetctl-tests")
    };
    let vm = root.join("xtask/vm");
    let started = Instant::now();
    let prepared = systemd_guest::prepare(&workspace)?;
    crate::vm::note(&format!("guest prepared in {:.1} s", started.elapsed().as_secs_f64()));
    let deb_name = deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let inputs = [
        (deb, deb_name.as_str()),
        (guest_binary, guest_name),
        (vm.join("systemd-guest.sh"), "systemd-guest.sh"),
        (vm.join("systemd-scenarios.sh"), "systemd-scenarios.sh"),
        (root.join("README.md"), "README.md"),
        (root.join("docs/operations.md"), "operations.md"),
    ];
    let mut failures = Vec::new();
    for &layout in &options.layouts {
        let mut report = Report::default();
        let command = match options.bench {
            true => format!("SDVM_TESTS=0 SDVM_BENCH={BENCH_ROUNDS} bash systemd-guest.sh"),
            false => format!("SDVM_TESTS={} bash systemd-guest.sh", u8::from(options.tests.contains(&layout))),
        };
        let run = Run { layout, inputs: &inputs, command: &command, timeout: TIMEOUT };
        let name = layout.name();
        let outcome = systemd_guest::run(&workspace, &prepared, &run, &mut |line| {
            println!("[{name}] {line}");
            report.take(line);
        })?;
        let secs = |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
        println!(
            "== systemd VM tier, {name}: boot to command {}, VM {}",
            secs(outcome.started_after),
            secs(Some(outcome.total))
        );
        for line in report.notes.iter().chain(&report.tests).chain(&report.scenarios).chain(&report.bench) {
            println!("  {line}");
        }
        match outcome.status {
            Some(0) => println!("systemd VM tier ({name}): PASS"),
            Some(status) => {
                failures.push(format!("{name}: exit status {status}; console log {}", outcome.log.display()))
            }
            None if outcome.timed_out => failures.push(format!(
                "{name}: timed out after {} s; console log {}",
                TIMEOUT.as_secs(),
                outcome.log.display()
            )),
            None => failures.push(format!(
                "{name}: the VM stopped before the command reported; console log {}",
                outcome.log.display()
            )),
        }
    }
    if !failures.is_empty() {
        bail!("the systemd VM tier failed ({})", failures.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_a_layout_and_refuse_the_unknown() {
        let parse = |args: &[&str]| Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        assert_eq!(parse(&[]).unwrap().layouts, [Layout::Unified, Layout::Hybrid]);
        assert_eq!(parse(&["--layout", "hybrid"]).unwrap().layouts, [Layout::Hybrid]);
        assert_eq!(parse(&[]).unwrap().tests, [Layout::Unified, Layout::Hybrid]);
        assert_eq!(parse(&["--tests", "unified"]).unwrap().tests, [Layout::Unified]);
        assert!(parse(&["--tests", "none"]).unwrap().tests.is_empty());
        assert!(parse(&["--layout", "none"]).is_err());
        assert_eq!(parse(&["--deb", "/tmp/f.deb"]).unwrap().deb, Some(PathBuf::from("/tmp/f.deb")));
        assert!(parse(&["--deb"]).is_err());
        assert!(!parse(&[]).unwrap().bench);
        assert!(parse(&["--layout", "unified", "--bench"]).unwrap().bench);
        assert!(parse(&["--layout", "v1"]).is_err());
        assert!(parse(&["--layout"]).is_err());
        assert!(parse(&["--fast"]).is_err());
    }

    #[test]
    fn the_report_keeps_scenarios_notes_and_failed_tests() {
        let mut report = Report::default();
        for line in [
            "SDVMTEST: dpkg -i took 1.2 s",
            "TEST: test spawn::one ... ok",
            "TEST: test spawn::two ... FAILED",
            "TEST: test result: FAILED. 1 passed; 1 failed",
            "PASS setup_host",
            "BENCH: | spawn latency | 9.00 ms | bare fork+exec 3.00 ms | 3.0x |",
            "FAIL package_remove: the guard still runs",
            "something else",
        ] {
            report.take(line);
        }
        assert_eq!(report.notes, ["dpkg -i took 1.2 s"]);
        assert_eq!(report.tests, ["test spawn::two ... FAILED", "test result: FAILED. 1 passed; 1 failed"]);
        assert_eq!(report.scenarios, ["PASS setup_host", "FAIL package_remove: the guard still runs"]);
        assert_eq!(report.bench, ["| spawn latency | 9.00 ms | bare fork+exec 3.00 ms | 3.0x |"]);
    }
}
