//! `bench --baseline-rev REV`: the CPU an agent's start takes (its `spawn` and its
//! supervisor's), this tree's build against the baseline's, paired. Both fleets come up in
//! the same bursts: 16 callers each start one agent of each build in turn, first one, then
//! the other, so both meet the host as it is at that moment. Timing two scale runs one after
//! the other cannot tell a few percent apart here: their ratio moves by 14 % from round to
//! round, with this shared host's speed.
//!
//! A `spawn`'s own CPU comes from `wait4(2)`; a supervisor's, since its fork, from its
//! `schedstat` once all have started. Both agents run `sleep` as root: the baseline may
//! predate `--user`, and its config is empty.

use crate::{bench::Env, bench_scale::CALLERS};
use anyhow::{Context, Result, ensure};
use fleet_core::cgroup::Fleet;
use std::{
    process::Stdio,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Rounds of paired bursts.
const ROUNDS: usize = 6;

/// Agents of each build per burst: the count issue 18 compares at, and at most what a
/// baseline admits with its 32 MiB start reserve on a small host.
pub const AGENTS: usize = 300;

/// CPU per agent start, in seconds: (spawn, supervisor), per build (this tree's, the
/// baseline's).
type Round = [(f64, f64); 2];

/// The paired row, if there is a baseline: this tree's fleet is `fleet`, the baseline's
/// `theirs`, each empty before and after.
pub fn start_cpu(env: &Env, fleet: &Fleet, theirs: &Fleet) -> Result<Option<String>> {
    let Some(baseline) = &env.baseline else { return Ok(None) };
    let mut rounds: Vec<Round> = Vec::new();
    for round in 0..ROUNDS {
        let result = burst(env, round, [fleet, theirs]);
        let _ = env.fleetctl(&["kill", "--all", "--force"]).output();
        let _ = env.baseline_fleet(&["kill", "--all", "--force"]).map(|mut c| c.output());
        rounds.push(result?);
    }
    // Each build's mean over the rounds: (spawn, supervisor).
    let mean = |build: usize| {
        let n = rounds.len() as f64;
        (rounds.iter().map(|r| r[build].0).sum::<f64>() / n, rounds.iter().map(|r| r[build].1).sum::<f64>() / n)
    };
    let ratios: Vec<f64> = rounds.iter().map(|r| (r[0].0 + r[0].1) / (r[1].0 + r[1].1)).collect();
    let (ratio, se) = mean_and_standard_error(&ratios);
    let ms = |s: f64| format!("{:.2} ms", s * 1e3);
    let cell =
        |(spawn, supervisor): (f64, f64)| format!("{} ({} + {})", ms(spawn + supervisor), ms(spawn), ms(supervisor));
    Ok(Some(format!(
        "| CPU per agent start (spawn + supervisor), {AGENTS} from {CALLERS} callers, paired with build {} ({ROUNDS} rounds) | {} | {} | {ratio:.3}x ± {se:.3} |",
        baseline.name,
        cell(mean(0)),
        cell(mean(1)),
    )))
}

/// One burst: [`AGENTS`] agents of each build from [`CALLERS`] threads, alternating which
/// build starts first. Returns each build's mean CPU per agent.
fn burst(env: &Env, round: usize, fleets: [&Fleet; 2]) -> Result<Round> {
    let next = AtomicUsize::new(0);
    let spawn_cpu = Mutex::new([0.0f64; 2]);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for caller in 0..CALLERS {
            let (next, spawn_cpu, failures) = (&next, &spawn_cpu, &failures);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= AGENTS {
                        break;
                    }
                    let first = (i + caller + round) % 2;
                    for build in [first, 1 - first] {
                        match spawn_cpu_of(env, build, i) {
                            Ok(cpu) => spawn_cpu.lock().map(|mut c| c[build] += cpu).unwrap_or_default(),
                            Err(e) => failures.lock().map(|mut f| f.push(format!("{e:#}"))).unwrap_or_default(),
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    ensure!(failures.is_empty(), "{} paired spawns failed, the first: {}", failures.len(), failures[0]);
    let spawn_cpu = spawn_cpu.into_inner().unwrap_or_default();
    let mut result = [(0.0, 0.0); 2];
    for (build, fleet) in fleets.iter().enumerate() {
        let supervisors = supervisor_cpu(fleet)?;
        result[build] = (spawn_cpu[build] / AGENTS as f64, supervisors / AGENTS as f64);
    }
    Ok(result)
}

/// Starts agent `i` with `build` (0: this tree's, 1: the baseline's) and returns its
/// `spawn`'s CPU time, in seconds.
fn spawn_cpu_of(env: &Env, build: usize, i: usize) -> Result<f64> {
    let id = format!("p{i:03}");
    let args = ["spawn", id.as_str(), "ws", "--", "sleep", "1000"];
    let mut cmd = match build {
        0 => env.fleetctl(&args),
        _ => env.baseline_fleet(&args).context("no baseline build")?,
    };
    let child = cmd.stderr(Stdio::null()).spawn()?;
    let (mut status, mut usage) = (0, std::mem::MaybeUninit::<libc::rusage>::zeroed());
    // SAFETY: waits for our own child, whose pid std will not wait for again (the handle is
    // dropped unwaited); `usage` is written by the kernel.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
    ensure!(pid > 0, "wait4: {}", std::io::Error::last_os_error());
    ensure!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "spawn {id} (build {build}) failed: {status}");
    // SAFETY: wait4 succeeded, so it filled `usage`.
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// The CPU, in seconds, every supervisor of `fleet` has used since its fork, once all
/// [`AGENTS`] of them are in `supervisors/` (each joins after its start).
fn supervisor_cpu(fleet: &Fleet) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let pids = fleet.supervisors().procs()?;
        if pids.len() >= AGENTS || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(
        pids.len() == AGENTS,
        "{} supervisors in {}, not {AGENTS}",
        pids.len(),
        fleet.supervisors().unified.display()
    );
    let mut nanos = 0u64;
    for pid in pids {
        let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
        nanos += schedstat.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    }
    Ok(nanos as f64 / 1e9)
}

/// The mean of `values` and its standard error.
fn mean_and_standard_error(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

#[cfg(test)]
mod tests {
    use super::mean_and_standard_error;

    #[test]
    fn the_standard_error_is_the_spread_over_the_root_of_the_count() {
        let (mean, se) = mean_and_standard_error(&[1.0, 1.1, 0.9, 1.0]);
        assert!((mean - 1.0).abs() < 1e-12);
        // Sample standard deviation sqrt(0.02 / 3), over sqrt(4).
        assert!((se - (0.02f64 / 3.0).sqrt() / 2.0).abs() < 1e-12, "{se}");
        assert_eq!(mean_and_standard_error(&[2.0]), (2.0, 0.0));
    }
}
