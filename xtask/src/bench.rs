//! `cargo xtask bench`: fleetctl's hot paths against baselines measured in the same run,
//! reported as ratios, because this machine is shared and absolute numbers drift.
//!
//! - spawn latency (median): bare fork+exec of `true`; the bash baseline doing the same
//!   cgroup writes and exec; `fleetctl spawn` (returns once the command is exec'd);
//! - N sleeping agents spawned by 8 parallel callers, then `kill --all --force`;
//! - each supervisor's resident memory while the N agents run.

use anyhow::{Result, bail, ensure};
use fleet_core::cgroup::{Fleet, Mounts, OwnCgroups};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// The seed script's cgroup work, in bash: make the cgroup in every hierarchy, write the
/// limits, then start the command placed in it (the child writes itself into cgroup.procs
/// before exec, as fleetctl does) and return once it is placed, which is what `fleetctl
/// spawn` promises too. Returning before the placement (a plain `&`) would leave out the
/// most expensive step: the first `cgroup.procs` write waits for an RCU grace period.
const BASH_SPAWN: &str = r#"
set -e
id=$1; shift
for d in "$@"; do mkdir -p "$d/$id"; done
if [ -n "$MEM" ]; then
  echo $((4<<30)) > "$MEM/$id/memory.limit_in_bytes"
  echo $((4<<30)) > "$MEM/$id/memory.memsw.limit_in_bytes"
  echo $((3<<30)) > "$MEM/$id/memory.soft_limit_in_bytes"
  echo 512 > "$PIDS/$id/pids.max"
else
  echo $((4<<30)) > "$UNI/$id/memory.max"; echo $((3<<30)) > "$UNI/$id/memory.high"
  echo 0 > "$UNI/$id/memory.swap.max"; echo 512 > "$UNI/$id/pids.max"; echo 1 > "$UNI/$id/memory.oom.group"
fi
{ setsid sh -c 'for d in "$@"; do echo 0 > "$d/cgroup.procs"; done; echo placed; exec sleep 1000 >/dev/null 2>&1' \
    sh $(for d in "$@"; do echo "$d/$id"; done) </dev/null 2>/dev/null & } | head -n 1 >/dev/null
"#;

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    ensure!(unsafe_geteuid() == 0, "the benchmark creates cgroups: run it as root");
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (agents, rounds, trials) = (flag("--agents", 300), flag("--rounds", 40), flag("--trials", 20));
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "fleetctl"])
        .current_dir(root)
        .status()?;
    ensure!(status.success(), "cargo build --release failed");
    let bin = root.join("target/release/fleetctl");
    let tmp = std::env::temp_dir().join(format!("fleetctl-bench-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("ws/ws"))?;
    let name = format!("fleetctl-bench-{}", std::process::id());
    let mounts = Mounts::detect(Path::new("/proc"))?;
    let fleet = Fleet::resolve(&mounts, &OwnCgroups::read(Path::new("/proc"))?, &name)?;
    let env = Env { bin, tmp: tmp.clone(), name };
    let result = measure(&env, &fleet, agents, rounds, trials);
    let _ = env.fleetctl(&["kill", "--all", "--force"]).output();
    for cg in [fleet.agents(), fleet.supervisors(), fleet.root.clone(), baseline_root(&fleet)] {
        let _ = cg.kill_and_remove(Duration::from_secs(5));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

pub struct Env {
    bin: PathBuf,
    pub tmp: PathBuf,
    name: String,
}

impl Env {
    pub fn fleetctl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("FLEET_CGROUP_PARENT", &self.name)
            .env("FLEET_STATE_DIR", self.tmp.join("state"))
            .env("FLEET_LOG_DIR", self.tmp.join("log"))
            .env("FLEET_WORKSPACE_ROOT", self.tmp.join("ws"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }
}

fn baseline_root(fleet: &Fleet) -> fleet_core::cgroup::Cgroup {
    fleet.root.child("bash-baseline")
}

fn measure(env: &Env, fleet: &Fleet, agents: usize, rounds: usize, trials: usize) -> Result<()> {
    fleet.ensure()?;
    // 1. Bare fork+exec.
    let bare =
        median((0..rounds).map(|_| time(|| Ok(Command::new("true").status().map(|_| ())?))).collect::<Result<_>>()?);
    // 2. The bash baseline.
    let base = baseline_root(fleet);
    base.create()?;
    let dirs: Vec<String> = base.dirs().iter().map(|d| d.display().to_string()).collect();
    let mut bash = Vec::new();
    for i in 0..rounds {
        let id = format!("b{i}");
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(BASH_SPAWN).arg("bash").arg(&id).args(&dirs);
        cmd.env("UNI", &dirs[0])
            .env("MEM", dirs.get(1).cloned().unwrap_or_default())
            .env("PIDS", dirs.get(2).cloned().unwrap_or_default());
        bash.push(time(|| check(cmd.status()?, "bash baseline"))?);
        base.child(&id).kill_and_remove(Duration::from_secs(5))?;
    }
    let bash = median(bash);
    // 3. fleetctl spawn.
    let mut spawn = Vec::new();
    for i in 0..rounds {
        let id = format!("s{i}");
        spawn.push(time(|| check(env.fleetctl(&["spawn", &id, "ws", "--", "sleep", "1000"]).status()?, "spawn"))?);
        check(env.fleetctl(&["kill", "--force", &id]).status()?, "kill")?;
    }
    let spawn = median(spawn);

    // 4. N agents up (8 parallel callers), resident memory, then all down.
    let failures = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let up = time(|| {
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= agents {
                            break;
                        }
                        let ok = env
                            .fleetctl(&["spawn", &format!("a{i:03}"), "ws", "--", "sleep", "1000"])
                            .status()
                            .is_ok_and(|s| s.success());
                        if !ok {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Ok(())
    })?;
    let up_failures = failures.load(Ordering::SeqCst);
    let running = fleet.agent_names()?.len();
    let mut rss: Vec<u64> = fleet.supervisors().procs()?.iter().filter_map(|p| rss_kib(*p)).collect();
    rss.sort_unstable();
    let observe_rows = crate::bench_memory::observe(env, fleet, 15)?;
    let watcher_row = crate::bench_memory::watcher_cpu(env, 10)?;
    let mut down_output = None;
    let down = time(|| {
        down_output = Some(env.fleetctl(&["kill", "--all", "--force"]).output()?);
        Ok(())
    })?;
    let down_ok = down_output.as_ref().is_some_and(|o| o.status.success());
    if let Some(o) = down_output.filter(|o| !o.status.success()) {
        eprintln!(
            "kill --all --force: {}",
            String::from_utf8_lossy(&o.stderr).lines().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    let left = fleet.agent_names()?.len();
    ensure!(!rss.is_empty(), "no supervisors found to measure");

    println!("| what | fleetctl | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| spawn latency, median of {rounds} | {} | bare fork+exec {} | {:.1}x |",
        ms(spawn),
        ms(bare),
        ratio(spawn, bare)
    );
    println!(
        "| spawn latency, median of {rounds} | {} | bash, same cgroup work {} | {:.2}x |",
        ms(spawn),
        ms(bash),
        ratio(spawn, bash)
    );
    println!("| {agents} agents up, 8 callers | {} ({running} running, {up_failures} failures) | | |", ms(up));
    println!(
        "| {agents} agents down, kill --all --force | {} ({left} left, {}) | | |",
        ms(down),
        if down_ok { "exit 0" } else { "FAILED" }
    );
    println!(
        "| supervisor resident memory ({} supervisors) | median {} KiB, max {} KiB | goal 2048 KiB | {:.2}x of goal (max) |",
        rss.len(),
        rss[rss.len() / 2],
        rss[rss.len() - 1],
        rss[rss.len() - 1] as f64 / 2048.0
    );
    for row in observe_rows.iter().chain([&watcher_row]) {
        println!("{row}");
    }
    for row in crate::bench_memory::reaction(env, fleet, trials)? {
        println!("{row}");
    }
    if up_failures > 0 || left > 0 || !down_ok {
        bail!("the {agents}-agent run had failures");
    }
    Ok(())
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

fn check(status: std::process::ExitStatus, what: &str) -> Result<()> {
    ensure!(status.success(), "{what} failed: {status}");
    Ok(())
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}
