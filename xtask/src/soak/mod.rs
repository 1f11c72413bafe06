//! `cargo xtask soak [--minutes N] [--agents N] [--seed S]`: a seeded, randomized run of the
//! real fleetctl on real cgroups under a small fleet budget with the guard on, checking at
//! checkpoints and at the end that nothing is lost (see `invariants`).
//!
//! The seed fixes every actor's choices (each actor has its own generator); the interleaving
//! is the machine's. A failing run prints its seed and the command that repeats it.

mod actors;
mod faults;
mod invariants;
mod ledger;
mod report;
mod rng;
mod world;

use anyhow::{Result, bail};
use ledger::Shared;
use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};
use world::World;

/// How long and how hard to soak.
pub struct Options {
    pub minutes: u64,
    /// Agents the spawners keep alive at once.
    pub agents: usize,
    pub seed: u64,
}

pub const USAGE: &str = "soak [--minutes N] [--agents N] [--seed S]";

impl Options {
    /// `--minutes` (5), `--agents` (16), `--seed` (from the clock, printed); anything else
    /// is refused rather than ignored.
    pub fn parse(args: &[String]) -> Result<Options> {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut o = Options { minutes: 5, agents: 16, seed: clock.as_nanos() as u64 % 1_000_000_007 };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = match flag.as_str() {
                "--minutes" | "--agents" | "--seed" => {
                    it.next().ok_or_else(|| anyhow::anyhow!("soak: {flag} needs a number"))?
                }
                _ => bail!("soak: unknown option '{flag}'; usage: cargo xtask {USAGE}"),
            };
            let n: u64 = match value.parse() {
                Ok(n) if n > 0 || flag == "--seed" => n,
                _ => bail!("soak: {flag} takes a whole number (above zero), not '{value}'"),
            };
            match flag.as_str() {
                "--minutes" => o.minutes = n,
                "--agents" => o.agents = n.min(200) as usize,
                _ => o.seed = n,
            }
        }
        Ok(o)
    }

    fn repeat(&self) -> String {
        format!("cargo xtask soak --minutes {} --agents {} --seed {}", self.minutes, self.agents, self.seed)
    }
}

/// Set by SIGINT/SIGTERM: the run ends early and still cleans up after itself.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn interrupted(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C (or a CI runner's SIGTERM) ends the run early instead of leaving cgroups, agents
/// and the state tmpfs behind.
fn on_interrupt_stop() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(interrupted), SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// Invariants are checked this often while the run goes on.
const CHECKPOINT: Duration = Duration::from_secs(30);

pub fn run(root: &Path, options: &Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the soak creates cgroups and mounts: run it as root");
    println!(
        "soak: seed {}, {} minute(s), {} agents; repeat with: {}",
        options.seed,
        options.minutes,
        options.agents,
        options.repeat()
    );
    let world = World::create(root)?;
    println!(
        "soak: fleetctl {}, fleet root {}, budget {} MiB",
        world.bin.display(),
        world.fleet.root.unified.display(),
        world.budget >> 20
    );
    let shared = Shared::new(options.agents);
    on_interrupt_stop();
    // A panic in an actor still tears the fleet down (below) before it is reported.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| soak(&world, &shared, options)))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the soak panicked (see above)")));
    report::totals(&shared, &world);
    let kept = world.keep_journal(root, options.seed);
    let cleanup = world.destroy();
    let table = outcome?;
    table.print("final");
    if let Some(dir) = kept {
        println!("soak: journal and guard log kept in {}", dir.display());
    }
    cleanup?;
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("soak interrupted (seed {}); everything it made is removed", options.seed);
    }
    if table.violations() > 0 {
        bail!(
            "soak FAILED with seed {}: {} violation(s); repeat with: {}",
            options.seed,
            table.violations(),
            options.repeat()
        );
    }
    println!("soak: PASS (seed {})", options.seed);
    Ok(())
}

/// The run itself: the guard, the actors, the checkpoints, then the operator's end of the
/// run and the final checks.
fn soak(world: &World, shared: &Shared, options: &Options) -> Result<report::Table> {
    let mut guard = world.start_guard()?;
    let mut table = invariants::table();
    let start = Instant::now();
    let end = start + Duration::from_secs(options.minutes * 60);
    std::thread::scope(|scope| {
        // However this closure ends (a checkpoint's panic too), the actors stop, or the
        // scope would wait for them forever.
        let _stop = StopOnDrop(shared);
        actors::start(scope, world, shared, options.seed);
        let mut next = start + CHECKPOINT;
        while Instant::now() < end && !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            if Instant::now() >= next && Instant::now() + CHECKPOINT / 2 < end {
                let quiet = shared.pause.write().unwrap_or_else(|e| e.into_inner());
                invariants::checkpoint(world, shared, &mut table, &mut guard, false);
                drop(quiet);
                println!(
                    "soak: checkpoint at {} s: {} violation(s) so far",
                    start.elapsed().as_secs(),
                    table.violations()
                );
                next = Instant::now() + CHECKPOINT;
            }
        }
    });
    // The actors are done (the scope joined them). The guard's last check, then the
    // operator's end of the run, then the final checks.
    invariants::checkpoint(world, shared, &mut table, &mut guard, false);
    guard.stop();
    invariants::end_of_run(world, shared);
    invariants::checkpoint(world, shared, &mut table, &mut guard, true);
    Ok(table)
}

struct StopOnDrop<'a>(&'a Shared);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::{Options, rng::Rng};

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_are_read_and_anything_else_is_refused() {
        let o = parse(&["--minutes", "2", "--agents", "8", "--seed", "0"]).expect("valid");
        assert_eq!((o.minutes, o.agents, o.seed), (2, 8, 0));
        assert_eq!(parse(&[]).expect("defaults").minutes, 5);
        for bad in [&["--bogus"][..], &["--minutes"], &["--minutes", "0"], &["--agents", "x"]] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn one_seed_gives_one_sequence_per_actor() {
        let draw = |seed, stream| {
            let mut rng = Rng::new(seed, stream);
            (0..5).map(|_| rng.next()).collect::<Vec<u64>>()
        };
        assert_eq!(draw(7, 1), draw(7, 1));
        assert_ne!(draw(7, 1), draw(7, 2));
        assert_ne!(draw(7, 1), draw(8, 1));
    }
}
