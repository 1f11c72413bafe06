//! Spawn latency against its two baselines, measured the way a shared, noisy machine allows.
//!
//! - **Interleaved.** Each round times a bare fork+exec, the bash baseline and `fleetctl
//!   spawn`, in an order shuffled per round: drift in the machine's load hits all three
//!   alike, and none of them always runs in the wake of another (an agent's `sleep` is still
//!   starting up, on the other core, when `spawn` returns).
//! - **Into a live fleet.** Nothing is torn down inside the timed rounds. Removing a cgroup
//!   returns before the kernel has freed it (RCU grace periods, memory-cgroup offlining
//!   queued on every CPU), and that work lands on whatever runs next: it is `kill`'s cost,
//!   which the scale run measures. Every agent and baseline cgroup is removed after the rounds.
//! - **Cold**, as an operator typing one command meets it: each of the three after 250 ms
//!   of idling. Unless cgroup2 is mounted with `favordynmods`, the first cgroup migration
//!   (a `cgroup.procs` write) after a quiet moment waits for an RCU grace period, and so does
//!   the bash baseline's; the interleaved rounds keep that path warm for each other.
//! - **And the earlier method**, for comparison: first bare fork+exec in a loop of its own,
//!   then each spawn right after `kill --force` of the previous agent. Every table in
//!   docs/benchmarks.md before the 18:25 UTC run of 2026-11-22 used it. The kills are timed
//!   too: a kill right after a spawn is when the kernel's notifications are least reliable.

use crate::bench::{BASH_SPAWN, Env, baseline_root, check, median, ms, ratio, time};
use anyhow::Result;
use fleet_core::cgroup::Fleet;
use std::{
    process::Command,
    time::{Duration, SystemTime},
};

/// The table rows.
pub fn latency(env: &Env, fleet: &Fleet, rounds: usize) -> Result<Vec<String>> {
    let base = baseline_root(fleet);
    base.create()?;
    // On cgroup v2 the baseline's leaves get memory and pids only where their parent hands
    // them down, as `agents/` does for fleetctl's (hybrid has them in every v1 directory).
    if base.layout == fleet_core::cgroup::Layout::Unified {
        std::fs::write(base.unified.join("cgroup.subtree_control"), "+memory +pids")?;
    }
    let dirs: Vec<String> = base.dirs().iter().map(|d| d.display().to_string()).collect();
    let bash_spawn = |id: &str| -> Result<Duration> {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(BASH_SPAWN).arg("bash").arg(id).args(&dirs);
        cmd.env("UNI", &dirs[0])
            .env("MEM", dirs.get(1).cloned().unwrap_or_default())
            .env("PIDS", dirs.get(2).cloned().unwrap_or_default());
        time(|| check(cmd.status()?, "bash baseline"))
    };
    let bare = || time(|| Ok(Command::new("true").status().map(|_| ())?));
    let spawn = |id: &str| time(|| check(env.fleetctl(&["spawn", id, "ws", "--", "sleep", "1000"]).status()?, "spawn"));

    // Each round times the three in a shuffled order, each after `idle`; then everything the
    // rounds started is torn down. Medians of bare fork+exec, the bash baseline and spawn.
    let mut order = Shuffle::seeded();
    let mut rounds_of = |n: usize, idle: Duration, tag: &str| -> Result<[Duration; 3]> {
        let mut times: [Vec<Duration>; 3] = Default::default();
        for i in 0..n {
            for which in order.next() {
                std::thread::sleep(idle);
                times[usize::from(which)].push(match which {
                    0 => bare()?,
                    1 => bash_spawn(&format!("{tag}b{i}"))?,
                    _ => spawn(&format!("{tag}s{i}"))?,
                });
            }
        }
        check(env.fleetctl(&["kill", "--all", "--force"]).status()?, "kill --all")?;
        for i in 0..n {
            base.child(&format!("{tag}b{i}")).kill_and_remove(Duration::from_secs(5))?;
        }
        Ok(times.map(median))
    };
    let [bare_m, bash_m, spawn_m] = rounds_of(rounds, Duration::ZERO, "")?;
    let cold_rounds = rounds.min(20);
    let [cold_bare, cold_bash, cold_spawn] = rounds_of(cold_rounds, COLD_IDLE, "c")?;

    // What containment costs: the same spawn as root and as an unprivileged user (the user
    // switch, its groups, no_new_privs, the workspace checked writable by that user), with
    // bare fork+exec, in shuffled rounds of their own.
    let as_user = |id: &str| {
        time(|| {
            check(
                env.fleetctl(&["spawn", id, "ws", "--user", "65534", "--", "sleep", "1000"]).status()?,
                "spawn --user",
            )
        })
    };
    let mut contained: [Vec<Duration>; 3] = Default::default();
    for i in 0..rounds {
        for which in order.next() {
            contained[usize::from(which)].push(match which {
                0 => bare()?,
                1 => spawn(&format!("r{i}"))?,
                _ => as_user(&format!("u{i}"))?,
            });
        }
    }
    check(env.fleetctl(&["kill", "--all", "--force"]).status()?, "kill --all")?;
    let [user_bare, user_root, user_m] = contained.map(median);

    // The earlier method, with each kill timed as well.
    let old_bare = median((0..rounds).map(|_| bare()).collect::<Result<_>>()?);
    let (mut after_kill, mut kills) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let id = format!("k{i}");
        after_kill.push(spawn(&id)?);
        kills.push(time(|| check(env.fleetctl(&["kill", "--force", &id]).status()?, "kill"))?);
    }
    let (after_kill, kills) = (median(after_kill), median(kills));

    Ok(vec![
        format!(
            "| spawn latency, median of {rounds} interleaved rounds, into a live fleet | {} | bare fork+exec {} | {:.1}x |",
            ms(spawn_m),
            ms(bare_m),
            ratio(spawn_m, bare_m)
        ),
        format!(
            "| spawn latency, the same rounds | {} | bash, same cgroup work {} | {:.2}x |",
            ms(spawn_m),
            ms(bash_m),
            ratio(spawn_m, bash_m)
        ),
        format!(
            "| spawn latency, cold: each after {} ms idle, median of {cold_rounds} | {} | bare fork+exec, the same {} | {:.1}x |",
            COLD_IDLE.as_millis(),
            ms(cold_spawn),
            ms(cold_bare),
            ratio(cold_spawn, cold_bare)
        ),
        format!(
            "| spawn latency, cold, the same rounds | {} | bash, same cgroup work, the same {} | {:.2}x |",
            ms(cold_spawn),
            ms(cold_bash),
            ratio(cold_spawn, cold_bash)
        ),
        format!(
            "| spawn as an unprivileged user (`--user 65534`), median of {rounds} interleaved rounds | {} | bare fork+exec {} | {:.1}x |",
            ms(user_m),
            ms(user_bare),
            ratio(user_m, user_bare)
        ),
        format!(
            "| spawn as an unprivileged user, the same rounds | {} | spawn as root (`--user root`) {} | {:.2}x |",
            ms(user_m),
            ms(user_root),
            ratio(user_m, user_root)
        ),
        format!(
            "| spawn latency, each right after `kill --force` of the previous agent (earlier method), median of {rounds} | {} | bare fork+exec in a loop of its own {} | {:.1}x |",
            ms(after_kill),
            ms(old_bare),
            ratio(after_kill, old_bare)
        ),
        format!(
            "| kill --force of the agent spawned just before, the same loop, median of {rounds} | {} | | |",
            ms(kills)
        ),
    ])
}

/// The pause before each cold measurement: many RCU grace periods long,
/// so the kernel's fast path for cgroup migrations has gone back to idle.
const COLD_IDLE: Duration = Duration::from_millis(250);

/// The order of the three measurements in each round: one of their six permutations, from a
/// xorshift generator (reproducibility does not matter here; balance does).
struct Shuffle(u64);

const PERMUTATIONS: [[u8; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];

impl Shuffle {
    fn seeded() -> Shuffle {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(1);
        Shuffle(u64::from(nanos) | 1)
    }

    fn next(&mut self) -> [u8; 3] {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        PERMUTATIONS[(self.0 % 6) as usize]
    }
}
