//! The integration harness: each test gets its own fleet, nested under the test process's
//! own cgroup in every hierarchy (never beside the machine's cgroups), with its state, log
//! and workspace dirs in a temp dir. `finish` kills what is left, checks that no process,
//! cgroup or held lock remains, and removes the fleet root.

use fleet_core::{
    cgroup::{Cgroup, Fleet, Limits, Mounts, OwnCgroups},
    lock::HeldLocks,
};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

pub mod pty;
pub mod skip;
pub use skip::{skip, skip_part};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The fleetctl under test; `FLEETCTL_BIN` points elsewhere (the VM tier copies it).
pub fn bin() -> PathBuf {
    std::env::var_os("FLEETCTL_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fleetctl")))
}

/// A finished fleetctl run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, printing everything on mismatch.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Run {
        assert_eq!(self.code, want, "exit code\n--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// Asserts stderr has exactly one line containing `fragment`.
    #[track_caller]
    pub fn one_error_line(&self, fragment: &str) -> &Run {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.len() == 1 && lines[0].contains(fragment),
            "want exactly one line on stderr, containing '{fragment}'; got {}:\n{}",
            lines.len(),
            self.stderr
        );
        self
    }
}

/// One test's fleet.
pub struct TestFleet {
    pub name: String,
    pub tmp: tempfile::TempDir,
    pub fleet: Fleet,
    /// Where its workspace pool, scratch root and lock dir are: its own temp dir, or the
    /// temp dir of the fleet it shares them with.
    pub roots: PathBuf,
    /// Its state dir: `state` in its temp dir unless the test points it elsewhere.
    pub state: PathBuf,
}

impl TestFleet {
    /// A new fleet, or `None` where the test cannot run (the skip recorded: [`skip`]).
    pub fn new(test: &str) -> Option<TestFleet> {
        if !skip::is_root() {
            skip::skip_without_root(test);
            return None;
        }
        let mounts = match Mounts::detect(Path::new("/proc")) {
            Ok(m) => m,
            Err(e) => {
                skip::skip(test, &e.to_string());
                return None;
            }
        };
        let own = OwnCgroups::read(Path::new("/proc")).expect("own cgroups");
        let name = format!("fleetctl-test-{}-{}-{test}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let fleet = Fleet::resolve(&mounts, &own, &name).expect("resolve fleet");
        let tmp = tempfile::Builder::new().prefix("fleetctl-test-").tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("ws/ws-001")).expect("workspace");
        let roots = tmp.path().to_path_buf();
        let state = tmp.path().join("state");
        Some(TestFleet { name, tmp, fleet, roots, state })
    }

    /// A second fleet (its own cgroups, state and logs) that uses `other`'s workspace pool,
    /// scratch root and lock dir, as two fleets left at the default roots do. Finish it
    /// before `other`: `other`'s finish checks that no lease is left in the shared lock dir.
    pub fn sharing_roots_with(other: &TestFleet, test: &str) -> Option<TestFleet> {
        let mut fleet = TestFleet::new(test)?;
        fleet.roots = other.roots.clone();
        Some(fleet)
    }

    /// This fleet's scratch dirs' directory in its scratch root (named after its state dir,
    /// symlinks resolved).
    pub fn own_scratch(&self) -> PathBuf {
        let state = std::fs::canonicalize(&self.state)
            .unwrap_or_else(|_| std::fs::canonicalize(self.tmp.path()).expect("canonical tmp").join("state"));
        self.roots.join("scratch").join(fleet_core::paths::path_key(&state))
    }

    /// A fleetctl command with this fleet's roots.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("FLEET_CGROUP_PARENT", &self.name)
            .env("FLEET_STATE_DIR", &self.state)
            .env("FLEET_LOG_DIR", self.tmp.path().join("log"))
            .env("FLEET_WORKSPACE_ROOT", self.roots.join("ws"))
            .env("FLEET_SCRATCH_ROOT", self.roots.join("scratch"))
            .env("FLEET_LOCK_DIR", self.roots.join("lock"))
            .env("FLEET_CONFIG", self.config_path())
            .stdin(Stdio::null());
        // An absent config file given explicitly would be an error; point at one that only
        // runs agents as root unless the test wrote one ([`Self::set_config`]).
        // Parallel callers may get here together: the file is linked into place whole, never
        // written where another command may be reading it, and never over a test's own.
        if !self.config_path().exists() {
            let temp = self.config_temp();
            let _ = std::fs::write(&temp, as_root(""));
            let _ = std::fs::hard_link(&temp, self.config_path());
            let _ = std::fs::remove_file(&temp);
        }
        cmd
    }

    /// The config file every command of this fleet reads.
    fn config_path(&self) -> PathBuf {
        self.tmp.path().join("fleet.toml")
    }

    /// Writes this fleet's config file; its agents run as root unless it names a user.
    pub fn set_config(&self, toml: &str) {
        // Renamed into place: a command running meanwhile reads the old file or the new one.
        let temp = self.config_temp();
        std::fs::write(&temp, as_root(toml)).expect("write the config file");
        std::fs::rename(&temp, self.config_path()).expect("rename the config file into place");
    }

    /// A name of this thread's own beside the config file, to write it whole before it
    /// takes the config's place.
    fn config_temp(&self) -> PathBuf {
        self.tmp.path().join(format!(".fleet.toml.{:?}", std::thread::current().id()).replace(['(', ')'], ""))
    }

    /// For tests that start dozens of tiny agents at once, on whatever memory the host has
    /// (the VM tier's is under 512 MiB): a starting agent counts 1 MiB at admission instead
    /// of the 32 MiB a real agent's runtime takes.
    pub fn small_start_reserve(&self) {
        self.set_config("[agent]\nstart_reserve = \"1M\"\n");
    }

    /// Runs fleetctl to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run fleetctl"))
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> Value {
        let run = self.run(&["status", "--json"]);
        run.code(0);
        serde_json::from_str(&run.stdout).expect("status --json parses")
    }

    /// One agent's entry in `status --json`.
    pub fn agent(&self, id: &str) -> Value {
        let status = self.status();
        status["agents"].as_array().and_then(|a| a.iter().find(|x| x["id"] == id).cloned()).unwrap_or(Value::Null)
    }

    /// Waits until agent `id` is in one of `states`. `running` means its command has
    /// started, not that it has done anything: a test that depends on what the command sets
    /// up first (a trap, its memory) waits for a line printed after it ([`Self::wait_log`]).
    #[track_caller]
    pub fn wait_state(&self, id: &str, states: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let a = self.agent(id);
            if states.iter().any(|s| a["state"] == *s) {
                return a;
            }
            assert!(Instant::now() < deadline, "{id} never reached {states:?}; last: {a:#}\nlog:\n{}", self.log(id));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the agent's log contains `text`.
    #[track_caller]
    pub fn wait_log(&self, id: &str, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log(id).contains(text) {
            assert!(Instant::now() < deadline, "{id}'s log never showed '{text}':\n{}", self.log(id));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's log so far.
    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("log/agents/{id}.log"))).unwrap_or_default()
    }

    /// The event journal, parsed.
    pub fn events(&self, id: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.tmp.path().join("log/events.jsonl")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|e| e["id"] == id).collect()
    }

    /// Waits for an event of kind `event` about `id` (events can follow the state change
    /// they explain: relief's carries the memory freed, measured after the agent ended).
    #[track_caller]
    pub fn wait_event(&self, id: &str, event: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events(id).into_iter().find(|e| e["event"] == event) {
                return e;
            }
            assert!(Instant::now() < deadline, "no {event} event for {id}: {:?}", self.events(id));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Agent `id`'s cgroup.
    pub fn cgroup(&self, id: &str) -> Cgroup {
        self.fleet.agent(&id.parse().expect("id"))
    }

    /// Gives the fleet root a memory budget (its memory.max), creating it if needed.
    pub fn set_budget(&self, bytes: u64) {
        self.fleet.ensure().expect("ensure fleet");
        let dir = self.fleet.root.memory_dir().to_path_buf();
        let file = if self.fleet.root.memory_v1.is_some() { "memory.limit_in_bytes" } else { "memory.max" };
        std::fs::write(dir.join(file), bytes.to_string()).expect("set fleet budget");
    }

    /// Reads an agent's limits back from the kernel.
    pub fn limits(&self, id: &str) -> Limits {
        self.cgroup(id).read_limits().expect("read limits")
    }

    /// Kills what is left and checks that nothing remains: no process in the fleet, no
    /// agent cgroup, no held lock. Then removes the fleet root.
    pub fn finish(self) {
        let run = self.run(&["kill", "--all", "--force"]);
        assert!(run.code == 0, "cleanup kill failed: {run:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let supervisors = self.fleet.supervisors();
        while supervisors.exists() && supervisors.populated().unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !supervisors.exists() || !supervisors.populated().unwrap_or(false),
            "supervisors still running: {:?}",
            supervisors.procs()
        );
        let left = self.fleet.agent_names().expect("list agents");
        assert!(left.is_empty(), "agent cgroups left behind: {left:?}");
        let own_lock_dir = self.roots.join("lock");
        assert_no_lock_held(&self.state, (self.roots == self.tmp.path()).then_some(own_lock_dir.as_path()));
        let scratch: Vec<_> = std::fs::read_dir(self.own_scratch()).into_iter().flatten().flatten().collect();
        assert!(scratch.is_empty(), "scratch dirs left behind: {scratch:?}");
        remove_fleet(&self.fleet);
    }
}

/// Checks that no agent lock in state dir `state` is held, nor any lease in `lock_dir` (given
/// only by the fleet that owns it: a fleet sharing another's is finished first).
#[track_caller]
pub fn assert_no_lock_held(state: &Path, lock_dir: Option<&Path>) {
    let agent_locks =
        std::fs::read_dir(state.join("agents")).into_iter().flatten().flatten().map(|e| e.path().join("lock"));
    let leases = lock_dir.and_then(|d| std::fs::read_dir(d).ok()).into_iter().flatten().flatten().map(|e| e.path());
    let files: Vec<PathBuf> = agent_locks.chain(leases).collect();
    // A process on its way out (its cgroup already empty) may still be closing its files:
    // wait for the release, which is the state this checks, and name the holder if it stays.
    let held = || {
        let held = HeldLocks::read(Path::new("/proc"));
        files.iter().find(|f| held.contains(f)).cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while held().is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(file) = held() {
        panic!("lock still held: {}; {}", file.display(), holders(&file));
    }
}

/// Who holds a lock on `path`, from /proc/locks: each pid with its command line and cgroups,
/// so a failure says which process outlived its part.
fn holders(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(ino) = std::fs::metadata(path).map(|m| m.ino()) else { return "the file is gone".into() };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let pids: Vec<&str> = locks
        .lines()
        .filter(|l| l.split_whitespace().nth(5).and_then(|id| id.rsplit(':').next()) == Some(&ino.to_string()))
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    let describe = |pid: &str| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let state = status.lines().find(|l| l.starts_with("State:")).unwrap_or("State: gone");
        format!(
            "pid {pid} ({state}) {:?} in {}",
            String::from_utf8_lossy(&cmdline).replace('\0', " "),
            cgroups.lines().filter(|l| l.contains("memory") || l.starts_with("0::")).collect::<Vec<_>>().join(", ")
        )
    };
    format!("held by: {}", pids.iter().map(|p| describe(p)).collect::<Vec<_>>().join("; "))
}

/// `toml` with `agent.user = "root"` unless it names a user: spawn refuses root with no user
/// to run the agent as, and the tests' agents run as root unless a test says otherwise.
pub fn as_root(toml: &str) -> String {
    if toml.lines().any(|l| l.trim_start().starts_with("user")) {
        return toml.to_string();
    }
    match toml.split_once("[agent]\n") {
        Some((before, after)) => format!("{before}[agent]\nuser = \"root\"\n{after}"),
        None => format!("{toml}\n[agent]\nuser = \"root\"\n"),
    }
}

/// Removes the fleet root from every hierarchy, deepest first.
pub fn remove_fleet(fleet: &Fleet) {
    for cg in [fleet.agents(), fleet.supervisors(), fleet.root.clone()] {
        cg.kill_and_remove(Duration::from_secs(5)).expect("remove fleet cgroup");
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        // A failed test still must not leave processes or cgroups on a shared machine.
        if self.fleet.root.exists() {
            let _ = self.run(&["kill", "--all", "--force"]);
            for cg in [self.fleet.agents(), self.fleet.supervisors(), self.fleet.root.clone()] {
                let _ = cg.kill_and_remove(Duration::from_secs(5));
            }
        }
    }
}

/// Whether process `pid` exists (zombies count as gone).
pub fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A shell snippet that allocates and holds about `mb` MiB, prints `ready`, runs `then`.
/// The variable is used after `then`, so a shell that execs its last command in place
/// (busybox sh does) cannot drop the memory early.
pub fn hog_script(mb: u64, then: &str) -> String {
    format!("x=$(head -c {} /dev/zero | tr '\\0' x); echo ready; {then}; test -n \"$x\"", mb << 20)
}

/// A tmpfs a test mounted (`data` such as `size=2m`), detached on drop. Drop it before
/// `TestFleet::finish` when it is inside the temp dir: a mount point cannot be removed.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, data: &str) -> Tmpfs {
        use nix::mount::{MsFlags, mount};
        mount(Some("fleet-test"), at, Some("tmpfs"), MsFlags::empty(), Some(data)).expect("mount tmpfs");
        Tmpfs(at.to_path_buf())
    }

    /// Fills it to ENOSPC with a file named `filler`, whose path it returns (to free the
    /// space again).
    pub fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        // dd stops at ENOSPC, which is the point.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=64k", "count=4096"])
            .stderr(Stdio::null())
            .status();
        filler
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.0).expect("statvfs");
        (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The lines a child prints, collected by a thread as they come, for [`wait_line`].
pub fn lines_of(out: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    lines
}

/// Waits until one of `lines` contains `text`.
#[track_caller]
pub fn wait_line(lines: &Mutex<Vec<String>>, text: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !lines.lock().expect("lines").iter().any(|l| l.contains(text)) {
        assert!(Instant::now() < deadline, "no line with '{text}' in:\n{}", lines.lock().expect("lines").join("\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `ready` holds, failing with `what` (and whatever it shows) after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: impl Fn() -> String, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` is blocked waiting for a lock on `path`: the kernel lists each waiter
/// in /proc/locks under the lock it waits for, as "N: -> FLOCK ADVISORY WRITE PID MAJ:MIN:INODE
/// ...". A test that must race a command against a held lock waits for this, not for a while.
pub fn waits_for_lock(pid: u32, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return false };
    let want = format!("{:02x}:{:02x}:{}", libc::major(meta.dev()), libc::minor(meta.dev()), meta.ino());
    let pid = pid.to_string();
    std::fs::read_to_string("/proc/locks").unwrap_or_default().lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.get(1) == Some(&"->") && fields.get(5) == Some(&pid.as_str()) && fields.get(6) == Some(&want.as_str())
    })
}
