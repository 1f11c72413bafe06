//! `cargo xtask bench`: fleetctl's hot paths against baselines measured in the same run,
//! reported as ratios, because this machine is shared and absolute numbers drift.
//!
//! - spawn latency (median, `bench_spawn`): bare fork+exec of `true`; the bash baseline doing
//!   the same cgroup writes and exec; `fleetctl spawn` (returns once the command is exec'd);
//! - the scale run (`bench_scale`): N sleeping agents spawned by 16 parallel callers,
//!   relief and `kill --all --force` over all of them, every record checked;
//! - each supervisor's resident memory while the N agents run;
//! - the spawn queue's hand-off from a freed slot to the next waiter's start (`bench_queue`);
//! - with `--baseline-rev`, the CPU an agent's start takes against that build's, paired
//!   (`bench_pair`).

use anyhow::{Result, ensure};
use fleet_core::cgroup::{Fleet, Mounts, OwnCgroups};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The seed script's cgroup work, in bash: make the cgroup in every hierarchy, write the
/// limits, then start the command placed in it (the child writes itself into cgroup.procs
/// before exec, as fleetctl does) and return once it is placed, which is what `fleetctl
/// spawn` promises too. Returning before the placement (a plain `&`) would leave out the
/// most expensive step: the first `cgroup.procs` write waits for an RCU grace period.
pub const BASH_SPAWN: &str = r#"
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

/// A part of the benchmark `--only` may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Spawn latency: interleaved, cold, right after a kill, as an unprivileged user.
    Spawn,
    /// The auto-kill reaction trials.
    Reaction,
    /// The queue's hand-off.
    Queue,
    /// The scale run: agents up, their supervisors' memory, `status`, `memory`, the
    /// watcher's CPU, relief and `kill --all`.
    Scale,
}

impl Part {
    const ALL: [(&'static str, Part); 4] =
        [("spawn", Part::Spawn), ("reaction", Part::Reaction), ("queue", Part::Queue), ("scale", Part::Scale)];

    /// `scale` or `spawn,scale`: the parts named, each one known.
    pub fn parse_list(list: &str) -> Result<Vec<Part>> {
        list.split(',')
            .map(|name| {
                Part::ALL
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, p)| *p)
                    .ok_or_else(|| anyhow::anyhow!("bench: --only takes spawn, reaction, queue or scale, not '{name}'"))
            })
            .collect()
    }
}

/// How much to measure.
pub struct Options {
    /// Agents in the scale run.
    pub agents: usize,
    /// Interleaved spawn rounds.
    pub rounds: usize,
    /// Auto-kill reaction trials per guard.
    pub trials: usize,
    /// The parts to run (`--only`); all when empty. The scale run alone is what `status`,
    /// `memory`, the watcher and relief at 1,000 agents need, in a fraction of the time.
    pub only: Vec<Part>,
    /// An installed fleetctl to measure (`--fleetctl /usr/bin/fleetctl`, as the systemd VM
    /// tier's `--bench` does) instead of this tree's `dist` build.
    pub fleetctl: Option<PathBuf>,
    /// Where the bench's fleet root goes (`--cgroup-parent`, as `FLEET_CGROUP_PARENT` takes
    /// it): by default a child of the bench's own cgroup. On a systemd host, a path inside
    /// `fleetctl-fleet.scope` puts spawn on the path a packaged install takes there.
    pub cgroup_parent: Option<String>,
    /// A revision of this repository whose build the scale run times `status` and `memory`
    /// against, interleaved, and whose agents' starts it pairs with this tree's
    /// (`--baseline-rev`, `bench_baseline.rs`, `bench_pair.rs`).
    pub baseline_rev: Option<String>,
}

impl Options {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            agents: 300,
            rounds: 60,
            trials: 20,
            only: Vec::new(),
            fleetctl: None,
            cgroup_parent: None,
            baseline_rev: None,
        }
    }
}

pub fn run(root: &Path, options: &Options) -> Result<()> {
    ensure!(unsafe_geteuid() == 0, "the benchmark creates cgroups: run it as root");

    let tmp = std::env::temp_dir().join(format!("fleetctl-bench-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("ws/ws"))?;
    // Agents that run as an unprivileged user (the containment row) reach and write it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(tmp.join("ws/ws"), std::fs::Permissions::from_mode(0o1777))?;
    // The binary hosts install (`cargo xtask dist`), installed as a host would have it
    // (`install_copy`). What operators run is what is measured.
    let bin = match &options.fleetctl {
        Some(installed) => installed.clone(),
        None => {
            let bin = tmp.join("fleetctl");
            install_copy(&crate::dist::build(root)?, &bin)?;
            bin
        }
    };
    // Built before anything is mounted: a revision that does not build leaves nothing behind.
    let baseline = match &options.baseline_rev {
        Some(rev) => match crate::bench_baseline::build(root, rev, &tmp) {
            Ok(baseline) => Some(baseline),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        },
        None => None,
    };
    let name = options.cgroup_parent.clone().unwrap_or_else(|| format!("fleetctl-bench-{}", std::process::id()));
    // Everything that can fail before the mounts: an error leaves only `tmp` to remove.
    // The scale run's agents sleep in about 1 MiB: counted at admission at the default 32 MiB
    // start reserve, 1,000 of them started within its 10 s would be refused past 640 on a
    // 24 GiB host. They count for what they take.
    // Its agents run as root (spawn refuses root with no user), and no host config applies.
    let prepared = std::fs::write(tmp.join("fleet.toml"), "[agent]\nuser = \"root\"\nstart_reserve = \"1M\"\n")
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            let (mounts, own) = (Mounts::detect(Path::new("/proc"))?, OwnCgroups::read(Path::new("/proc"))?);
            Ok((Fleet::resolve(&mounts, &own, &name)?, Fleet::resolve(&mounts, &own, &baseline_fleet_name(&name))?))
        });
    let (fleet, theirs) = match prepared {
        Ok(fleets) => fleets,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // As on a host prepared by setup-host: the state dir on tmpfs (where /run is), scratch on
    // its tmpfs; logs stay on disk. The baseline's own fleet (`bench_pair`) likewise.
    let dirs: &[&str] = match baseline {
        Some(_) => &["state", "scratch", "baseline/state", "baseline/scratch"],
        None => &["state", "scratch"],
    };
    let mut mounted = Vec::new();
    let mut result = Ok(());
    for dir in dirs.iter().map(|d| tmp.join(d)) {
        let mount = std::fs::create_dir_all(&dir).map_err(anyhow::Error::from).and_then(|()| {
            Ok(nix::mount::mount(
                Some("fleet-bench"),
                &dir,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some("size=256m"),
            )?)
        });
        match mount {
            Ok(()) => mounted.push(dir),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let env = Env { bin, tmp: tmp.clone(), name, baseline };
    if result.is_ok() {
        result = measure(&env, &fleet, &theirs, options);
    }
    let _ = env.fleetctl(&["kill", "--all", "--force"]).output();
    let mut cgroups = vec![fleet.agents(), fleet.supervisors(), fleet.root.clone(), baseline_root(&fleet)];
    // Only a fleet the bench made: `--cgroup-parent`'s siblings are someone else's.
    if let Some(mut kill) = env.baseline_fleet(&["kill", "--all", "--force"]) {
        let _ = kill.output();
        cgroups.extend([theirs.agents(), theirs.supervisors(), theirs.root.clone()]);
    }
    for cg in cgroups {
        let _ = cg.kill_and_remove(Duration::from_secs(5));
    }
    for dir in &mounted {
        let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

pub struct Env {
    bin: PathBuf,
    pub tmp: PathBuf,
    name: String,
    /// The build `--baseline-rev` named, if any.
    pub baseline: Option<crate::bench_baseline::Baseline>,
}

impl Env {
    pub fn fleetctl(&self, args: &[&str]) -> Command {
        self.command(&self.bin, args)
    }

    /// The baseline build with `args` on a fleet of its own (`bench_pair`): its cgroup
    /// beside ours, its own state, scratch, log and lease dirs, the same workspaces.
    pub fn baseline_fleet(&self, args: &[&str]) -> Option<Command> {
        let dir = self.tmp.join("baseline");
        self.baseline(args).map(|mut cmd| {
            cmd.env("FLEET_CGROUP_PARENT", baseline_fleet_name(&self.name))
                .env("FLEET_STATE_DIR", dir.join("state"))
                .env("FLEET_LOG_DIR", dir.join("log"))
                .env("FLEET_SCRATCH_ROOT", dir.join("scratch"))
                .env("FLEET_LOCK_DIR", dir.join("lock"));
            cmd
        })
    }

    /// The baseline build with `args`, on the same fleet (with its empty config).
    pub fn baseline(&self, args: &[&str]) -> Option<Command> {
        self.baseline.as_ref().map(|b| {
            let mut cmd = self.command(&b.bin, args);
            cmd.env("FLEET_CONFIG", &b.config);
            cmd
        })
    }

    fn command(&self, bin: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("FLEET_CGROUP_PARENT", &self.name)
            .env("FLEET_STATE_DIR", self.tmp.join("state"))
            .env("FLEET_LOG_DIR", self.tmp.join("log"))
            .env("FLEET_WORKSPACE_ROOT", self.tmp.join("ws"))
            .env("FLEET_SCRATCH_ROOT", self.tmp.join("scratch"))
            .env("FLEET_LOCK_DIR", self.tmp.join("lock"))
            .env("FLEET_CONFIG", self.tmp.join("fleet.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }
}

/// Copies the binary `from` to `to` and leaves none of the copy in the page cache, so that
/// its first run reads it from disk, as a host runs an installed binary after a boot: how
/// the page cache holds a binary moves what each start costs (docs/decisions.md). On a tmpfs
/// the copy can only stay in memory, which the bench says.
pub fn install_copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)?;
    let file = std::fs::File::open(to)?;
    let on_tmpfs =
        nix::sys::statfs::fstatfs(&file).is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if on_tmpfs {
        eprintln!(
            "bench: {} is on tmpfs: the binary stays in memory, not read from disk as a host reads it",
            to.display()
        );
        return Ok(());
    }
    // Written pages are dirty until written back, and only clean ones can be dropped.
    file.sync_all()?;
    use std::os::fd::AsRawFd;
    // SAFETY: advice about a file we hold open; it changes no memory of ours.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    ensure!(rc == 0, "posix_fadvise {}: {}", to.display(), std::io::Error::from_raw_os_error(rc));
    Ok(())
}

/// The cgroup parent of the baseline build's own fleet.
fn baseline_fleet_name(name: &str) -> String {
    format!("{name}-baseline")
}

pub fn baseline_root(fleet: &Fleet) -> fleet_core::cgroup::Cgroup {
    fleet.root.child("bash-baseline")
}

fn measure(env: &Env, fleet: &Fleet, theirs: &Fleet, options: &Options) -> Result<()> {
    let Options { agents, rounds, trials, .. } = *options;
    fleet.ensure()?;
    let mut rows = Vec::new();
    // 1-3. Spawn latency against bare fork+exec and the bash baseline.
    if options.runs(Part::Spawn) {
        rows.extend(crate::bench_spawn::latency(env, fleet, rounds)?);
    }
    // 4. Auto-kill reaction on a quiet fleet, before the scale run: tearing down hundreds of
    //    cgroups leaves the kernel freeing them for seconds, which showed up as noise here.
    let reaction_rows =
        if options.runs(Part::Reaction) { crate::bench_memory::reaction(env, fleet, trials)? } else { Vec::new() };
    // The queue's hand-off, also on a quiet fleet.
    let queue_rows = if options.runs(Part::Queue) { crate::bench_queue::handoff(env, trials)? } else { Vec::new() };
    // 5. The scale run: N agents up from 16 callers, resident memory, the observation
    //    figures, relief and kill over all of them, every record accounted for.
    if options.runs(Part::Scale) {
        rows.extend(scale(env, fleet, agents)?);
        // On the emptied fleet.
        rows.extend(crate::bench_pair::start_cpu(env, fleet, theirs)?);
    }
    println!("{}\n", machine_line(fleet));
    println!("| what | fleetctl | baseline | ratio |");
    println!("|---|---|---|---|");
    for row in rows.iter().chain(&reaction_rows).chain(&queue_rows) {
        println!("{row}");
    }
    Ok(())
}

/// The scale run's rows: up, relief and down, the supervisors' memory, the observation
/// figures and the watcher.
fn scale(env: &Env, fleet: &Fleet, agents: usize) -> Result<Vec<String>> {
    let up_row = crate::bench_scale::up(env, fleet, agents)?;
    let supervisors = supervisors_joined(fleet, agents, Duration::from_secs(5))?;
    let mut rss: Vec<u64> = supervisors.iter().filter_map(|p| rss_kib(*p)).collect();
    rss.sort_unstable();
    let observe_rows = crate::bench_memory::observe(env, fleet, 15)?;
    let watcher_row = crate::bench_memory::watcher_cpu(env, fleet, 10)?;
    let down_rows = crate::bench_scale::relief_and_down(env, fleet, agents)?;
    ensure!(!rss.is_empty(), "no supervisors found to measure");
    let mut rows = vec![up_row];
    rows.extend(down_rows);
    rows.push(format!(
        "| supervisor resident memory ({} supervisors) | median {} KiB, max {} KiB | goal 2048 KiB | {:.2}x of goal (max) |",
        rss.len(),
        rss[rss.len() / 2],
        rss[rss.len() - 1],
        rss[rss.len() - 1] as f64 / 2048.0
    ));
    rows.extend(observe_rows);
    rows.push(watcher_row);
    Ok(rows)
}

/// The supervisors in `fleet`'s `supervisors/`, once `count` of them are there or `wait` has
/// passed. Each joins (and drops its setup pages) 50 ms after it starts.
pub fn supervisors_joined(fleet: &Fleet, count: usize, wait: Duration) -> Result<Vec<i32>> {
    let deadline = Instant::now() + wait;
    loop {
        let pids = fleet.supervisors().procs()?;
        if pids.len() >= count || Instant::now() > deadline {
            return Ok(pids);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// "Run 2026-11-22 14:05 UTC on host, 2 cores, 23.5 GiB, kernel 6.1.0, hybrid, favordynmods off":
/// the heading docs/benchmarks.md files the table under.
fn machine_line(fleet: &Fleet) -> String {
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: u64 = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fast = fleet_core::host::mounts::favours_dynmods(Path::new("/proc"));
    format!(
        "Run {} on {}, {} cores, {}, kernel {}, {}, favordynmods {}",
        out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        out("hostname", &[]),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        fleet_core::size::format_iec(kib * 1024),
        out("uname", &["-r"]),
        fleet.root.layout,
        if fast { "on" } else { "off" }
    )
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn time(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

pub fn check(status: std::process::ExitStatus, what: &str) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::Part;

    #[test]
    fn only_takes_known_parts_and_refuses_the_rest() {
        assert_eq!(Part::parse_list("scale").unwrap(), [Part::Scale]);
        assert_eq!(Part::parse_list("spawn,queue").unwrap(), [Part::Spawn, Part::Queue]);
        let err = Part::parse_list("scale,status").unwrap_err().to_string();
        assert!(err.contains("not 'status'"), "{err}");
        assert!(Part::parse_list("").is_err());
    }
}
