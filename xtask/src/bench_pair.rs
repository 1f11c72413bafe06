//! `bench --baseline-rev REV`: the CPU an agent's start takes (its `spawn`, its supervisor
//! and the agent's own process until it sleeps), this tree's build against the baseline's,
//! paired. Both fleets come up in the same bursts: the agents of a burst are shared among 16
//! callers, each starting agent i of one build and then of the other (which first alternates
//! with i), so both builds meet the host as it is at that moment; two scale runs timed one
//! after the other cannot tell a few percent apart on a shared host (docs/decisions.md).
//!
//! A `spawn`'s CPU comes from `wait4(2)`; its supervisor's, since its fork, and the agent's,
//! from their `schedstat` once all have started. What the kernel does for them in other
//! contexts is not in it: the host's CPU while one build's agents come up alone is the
//! fuller figure (docs/benchmarks.md). Both builds run their agents (`sleep`) as root,
//! `--user root` when the baseline knows `--user` (else its empty config), with only the
//! fleet's variables and PATH.

use crate::{bench::Env, bench_scale::CALLERS};
use anyhow::{Context, Result, ensure};
use fleet_core::cgroup::{Cgroup, Fleet};
use std::{
    ffi::OsString,
    io::Read,
    os::unix::process::ExitStatusExt,
    process::{Command, ExitStatus, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Rounds of paired bursts.
const ROUNDS: usize = 6;

/// Agents of each build per burst: the count issue 18 compares at, and at most what a
/// baseline admits with its 32 MiB start reserve on a small host.
const AGENTS: usize = 300;

/// CPU per agent start, in seconds: (spawn, supervisor, agent), per build (this tree's, the
/// baseline's).
type Round = [(f64, f64, f64); 2];

/// The paired row, if there is a baseline: this tree's fleet is `fleet`, the baseline's
/// `theirs`, each empty before and after.
pub fn start_cpu(env: &Env, fleet: &Fleet, theirs: &Fleet) -> Result<Option<String>> {
    let Some(baseline) = &env.baseline else { return Ok(None) };
    let help =
        env.baseline_fleet(&["spawn", "--help"]).context("no baseline build")?.stdout(Stdio::piped()).output()?;
    let user: &[&str] = match String::from_utf8_lossy(&help.stdout).contains("--user") {
        true => &["--user", "root"],
        false => &[],
    };
    let mut rounds: Vec<Round> = Vec::new();
    for round in 0..ROUNDS {
        let result = burst(env, round, user, [fleet, theirs]);
        let _ = env.fleetctl(&["kill", "--all", "--force"]).output();
        let _ = env.baseline_fleet(&["kill", "--all", "--force"]).map(|mut c| c.output());
        rounds.push(result?);
    }
    // Each build's mean over the rounds: (spawn, supervisor, agent).
    let mean = |build: usize| {
        let n = rounds.len() as f64;
        let part = |f: fn(&(f64, f64, f64)) -> f64| rounds.iter().map(|r| f(&r[build])).sum::<f64>() / n;
        (part(|p| p.0), part(|p| p.1), part(|p| p.2))
    };
    let total = |p: &(f64, f64, f64)| p.0 + p.1 + p.2;
    let ratios: Vec<f64> = rounds.iter().map(|r| total(&r[0]) / total(&r[1])).collect();
    let (ratio, se) = mean_and_standard_error(&ratios);
    let ms = |s: f64| format!("{:.2}", s * 1e3);
    let cell = |p: (f64, f64, f64)| format!("{} ms ({} + {} + {})", ms(total(&p)), ms(p.0), ms(p.1), ms(p.2));
    Ok(Some(format!(
        "| CPU per agent start (spawn + supervisor + agent before it sleeps), {AGENTS} from {CALLERS} callers, paired with build {}, mean of {ROUNDS} bursts' ratios | {} | {} | {ratio:.3}x ± {se:.3} |",
        baseline.name,
        cell(mean(0)),
        cell(mean(1)),
    )))
}

/// One burst: [`AGENTS`] agents of each build from [`CALLERS`] threads, which build starts
/// agent i first alternating with i and from one round to the next. Returns each build's
/// mean CPU per agent.
fn burst(env: &Env, round: usize, user: &[&str], fleets: [&Fleet; 2]) -> Result<Round> {
    let next = AtomicUsize::new(0);
    let spawn_nanos = [AtomicU64::new(0), AtomicU64::new(0)];
    let failed = AtomicBool::new(false);
    let first_failure = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..CALLERS {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= AGENTS {
                        break;
                    }
                    let leader = (i + round) % 2;
                    for build in [leader, 1 - leader] {
                        if failed.load(Ordering::SeqCst) {
                            break;
                        }
                        match spawn_cpu_of(env, build, i, user) {
                            Ok(nanos) => {
                                spawn_nanos[build].fetch_add(nanos, Ordering::SeqCst);
                            }
                            Err(e) => {
                                failed.store(true, Ordering::SeqCst);
                                if let Ok(mut first) = first_failure.lock() {
                                    first.get_or_insert(format!("{e:#}"));
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(failure) = first_failure.into_inner().unwrap_or_default() {
        anyhow::bail!("a paired spawn failed: {failure}");
    }
    let mut result = [(0.0, 0.0, 0.0); 2];
    for (build, fleet) in fleets.iter().enumerate() {
        // The supervisors first: once all have joined `supervisors/`, each agent's cgroup
        // holds its agent alone.
        let supervisors = cpu_of(&supervisor_pids(fleet)?)?;
        let agents = cpu_of(&agent_pids(fleet)?)?;
        let per_agent = |nanos: u64| nanos as f64 / 1e9 / AGENTS as f64;
        result[build] =
            (per_agent(spawn_nanos[build].load(Ordering::SeqCst)), per_agent(supervisors), per_agent(agents));
    }
    Ok(result)
}

/// Starts agent `i` with `build` (0: this tree's, 1: the baseline's) as `user` and returns
/// its `spawn`'s CPU time, in nanoseconds.
fn spawn_cpu_of(env: &Env, build: usize, i: usize, user: &[&str]) -> Result<u64> {
    let id = format!("p{i:03}");
    let args: Vec<&str> =
        ["spawn", id.as_str(), "ws"].into_iter().chain(user.iter().copied()).chain(["--", "sleep", "1000"]).collect();
    let mut cmd: Command = match build {
        0 => env.fleetctl(&args),
        _ => env.baseline_fleet(&args).context("no baseline build")?,
    };
    // The fleet's variables and PATH, nothing of cargo's or the caller's: an older build hands
    // its caller's whole environment to the agent, whose start then costs more with every
    // variable (and SUDO_UID would make an agent with no user the caller's).
    let fleet_vars: Vec<(OsString, OsString)> =
        cmd.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
    cmd.env_clear().envs(fleet_vars);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = cmd.stderr(Stdio::piped()).spawn()?;
    let (mut status, mut usage) = (0, std::mem::MaybeUninit::<libc::rusage>::zeroed());
    // SAFETY: waits for our own child, which std waits for only if this fails (the handle is dropped
    // unwaited); `usage` is written by the kernel.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
    if pid <= 0 {
        let error = std::io::Error::last_os_error();
        let _ = child.wait();
        anyhow::bail!("wait4: {error}");
    }
    let status = ExitStatus::from_raw(status);
    if !status.success() {
        let mut stderr = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
        anyhow::bail!("spawn {id} of build {build} {status}: {}", stderr.trim());
    }
    // SAFETY: wait4 succeeded, so it filled `usage`.
    let usage = unsafe { usage.assume_init() };
    let nanos = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Ok(nanos(usage.ru_utime) + nanos(usage.ru_stime))
}

/// The process of every agent of `fleet`, once all [`AGENTS`] of them have one.
fn agent_pids(fleet: &Fleet) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    for name in fleet.agent_names()? {
        pids.extend(fleet.agents().child(&name).procs()?);
    }
    all_of(pids, "agent processes", &fleet.agents())
}

/// Every supervisor of `fleet`, once all [`AGENTS`] of them are in `supervisors/` (each
/// joins after its agent's start).
fn supervisor_pids(fleet: &Fleet) -> Result<Vec<i32>> {
    let pids = crate::bench::supervisors_joined(fleet, AGENTS, Duration::from_secs(10))?;
    all_of(pids, "supervisors", &fleet.supervisors())
}

/// `pids`, if they are [`AGENTS`]: one `what` per agent, in `cgroup`.
fn all_of(pids: Vec<i32>, what: &str, cgroup: &Cgroup) -> Result<Vec<i32>> {
    ensure!(pids.len() == AGENTS, "{} {what} in {}, not {AGENTS}", pids.len(), cgroup.unified.display());
    Ok(pids)
}

/// The CPU, in nanoseconds, `pids` have used since each was forked (each has one thread).
fn cpu_of(pids: &[i32]) -> Result<u64> {
    let mut nanos = 0u64;
    for pid in pids {
        let path = format!("/proc/{pid}/schedstat");
        let schedstat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let ran: u64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("{path}: {schedstat}"))?;
        nanos += ran;
    }
    Ok(nanos)
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
