//! Agents are untrusted: run as a user of their own, each one tries to undo its containment
//! (lift its limits, leave its cgroup, signal its keepers, regain root, read what is not its
//! own, see the caller's variables) and writes what happened to its log, which the test
//! reads. Numeric uids, so the tests need no passwd entry (the VM tier has none).

mod hardening;

use crate::util::{Run, TestFleet, alive};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

const T: Duration = Duration::from_secs(30);
/// A uid and gid no host user has: `nobody`'s number, which needs no passwd entry.
const NOBODY: &str = "65534";

/// Lets agents running as other users reach the fleet's temp dir (a tempdir is 0700): the
/// workspace pool and scratch root are inside it; and write slot ws-001, which spawn
/// checks the agent's user can.
fn open_to_agents(f: &TestFleet) {
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod tmp");
    let slot = f.tmp.path().join("ws/ws-001");
    std::fs::set_permissions(slot, std::fs::Permissions::from_mode(0o1777)).expect("chmod ws-001");
}

/// A shell line that tries `cmd` and prints `ALLOWED LABEL`, or `denied LABEL: ` and the
/// error it got, which [`denials`] checks is a refusal and not a missing target.
fn attempt(label: &str, cmd: &str) -> String {
    format!("if out=$( ( {cmd} ) 2>&1 ); then echo 'ALLOWED {label}'; else echo \"denied {label}: $out\"; fi; ")
}

/// How many attempts in `log` were refused, failing on any that failed otherwise (a target
/// that does not exist is no proof of containment).
fn denials(log: &str) -> usize {
    let denied: Vec<&str> = log.lines().filter(|l| l.starts_with("denied ")).collect();
    for line in &denied {
        assert!(
            line.contains("Permission denied") || line.contains("Operation not permitted"),
            "not a refusal: {line}\n{log}"
        );
    }
    denied.len()
}

/// The agent's memory and pids limit files, as the layout has them.
fn limit_files(f: &TestFleet, id: &str) -> (PathBuf, PathBuf) {
    let cg = f.cgroup(id);
    match (&cg.memory_v1, &cg.pids_v1) {
        (Some(memory), Some(pids)) => (memory.join("memory.limit_in_bytes"), pids.join("pids.max")),
        _ => (cg.unified.join("memory.max"), cg.unified.join("pids.max")),
    }
}

/// Every `cgroup.procs` an agent could move itself into: its parent's, the fleet root's and
/// each hierarchy's root.
fn escape_hatches(f: &TestFleet) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = f.fleet.agents().procs_files();
    files.extend(f.fleet.root.procs_files());
    for file in f.fleet.root.procs_files() {
        let top =
            file.ancestors().skip(1).take_while(|d| d.join("cgroup.procs").exists()).last().map(Path::to_path_buf);
        files.extend(top.map(|d| d.join("cgroup.procs")));
    }
    files
}

#[test]
fn an_agent_cannot_lift_its_limits_leave_its_cgroup_or_signal_its_keepers() {
    let Some(f) = TestFleet::new("contain-limits") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    let watcher = Watcher(
        f.cmd(&["watch", "--auto-kill", "--interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watch"),
    );
    let watcher_pid = watcher.0.id();
    // The cgroup's path is known before it exists: the script names the files.
    let pids = limit_files(&f, "c1").1;
    let mut script = String::new();
    script += &attempt("raise memory", &raise(&f, "c1"));
    script += &attempt("raise pids", &format!("echo max > {}", pids.display()));
    for procs in escape_hatches(&f) {
        script += &attempt(&format!("leave via {}", procs.display()), &format!("echo $$ > {}", procs.display()));
    }
    script += &attempt("signal supervisor", "kill -TERM $PPID");
    script += &attempt("signal watcher", &format!("kill -TERM {watcher_pid}"));
    script += "echo attempts-done; sleep 600";
    let mut spawn = f.cmd(&["spawn", "c1", "ws-001", "--user", NOBODY, "--memory-max", "64M", "--memory-high", "48M"]);
    spawn.args(["--pids-max", "32", "--", "sh", "-c", &script]);
    Run::from(spawn.output().expect("spawn")).code(0);
    f.wait_log("c1", "attempts-done", T);
    let log = f.log("c1");
    assert!(!log.contains("ALLOWED"), "the agent undid its containment:\n{log}");
    assert_eq!(denials(&log), 4 + escape_hatches(&f).len(), "every attempt ran:\n{log}");
    let agent = f.agent("c1");
    assert_eq!(agent["state"], "running", "{agent:#}");
    assert!(alive(agent["supervisor_pid"].as_i64().expect("supervisor")), "the supervisor survived");
    assert!(alive(watcher_pid as i64), "the watcher survived");
    let limits = f.limits("c1");
    assert_eq!(limits.memory_max, fleet_core::size::Limit::Bytes(64 << 20));
    assert_eq!(limits.pids_max, fleet_core::size::Limit::Bytes(32));
    let pid = agent["pid"].as_i64().expect("pid");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    for line in cgroups.lines().filter(|l| l.contains("memory") || l.contains("pids") || l.starts_with("0::")) {
        assert!(line.ends_with("/agents/c1"), "the agent left its cgroup: {line}");
    }

    // The same script as root does raise its limit: the refusal above is the user's.
    let control = ["spawn", "r1", "ws-001", "--user", "root", "--memory-max", "64M", "--memory-high", "48M", "--"];
    Run::from(f.cmd(&control).args(["sh", "-c", &attempt("raise", &raise(&f, "r1"))]).output().expect("spawn")).code(0);
    f.wait_log("r1", "raise", T);
    assert!(f.log("r1").contains("ALLOWED raise"), "{}", f.log("r1"));
    drop(watcher);
    f.finish();
}

/// A watcher the test started, interrupted and reaped however the test ends.
struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        crate::watch::interrupt(&self.0);
        let _ = self.0.wait();
    }
}

/// Shell commands that raise agent `id`'s memory limit to 128 MiB: on v1 with swap
/// accounting, the memory+swap limit first, which the memory limit may not pass.
fn raise(f: &TestFleet, id: &str) -> String {
    let memory = limit_files(f, id).0;
    let memsw = memory.with_file_name("memory.memsw.limit_in_bytes");
    let has_memsw = f.fleet.root.memory_dir().join("memory.memsw.limit_in_bytes").exists();
    match f.cgroup(id).memory_v1 {
        Some(_) if has_memsw => {
            format!("echo {} > {} && echo {} > {}", 128 << 20, memsw.display(), 128 << 20, memory.display())
        }
        _ => format!("echo {} > {}", 128 << 20, memory.display()),
    }
}

/// Agent `id`'s record, as spawn and its supervisor wrote it.
fn record(f: &TestFleet, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(f.state.join(format!("agents/{id}/state.json"))).expect("record");
    serde_json::from_str(&text).expect("json")
}

/// Not a test of its own: this test binary, copied setuid root and run by an agent (see
/// [`setuid_probe`]), prints the effective uid it got. A program of our own rather than
/// `id`, which is busybox's in the VM tier, and busybox drops setuid privileges itself.
#[test]
fn euid_probe() {
    if std::env::var_os("FLEETCTL_TEST_EUID_PROBE").is_some() {
        // SAFETY: geteuid has no preconditions.
        println!("probe euid={}", unsafe { libc::geteuid() });
    }
}

/// This test binary copied setuid root into the fleet's temp dir, and the shell words that
/// run it as [`euid_probe`]; None (a skipped part) on a nosuid filesystem.
fn setuid_probe(f: &TestFleet, test: &str) -> Option<String> {
    let stat = nix::sys::statvfs::statvfs(f.tmp.path()).expect("statvfs");
    if stat.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID) {
        crate::util::skip::skip_part(test, "the temp dir is mounted nosuid, so no setuid binary can run from it");
        return None;
    }
    let copy = f.tmp.path().join("suid-probe");
    std::fs::copy(std::env::current_exe().expect("the test binary"), &copy).expect("copy the test binary");
    std::os::unix::fs::chown(&copy, Some(0), Some(0)).expect("chown");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).expect("setuid");
    Some(format!("{} --exact containment::euid_probe --nocapture --test-threads=1", copy.display()))
}

#[test]
fn no_new_privs_keeps_setuid_binaries_from_giving_root_back() {
    let Some(f) = TestFleet::new("contain-nnp") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    let Some(probe) = setuid_probe(&f, "no_new_privs_keeps_setuid_binaries_from_giving_root_back") else {
        return f.finish();
    };
    let script =
        format!("{probe} | grep 'probe euid='; echo nnp=$(grep NoNewPrivs /proc/self/status | tr -dc 0-9); echo done");
    let env = ["--env", "FLEETCTL_TEST_EUID_PROBE=1"];
    f.run(&[&["spawn", "n1", "ws-001", "--user", NOBODY][..], &env, &["--", "sh", "-c", &script]].concat()).code(0);
    f.run(
        &[&["spawn", "n2", "ws-001", "--user", NOBODY, "--allow-new-privs"][..], &env, &["--", "sh", "-c", &script]]
            .concat(),
    )
    .code(0);
    f.wait_log("n1", "done", T);
    f.wait_log("n2", "done", T);
    let (n1, n2) = (f.log("n1"), f.log("n2"));
    assert!(n1.contains(&format!("probe euid={NOBODY}")) && n1.contains("nnp=1"), "by default:\n{n1}");
    assert!(n2.contains("probe euid=0") && n2.contains("nnp=0"), "with --allow-new-privs:\n{n2}");
    f.finish();
}

#[test]
fn the_agent_sees_only_what_it_is_given() {
    let Some(f) = TestFleet::new("contain-env") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    std::fs::create_dir_all(f.tmp.path().join("ws/ws-001/src/lib")).expect("subdir");
    std::fs::set_permissions(f.tmp.path().join("ws/ws-001/src/lib"), std::fs::Permissions::from_mode(0o777))
        .expect("the agent's to write");
    let file = f.tmp.path().join("agent.env");
    std::fs::write(&file, "# settings\nFROM_FILE=file value\n\nOVERRIDDEN=file\n").expect("env file");
    let script = "id -u; id -g; pwd; env | sort; echo env-done";
    let run = Run::from(
        f.cmd(&["spawn", "e1", "ws-001", "--user", &format!("{NOBODY}:{NOBODY}"), "--cwd", "src/lib"])
            .args(["--env-file", file.to_str().expect("utf8"), "--env", "OVERRIDDEN=flag", "--pass-env", "PASSED"])
            .args(["--", "sh", "-c", script])
            .env("CALLER_SECRET", "hunter2")
            .env("PASSED", "by name")
            .output()
            .expect("spawn"),
    );
    run.code(0);
    f.wait_log("e1", "env-done", T);
    let log = f.log("e1");
    // The agent's own lines, past the run's marker of fleetctl's.
    let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("fleetctl: ")).collect();
    assert_eq!(&lines[..2], [NOBODY, NOBODY], "{log}");
    let cwd = std::fs::canonicalize(f.tmp.path().join("ws/ws-001/src/lib")).expect("canonical");
    assert_eq!(lines[2], cwd.to_str().expect("utf8"), "--cwd is inside the workspace");
    for absent in ["CALLER_SECRET", "FLEET_STATE_DIR", "FLEET_CONFIG", "FLEET_CGROUP_PARENT", "FLEET_LOCK_DIR"] {
        assert!(!log.lines().any(|l| l.starts_with(&format!("{absent}="))), "{absent} leaked:\n{log}");
    }
    for present in ["FROM_FILE=file value", "OVERRIDDEN=flag", "PASSED=by name", "FLEET_AGENT_ID=e1"] {
        assert!(lines.contains(&present), "{present} missing:\n{log}");
    }
    assert!(log.lines().any(|l| l.starts_with("PATH=")), "{log}");
    assert!(!lines.contains(&"USER=root") && !lines.contains(&"HOME=/root"), "the user's own variables:\n{log}");
    let record = record(&f, "e1");
    assert_eq!(record["user"], "65534:65534");
    assert_eq!(record["env_added"], serde_json::json!(["FROM_FILE", "OVERRIDDEN", "PASSED"]));
    assert!(!record.to_string().contains("by name"), "records keep names, never values: {record}");
    f.finish();
}

#[test]
fn under_sudo_the_agent_runs_as_the_caller_and_root_must_be_asked_for() {
    let Some(f) = TestFleet::new("contain-sudo") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    // A config with no user: who the agent runs as comes from sudo, or nowhere.
    let config = f.tmp.path().join("no-user.toml");
    std::fs::write(&config, "").expect("config");
    let spawn = |id: &str, sudo: Option<&str>| {
        let mut cmd = f.cmd(&["spawn", id, "ws-001", "--", "sh", "-c", "echo uid=$(id -u) gid=$(id -g)"]);
        cmd.env("FLEET_CONFIG", &config).env_remove("SUDO_UID").env_remove("SUDO_GID");
        if let Some(id) = sudo {
            cmd.env("SUDO_UID", id).env("SUDO_GID", id).env("SUDO_USER", "someone");
        }
        Run::from(cmd.output().expect("spawn"))
    };
    spawn("s1", Some(NOBODY)).code(0);
    f.wait_log("s1", "uid=", T);
    assert!(f.log("s1").contains(&format!("uid={NOBODY} gid={NOBODY}")), "{}", f.log("s1"));
    spawn("s2", None).code(2).one_error_line("--user root");
    assert!(!f.state.join("agents/s2").exists() && f.log("s2").is_empty(), "a refused spawn leaves nothing");
    f.finish();
}

#[test]
fn per_agent_uids_keep_agents_out_of_each_others_work() {
    let Some(f) = TestFleet::new("contain-auto") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    f.set_config("[agent]\nuser = \"root\"\nuid_range = \"200000-200099\"\nstart_reserve = \"1M\"\n");
    std::fs::create_dir_all(f.tmp.path().join("ws/ws-002")).expect("second slot");
    std::fs::write(f.tmp.path().join("ws/ws-001/left-by-root"), "x").expect("a file in the slot");
    let mine =
        "echo mine > $FLEET_WORKSPACE/secret && echo mine > $FLEET_SCRATCH/secret && echo holder-ready; sleep 600";
    f.run(&["spawn", "a1", "ws-001", "--user", "auto", "--", "sh", "-c", mine]).code(0);
    f.wait_log("a1", "holder-ready", T);
    let a1 = f.agent("a1");
    let a1_pid = a1["pid"].as_i64().expect("pid");
    let a1_scratch = f.own_scratch().join("a1");
    let ws1 = f.tmp.path().join("ws/ws-001");
    let mut script = String::new();
    script += &attempt("read workspace", &format!("cat {}/secret", ws1.display()));
    script += &attempt("list workspace", &format!("ls {}", ws1.display()));
    script += &attempt("read scratch", &format!("cat {}/secret", a1_scratch.display()));
    script += &attempt("read log", &format!("cat {}", f.tmp.path().join("log/agents/a1.log").display()));
    script += &attempt("read journal", &format!("cat {}", f.tmp.path().join("log/events.jsonl").display()));
    script += &attempt("signal agent", &format!("kill -TERM {a1_pid}"));
    script += "echo attempts-done";
    f.run(&["spawn", "a2", "auto", "--user", "auto", "--", "sh", "-c", &script]).code(0);
    f.wait_log("a2", "attempts-done", T);
    let log = f.log("a2");
    assert!(!log.contains("ALLOWED"), "one agent reached another's:\n{log}");
    assert_eq!(denials(&log), 6, "{log}");
    assert!(alive(a1_pid), "a1 survived a2's signal");

    let user = |id: &str| record(&f, id)["user"].as_str().unwrap_or_default().to_string();
    let (u1, u2) = (user("a1"), user("a2"));
    assert!(u1.starts_with("2000") && u2.starts_with("2000") && u1 != u2, "{u1} {u2}");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(f.tmp.path().join("ws/ws-001/left-by-root")).expect("meta").uid();
    assert_eq!(format!("{owner}:{owner}"), u1, "the slot is the agent's for its run");
    // A slot an agent with a uid of its own is in cannot be shared.
    f.run(&["spawn", "a3", "ws-001", "--user", "auto", "--", "true"]).code(75).one_error_line("ws-001");
    f.finish();
}

#[test]
fn bad_users_variables_and_paths_are_one_line_and_leave_nothing() {
    let Some(f) = TestFleet::new("contain-bad") else { return };
    open_to_agents(&f);
    let bad_file = f.tmp.path().join("bad.env");
    std::fs::write(&bad_file, "GOOD=1\nno equals sign here\n").expect("env file");
    let bad_file = bad_file.to_str().expect("utf8").to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--user", "fleetctl-no-such-user"], "no user named 'fleetctl-no-such-user'".into()),
        (vec!["--user", "65534:fleetctl-no-such-group"], "no group named".into()),
        (vec!["--user", ":65534"], "USER[:GROUP]".into()),
        (vec!["--user", "auto"], "agent.uid_range".into()),
        (vec!["--env-file", &bad_file], format!("{bad_file}:2")),
        (vec!["--env", "FLEET_CGROUP=/"], "fleetctl's to set".into()),
        (vec!["--env", "NO_VALUE"], "KEY=VALUE".into()),
        (vec!["--pass-env", "FLEETCTL_TEST_UNSET"], "FLEETCTL_TEST_UNSET is not set".into()),
        (vec!["--cwd", "../.."], "outside the workspace".into()),
        (vec!["--cwd", "missing"], "no directory".into()),
    ];
    for (flags, message) in cases {
        let mut args = vec!["spawn", "b1", "ws-001"];
        args.extend(flags.iter().copied());
        args.extend(["--", "true"]);
        let run = f.run(&args);
        run.code(2).one_error_line(&message);
        assert_eq!(run.stderr.lines().count(), 1, "{flags:?}: {}", run.stderr);
        let leftovers: Vec<_> = std::fs::read_dir(f.state.join("agents")).into_iter().flatten().flatten().collect();
        assert!(leftovers.is_empty(), "{flags:?} left {leftovers:?}");
        assert!(!f.cgroup("b1").exists(), "{flags:?} left its cgroup");
    }
    f.finish();
}

#[test]
fn a_restarted_agent_keeps_its_user_and_environment() {
    let Some(f) = TestFleet::new("contain-restart") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    let script = "echo run uid=$(id -u) added=$ADDED secret=${CALLER_SECRET:-none}; exit 1";
    let mut cmd = f.cmd(&["spawn", "r1", "ws-001", "--user", NOBODY, "--env", "ADDED=yes", "--restart", "on-failure"]);
    cmd.args(["--restart-backoff", "100ms", "--crash-loop-after", "2", "--", "sh", "-c", script]);
    Run::from(cmd.env("CALLER_SECRET", "hunter2").output().expect("spawn")).code(0);
    f.wait_state("r1", &["crash-loop"], T);
    let runs: Vec<String> = f.log("r1").lines().filter(|l| l.starts_with("run ")).map(str::to_string).collect();
    assert!(runs.len() >= 2, "restarted: {runs:?}");
    assert!(runs.iter().all(|l| l == &format!("run uid={NOBODY} added=yes secret=none")), "{runs:?}");
    f.finish();
}

#[test]
fn fleetctl_restart_keeps_who_and_where_and_refuses_to_drop_given_values() {
    let Some(f) = TestFleet::new("contain-cmd-restart") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    let sub = f.tmp.path().join("ws/ws-001/sub");
    std::fs::create_dir_all(&sub).expect("subdir");
    // Where it starts must be its to write (spawn checks).
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let script = "echo who=$(id -u) where=$(pwd); sleep 600";
    f.run(&["spawn", "w1", "ws-001", "--user", NOBODY, "--cwd", "sub", "--", "sh", "-c", script]).code(0);
    f.wait_log("w1", "who=", T);
    let first = record(&f, "w1")["pid"].clone();
    f.run(&["restart", "w1"]).code(0);
    f.wait_state("w1", &["running"], T);
    wait_for(|| record(&f, "w1")["pid"] != first && f.log("w1").matches("who=").count() == 2, "the second run's line");
    let sub = std::fs::canonicalize(f.tmp.path().join("ws/ws-001/sub")).expect("canonical");
    let line = format!("who={NOBODY} where={}", sub.display());
    assert_eq!(
        f.log("w1").matches(&line).count(),
        2,
        "both runs as the same user, in the same place:\n{}",
        f.log("w1")
    );

    // An agent given values fleetctl never writes down cannot be restarted as it was.
    f.run(&["spawn", "e1", "ws-001", "--user", NOBODY, "--env", "TOKEN=secret", "--", "sleep", "600"]).code(0);
    f.run(&["restart", "e1"]).code(2).one_error_line("keeps only the names of the variables it was given (TOKEN)");
    assert_eq!(f.agent("e1")["state"], "running", "a refused restart leaves the agent as it was");
    f.finish();
}

/// Waits (up to [`T`]) until `done` holds.
fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + T;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
