//! The soak's fleet: the real fleetctl, a fleet root nested under this process's own cgroup
//! with a small budget, its state dir on a small tmpfs (to fill), logs, workspaces and
//! scratch in a temp dir, and the guard as a child process. Everything it makes, `destroy`
//! removes, whether the run passed or not.

use anyhow::{Context, Result, ensure};
use fleet_core::cgroup::{Fleet, Mounts, OwnCgroups};
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The fleet's memory budget: small, so hogs cross it within seconds.
pub const BUDGET: u64 = 768 << 20;
/// Workspace pool slots (`spawn … auto`).
pub const SLOTS: usize = 48;
/// The state dir's tmpfs: small, so it fills quickly; the operator's `gc --older-than 2m`
/// keeps the records of a long run within it.
const STATE_TMPFS: &str = "size=32m";

pub struct World {
    pub bin: PathBuf,
    pub tmp: PathBuf,
    pub name: String,
    pub fleet: Fleet,
    pub budget: u64,
    state_mounted: bool,
}

/// A finished (or stopped) fleetctl run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The exit code, or `-signal` when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Outcome {
    /// `args: code N: first stderr line`, for a table's example column.
    pub fn describe(&self, args: &[&str]) -> String {
        let why = if self.timed_out { "timed out".to_string() } else { format!("exit {}", self.code) };
        format!("`{}`: {why}: {}", args.join(" "), self.stderr.lines().next().unwrap_or(""))
    }
}

impl World {
    pub fn create(root: &Path) -> Result<World> {
        let bin = fleetctl(root)?;
        let tmp = std::env::temp_dir().join(format!("fleetctl-soak-{}", std::process::id()));
        for dir in ["state", "log", "scratch", "lock", "shared-ws"] {
            std::fs::create_dir_all(tmp.join(dir))?;
        }
        for slot in 1..=SLOTS {
            std::fs::create_dir_all(tmp.join(format!("ws/ws-{slot:03}")))?;
        }
        // Its agents run as root: spawn refuses root with no user to run them as.
        std::fs::write(tmp.join("fleet.toml"), "[agent]\nuser = \"root\"\n")?;
        let name = format!("fleetctl-soak-{}", std::process::id());
        let mounts = Mounts::detect(Path::new("/proc"))?;
        let fleet = Fleet::resolve(&mounts, &OwnCgroups::read(Path::new("/proc"))?, &name)?;
        let mut world = World { bin, tmp, name, fleet, budget: BUDGET, state_mounted: false };
        // From here on, a failure still removes what was made.
        if let Err(e) = world.prepare() {
            let _ = world.destroy();
            return Err(e);
        }
        Ok(world)
    }

    fn prepare(&mut self) -> Result<()> {
        use nix::mount::{MsFlags, mount};
        mount(Some("fleet-soak"), &self.state(), Some("tmpfs"), MsFlags::empty(), Some(STATE_TMPFS))
            .context("mount the state dir's tmpfs")?;
        self.state_mounted = true;
        self.fleet.ensure()?;
        // The budget, as TestFleet::set_budget gives it.
        let file = if self.fleet.root.memory_v1.is_some() { "memory.limit_in_bytes" } else { "memory.max" };
        std::fs::write(self.fleet.root.memory_dir().join(file), self.budget.to_string())
            .context("set the fleet budget")?;
        Ok(())
    }

    pub fn state(&self) -> PathBuf {
        self.tmp.join("state")
    }

    pub fn journal(&self) -> PathBuf {
        self.tmp.join("log/events.jsonl")
    }

    /// A fleetctl command with this fleet's roots (and an empty config: the host's
    /// /etc/fleet/fleet.toml must not change the run).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("FLEET_CGROUP_PARENT", &self.name)
            .env("FLEET_STATE_DIR", self.state())
            .env("FLEET_LOG_DIR", self.tmp.join("log"))
            .env("FLEET_WORKSPACE_ROOT", self.tmp.join("ws"))
            .env("FLEET_SCRATCH_ROOT", self.tmp.join("scratch"))
            .env("FLEET_LOCK_DIR", self.tmp.join("lock"))
            .env("FLEET_CONFIG", self.tmp.join("fleet.toml"))
            .env_remove("FLEETCTL_FAILPOINT")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs fleetctl (with `failpoint` armed, if any) to its end or to `timeout`, when it
    /// is killed (by its pid: it is our child) and reported as timed out.
    pub fn exec(&self, args: &[&str], failpoint: Option<&str>, timeout: Duration) -> Outcome {
        let mut cmd = self.cmd(args);
        if let Some(point) = failpoint {
            cmd.env("FLEETCTL_FAILPOINT", point);
        }
        run_bounded(cmd, timeout)
    }

    /// Starts the guard: `watch --auto-kill`, its lines to `guard.log`; returns once it has
    /// written its first metrics (it is guarding then).
    pub fn start_guard(&self) -> Result<Guard> {
        let prom = self.tmp.join("guard.prom");
        let child = self
            .cmd(&["watch", "--auto-kill", "--interval", "200ms", "--metrics-file", &prom.to_string_lossy()])
            .stdout(std::fs::File::create(self.tmp.join("guard.log"))?)
            .stderr(std::fs::File::create(self.tmp.join("guard.err"))?)
            .spawn()
            .context("start the guard")?;
        let mut guard = Guard { child, exited: None };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !prom.exists() {
            if let Some(code) = guard.exited() {
                anyhow::bail!("the guard exited ({code}) before guarding: {}", self.guard_err());
            }
            ensure!(Instant::now() < deadline, "the guard never wrote {}", prom.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(guard)
    }

    pub fn guard_err(&self) -> String {
        std::fs::read_to_string(self.tmp.join("guard.err")).unwrap_or_default().trim().to_string()
    }

    /// Copies the journal and the guard's output to `target/soak-<seed>/` for a look after
    /// the run (the temp dir goes).
    pub fn keep_journal(&self, root: &Path, seed: u64) -> Option<PathBuf> {
        let dir = root.join(format!("target/soak-{seed}"));
        std::fs::create_dir_all(&dir).ok()?;
        for (from, to) in [("log/events.jsonl", "events.jsonl"), ("guard.log", "guard.log"), ("guard.err", "guard.err")]
        {
            let _ = std::fs::copy(self.tmp.join(from), dir.join(to));
        }
        Some(dir)
    }

    /// Kills whatever is left in the fleet's cgroups (they are ours), removes them, unmounts
    /// the state tmpfs and removes the temp dir.
    pub fn destroy(&self) -> Result<()> {
        let _ = self.exec(&["kill", "--all", "--force"], None, Duration::from_secs(60));
        let mut result = Ok(());
        let names = self.fleet.agent_names().unwrap_or_default();
        let leaves = names.iter().map(|n| self.fleet.agents().child(n));
        for cg in leaves.chain([self.fleet.agents(), self.fleet.supervisors(), self.fleet.root.clone()]) {
            if let Err(e) = cg.kill_and_remove(Duration::from_secs(10)) {
                result = Err(anyhow::anyhow!("remove {}: {e}", cg.unified.display()));
            }
        }
        if self.state_mounted {
            let _ = nix::mount::umount2(&self.state(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
        result
    }
}

/// The guard, our child.
pub struct Guard {
    child: Child,
    exited: Option<i32>,
}

impl Guard {
    /// Its exit code (or `-signal`) once it has exited.
    pub fn exited(&mut self) -> Option<i32> {
        if self.exited.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exited = Some(code_of(status));
        }
        self.exited
    }

    /// Ctrl-C, as an operator stops it; SIGKILL if it has not gone within 10 s.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| -status.signal().unwrap_or(0))
}

/// Runs `cmd` with its output captured, killing it (our child, by pid) at `timeout`. The
/// readers hand their text over a channel, so a grandchild that kept a pipe open cannot
/// hold this up either.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Outcome {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome { code: -1000, stderr: format!("cannot start: {e}"), ..Outcome::default() },
    };
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break code_of(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().map(code_of).unwrap_or(-9);
            }
        }
    };
    let text = |rx: std::sync::mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    Outcome { code, stdout: text(out), stderr: text(err), timed_out }
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send(text);
        });
    }
    rx
}

/// `FLEETCTL_BIN`, else this workspace's fleetctl, built now.
fn fleetctl(root: &Path) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FLEETCTL_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let status = Command::new("cargo").args(["build", "--quiet", "--bin", "fleetctl"]).current_dir(root).status()?;
    ensure!(status.success(), "building fleetctl failed");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target.join("debug/fleetctl"))
}
