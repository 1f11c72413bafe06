//! The memory-observation figures: `status` and `memory` over N agents against a bash loop
//! reading the same cgroup files, the watcher's CPU with N agents, and auto-kill reaction
//! time against a polling bash guard like the seed's `watch-memory.sh`.

use anyhow::{Result, ensure};
use fleet_core::cgroup::{Fleet, UsageAlarm};
use nix::poll::{PollFd, PollTimeout, poll};
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// What `check-agent-memory.sh` does per agent: read its state and its cgroup files.
const BASH_STATUS: &str = r#"
for d in "$AGENTS"/*/; do
  id=$(basename "$d")
  cur=$(cat "$MEM/$id/memory.usage_in_bytes" 2>/dev/null || cat "$d/memory.current")
  max=$(cat "$MEM/$id/memory.limit_in_bytes" 2>/dev/null || cat "$d/memory.max")
  pids=$(cat "$PIDS/$id/pids.current" 2>/dev/null || cat "$d/pids.current")
  state=$(cat "$STATE/$id/state.json" | grep '"state"')
  echo "$id $cur $max $pids $state"
done
"#;

/// A polling guard like `watch-memory.sh --auto-kill`: every 100 ms, if the fleet is over
/// the threshold, SIGKILL every process of the largest agent.
const BASH_GUARD: &str = r#"
while :; do
  used=$(cat "$ROOT/memory.usage_in_bytes" 2>/dev/null || cat "$ROOT/memory.current")
  if [ "$used" -ge "$LIMIT" ]; then
    big=""; bigsize=0
    for d in "$AGENTS"/*/; do
      s=$(cat "$d/memory.usage_in_bytes" 2>/dev/null || cat "$d/memory.current")
      if [ "$s" -gt "$bigsize" ]; then bigsize=$s; big=$(basename "$d"); fi
    done
    [ -n "$big" ] && for p in $(cat "$UNIFIED/$big/cgroup.procs"); do kill -9 "$p" 2>/dev/null; done
  fi
  sleep 0.1
done
"#;

/// Grows in 8 MiB steps, in separate variables, until killed.
const GROWER: &str = r#"i=0; while [ $i -lt 100 ]; do eval "v$i=\$(head -c 8388608 /dev/zero | tr '\\0' x)"; i=$((i+1)); done; sleep 600; test -n "$v1""#;

/// `status`/`memory` medians and the bash loop's, over the agents now running.
pub fn observe(env: &crate::bench::Env, fleet: &Fleet, rounds: usize) -> Result<Vec<String>> {
    // Each run of this tree's build is followed by one of the baseline's, if there is one.
    let time_cmd = |args: &[&str]| -> Result<(Duration, Option<Duration>)> {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let timed = |mut cmd: Command, which: &str| -> Result<Duration> {
            let t = Instant::now();
            let out = cmd.stdout(Stdio::null()).output()?;
            ensure!(out.status.success(), "{which} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            Ok(t.elapsed())
        };
        for _ in 0..rounds {
            ours.push(timed(env.fleetctl(args), "this build's")?);
            if let Some(cmd) = env.baseline(args) {
                theirs.push(timed(cmd, "the baseline build's")?);
            }
        }
        Ok((crate::bench::median(ours), (!theirs.is_empty()).then(|| crate::bench::median(theirs))))
    };
    let status = time_cmd(&["status", "--json"])?;
    let memory = time_cmd(&["memory", "--json"])?;
    let agents = fleet.agents();
    let mut bash = Vec::new();
    for _ in 0..3 {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(BASH_STATUS).stdout(Stdio::null()).stderr(Stdio::null());
        cmd.env("AGENTS", &agents.unified).env("STATE", env.tmp.join("state/agents"));
        cmd.env("MEM", agents.memory_v1.clone().unwrap_or_default())
            .env("PIDS", agents.pids_v1.clone().unwrap_or_default());
        let t = Instant::now();
        cmd.status()?;
        bash.push(t.elapsed());
    }
    let bash = crate::bench::median(bash);
    let n = fleet.agent_names()?.len();
    let mut rows = Vec::new();
    for (what, (ours, theirs)) in [("status", status), ("memory", memory)] {
        rows.push(format!(
            "| {what} --json, {n} agents, median of {rounds} | {} | bash loop over the same files {} | {:.3}x |",
            crate::bench::ms(ours),
            crate::bench::ms(bash),
            crate::bench::ratio(ours, bash)
        ));
        if let (Some(theirs), Some(baseline)) = (theirs, &env.baseline) {
            rows.push(format!(
                "| {what} --json, {n} agents, each run followed by one of build {} | {} | build {} {} | {:.3}x |",
                baseline.name,
                crate::bench::ms(ours),
                baseline.name,
                crate::bench::ms(theirs),
                crate::bench::ratio(ours, theirs)
            ));
        }
    }
    Ok(rows)
}

/// The watcher's CPU over `secs` seconds with the agents now running, against the polling
/// bash guard's (the seed's `watch-memory.sh --auto-kill`, which shows nothing) over the
/// same agents and seconds, with a threshold neither reaches.
pub fn watcher_cpu(env: &crate::bench::Env, fleet: &Fleet, secs: u64) -> Result<String> {
    let mut watcher = env.fleetctl(&["watch", "--auto-kill"]).stdout(Stdio::null()).spawn()?;
    std::thread::sleep(Duration::from_secs(1)); // startup is not steady state
    let before = cpu_ns(watcher.id())?;
    std::thread::sleep(Duration::from_secs(secs));
    let after = cpu_ns(watcher.id())?;
    let rss = std::fs::read_to_string(format!("/proc/{}/status", watcher.id()))?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(watcher.id() as i32), nix::sys::signal::Signal::SIGINT);
    watcher.wait()?;

    let mut guard = bash_guard(fleet, u64::MAX).spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    let guard_before = cpu_ticks_with_children(guard.id())?;
    std::thread::sleep(Duration::from_secs(secs));
    let guard_after = cpu_ticks_with_children(guard.id())?;
    let _ = guard.kill();
    guard.wait()?;

    let percent = (after - before) as f64 / 1e9 / secs as f64 * 100.0;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let bash = (guard_after - guard_before) as f64 / hz / secs as f64 * 100.0;
    Ok(format!(
        "| watcher CPU, --auto-kill, {secs} s (goal 1 %) | {percent:.2} % of a core (RSS {rss}) | bash guard polling every 100 ms {bash:.2} % | {:.2}x |",
        percent / bash
    ))
}

/// [`BASH_GUARD`] over `fleet`, killing at `limit` bytes.
fn bash_guard(fleet: &Fleet, limit: u64) -> Command {
    let agents = fleet.agents();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(BASH_GUARD)
        .env("ROOT", fleet.root.memory_dir())
        .env("LIMIT", limit.to_string())
        .env("AGENTS", agents.memory_dir())
        .env("UNIFIED", &agents.unified)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// A process's time on a CPU, in nanoseconds (`/proc/PID/schedstat`): the watcher runs a
/// few milliseconds a second, below what clock ticks resolve.
fn cpu_ns(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    Ok(text.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// A process's CPU time and its reaped children's, in clock ticks: the bash guard's work
/// is mostly the `cat` and `sleep` it forks.
fn cpu_ticks_with_children(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: utime, stime, cutime, cstime are fields 14-17 (1-based), 11-14 here.
    Ok((11..=14).filter_map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok())).sum())
}

/// Auto-kill reaction: from the kernel's notice that the fleet crossed the kill threshold to
/// the victim's cgroup being empty, for fleetctl's watcher and for the polling bash guard.
pub fn reaction(env: &crate::bench::Env, fleet: &Fleet, trials: usize) -> Result<Vec<String>> {
    let budget: u64 = 512 << 20;
    let threshold = budget * 95 / 100;
    let limit_file = fleet.root.memory_dir().join(if fleet.root.memory_v1.is_some() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    });
    std::fs::write(&limit_file, budget.to_string())?;
    let rows = reaction_rows(env, fleet, trials, threshold);
    // The runs after this one (the queue, the scale run) need the host's budget again: in
    // 512 MiB only a dozen agents' start reserves fit.
    std::fs::write(&limit_file, if fleet.root.memory_v1.is_some() { "-1" } else { "max" })?;
    rows
}

fn reaction_rows(env: &crate::bench::Env, fleet: &Fleet, trials: usize, threshold: u64) -> Result<Vec<String>> {
    let mut rows = Vec::new();
    for guard in ["fleetctl watch --auto-kill", "bash guard polling every 100 ms"] {
        let mut guard_proc = if guard.starts_with("fleetctl") {
            env.fleetctl(&["watch", "--auto-kill"]).stdout(Stdio::null()).spawn()?
        } else {
            bash_guard(fleet, threshold).spawn()?
        };
        std::thread::sleep(Duration::from_millis(500));
        let (mut times, mut failures) = (Vec::new(), 0);
        for i in 0..trials {
            let id = format!("hog{i}");
            match one_trial(env, fleet, &id, threshold)? {
                Some(d) => times.push(d),
                None => failures += 1,
            }
            let _ = env.fleetctl(&["kill", "--force", &id]).output();
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(guard_proc.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = guard_proc.kill();
        let _ = guard_proc.wait();
        times.sort_unstable();
        let pct = |p: f64| times.get(((times.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
        rows.push(format!(
            "| auto-kill reaction, {guard}, {} trials | p50 {} p99 {} ({failures} not killed by the guard) | | |",
            trials,
            crate::bench::ms(pct(0.5)),
            crate::bench::ms(pct(0.99))
        ));
    }
    Ok(rows)
}

/// One hog grows through the threshold; returns crossing-to-empty, or None if the guard did
/// not get it (the kernel's OOM killer did, or it never crossed).
fn one_trial(env: &crate::bench::Env, fleet: &Fleet, id: &str, threshold: u64) -> Result<Option<Duration>> {
    let alarm = UsageAlarm::arm(&fleet.root, threshold)?;
    let status = env.fleetctl(&["spawn", id, "ws", "--", "sh", "-c", GROWER]).status()?;
    ensure!(status.success(), "spawn {id} failed");
    let (fd, flags) = alarm.poll_target();
    let mut fds = [PollFd::new(fd, flags)];
    if poll(&mut fds, PollTimeout::from(20_000u16))? == 0 {
        return Ok(None);
    }
    let crossed = Instant::now();
    let cgroup = fleet.agent(&id.parse().map_err(anyhow::Error::msg)?);
    if !cgroup.wait_empty(Duration::from_secs(10))? {
        return Ok(None);
    }
    let reaction = crossed.elapsed();
    let oom = cgroup.memory_events().map(|e| e.oom_kill).unwrap_or(0);
    Ok(if oom > 0 { None } else { Some(reaction) })
}
