//! Spawn, placement, environment, logs, status, kill, orphans, run-in-cgroup.

use crate::util::{TestFleet, alive};
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

#[test]
fn spawn_places_the_command_in_its_cgroup_before_it_runs() {
    let Some(f) = TestFleet::new("placement") else { return };
    let out = f.run(&[
        "spawn",
        "a1",
        "ws-001",
        "--",
        "sh",
        "-c",
        "cat /proc/self/cgroup; env | grep ^FLEET_ | sort; sleep 30",
    ]);
    out.code(0);
    assert!(out.stdout.starts_with("a1 started: pid "), "{}", out.stdout);
    f.wait_log("a1", "FLEET_WORKSPACE", T);
    let log = f.log("a1");
    // The very first thing the command did was read its own cgroup: it was already inside,
    // in every hierarchy the layout has.
    let cg = f.cgroup("a1");
    let lines: Vec<&str> = log.lines().collect();
    let unified_line = lines.iter().find(|l| l.starts_with("0::")).expect("unified line");
    assert!(unified_line.ends_with("/agents/a1"), "{log}");
    if cg.memory_v1.is_some() {
        let mem = lines.iter().find(|l| l.contains(":memory:")).expect("memory line");
        assert!(mem.ends_with("/agents/a1"), "{log}");
        let pids = lines.iter().find(|l| l.contains(":pids:")).expect("pids line");
        assert!(pids.ends_with("/agents/a1"), "{log}");
    }
    let ws = f.tmp.path().join("ws/ws-001").canonicalize().expect("ws");
    assert!(log.contains("FLEET_AGENT_ID=a1"), "{log}");
    assert!(log.contains(&format!("FLEET_WORKSPACE={}", ws.display())), "{log}");
    assert!(log.contains(&format!("FLEET_CGROUP={}", cg.memory_dir().display())), "{log}");
    assert!(log.contains(&format!("FLEET_MEMORY_MAX={}", 4u64 << 30)), "{log}");
    assert!(log.contains(&format!("FLEET_MEMORY_HIGH={}", 3u64 << 30)), "{log}");
    assert!(log.contains("FLEET_SOFT_DEADLINE=20"), "{log}");
    assert!(log.contains("FLEET_HARD_DEADLINE=20"), "{log}");

    let a = f.wait_state("a1", &["running"], T);
    assert_eq!(a["workspace"], ws.display().to_string());
    assert!(a["memory_current_bytes"].as_u64().is_some(), "{a:#}");
    assert_eq!(a["memory_max_bytes"], 4u64 << 30);
    let status = f.status();
    assert_eq!(status["schema"], 1);
    assert_eq!(status["host"]["agents_by_state"]["running"], 1);
    let table = f.run(&["status"]);
    assert!(table.stdout.contains("a1") && table.stdout.contains("running"), "{}", table.stdout);
    f.finish();
}

/// Where systemd runs, the supervisor is no process of spawn's caller in the cgroup2 tree once
/// spawn has returned: systemd ends a unit (an orchestrator's oneshot, a session at logout) by
/// its cgroup there, and would take a supervisor still in it along. Elsewhere it moves in its
/// housekeeping, shortly after.
#[test]
fn the_supervisor_is_outside_the_callers_cgroup_when_spawn_returns() {
    let Some(f) = TestFleet::new("supervisor-out") else { return };
    let out = f.run(&["spawn", "b1", "ws-001", "--json", "--", "sleep", "600"]);
    out.code(0);
    let started: serde_json::Value = serde_json::from_str(&out.stdout).expect("spawn --json");
    let sup = started["supervisor_pid"].as_i64().expect("supervisor pid");
    let unified = || {
        let cgroups = std::fs::read_to_string(format!("/proc/{sup}/cgroup")).unwrap_or_default();
        cgroups.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string)).unwrap_or_default()
    };
    let inside = |path: String| path.ends_with(&format!("{}/supervisors", f.name));
    if std::path::Path::new("/run/systemd/system").is_dir() {
        // Read before anything else: no housekeeping has run yet.
        assert!(inside(unified()), "the supervisor is still in {}", unified());
    } else {
        crate::util::skip_part(
            "supervisor-out",
            "the at-once part: no systemd here, the move waits for the housekeeping",
        );
        crate::util::wait_until(T, || format!("the supervisor is still in {}", unified()), || inside(unified()));
    }
    f.run(&["kill", "b1", "--force"]).code(0);
    f.finish();
}

#[test]
fn agents_start_with_no_blocked_signals_and_an_ordinary_oom_score() {
    let Some(f) = TestFleet::new("sigmask") else { return };
    // grep, exec'd directly, reports the mask it inherited: it never changes its own (unlike
    // dash, which would hide an inherited mask by resetting it).
    let out = f.run(&["spawn", "m1", "ws-001", "--wait", "--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    out.code(0);
    assert!(out.stdout.contains("SigBlk:\t0000000000000000"), "{}", out.stdout);
    // Standard signals 1-31 must not be ignored (32 and up are the C library's own).
    let ignored = out.stdout.lines().find_map(|l| l.strip_prefix("SigIgn:\t")).expect("SigIgn line");
    let mask = u64::from_str_radix(ignored.trim(), 16).expect("hex mask");
    assert_eq!(mask & 0x7fff_ffff, 0, "agent starts with ignored signals: {ignored}");
    // The supervisor protects itself from the OOM killer; the agent must not inherit that.
    f.run(&["spawn", "m2", "ws-001", "--wait", "--", "cat", "/proc/self/oom_score_adj"]).code(0);
    // (The run's first line in the log is fleetctl's own, saying which run began.)
    assert_eq!(f.log("m2").lines().find(|l| !l.starts_with("fleetctl: ")), Some("0"));
    f.finish();
}

#[test]
fn commands_are_found_and_run_as_a_shell_would() {
    let Some(f) = TestFleet::new("execvp") else { return };
    // A script without `#!`, named relative to the workspace: execvp runs it with /bin/sh.
    let ws = f.tmp.path().join("ws/ws-001");
    std::fs::write(ws.join("job"), "echo pgid $(cut -d' ' -f5 /proc/$$/stat) pid $$\n").expect("script");
    std::fs::set_permissions(ws.join("job"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    f.run(&["spawn", "s1", "ws-001", "--wait", "--", "./job"]).code(0);
    // Its own process group, led by the agent's main process.
    let log = f.log("s1");
    let line = log.lines().find(|l| !l.starts_with("fleetctl: ")).unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words.len() == 4 && words[1] == words[3], "not its own group leader: {line}");
    // Not found on PATH, or found but not executable: exit 1, one line naming the command
    // and the failed step, and nothing left behind.
    std::fs::write(ws.join("data"), "x").expect("file");
    for (command, reason) in
        [("fleetctl-no-such-command", "No such file or directory"), ("./data", "Permission denied")]
    {
        let run = f.run(&["spawn", "s2", "ws-001", "--", command]);
        assert_eq!(run.code, 1, "{command}: {}", run.stderr);
        let expected = format!("cannot start '{command}' in {}: cannot exec: {reason}", ws.display());
        assert!(run.stderr.contains(&expected), "{command}: {}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
        assert!(!f.cgroup("s2").exists(), "{command}: cgroup left behind");
        assert!(!f.tmp.path().join("state/agents/s2").exists(), "{command}: state left behind");
    }
    f.finish();
}

#[test]
fn a_duplicate_spawn_is_refused_even_when_ten_race() {
    let Some(f) = TestFleet::new("race") else { return };
    let racers: Vec<_> = (0..10)
        .map(|_| {
            f.cmd(&["spawn", "dup", "ws-001", "--", "sleep", "30"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn racer")
        })
        .collect();
    let outs: Vec<_> = racers.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    let codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap_or(-1)).collect();
    let errs: Vec<String> = outs.iter().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "exactly one winner: {codes:?} {errs:?}");
    assert_eq!(codes.iter().filter(|c| **c == 4).count(), 9, "nine refused with 4: {codes:?} {errs:?}");
    for o in outs.iter().filter(|o| o.status.code() == Some(4)) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("dup is already running") || err.contains("dup is being started"), "{err}");
        assert!(err.contains("pid"), "names the pid: {err}");
    }
    let a = f.wait_state("dup", &["running"], T);
    let again = f.run(&["spawn", "dup", "ws-001", "--", "true"]);
    again.code(4).one_error_line(&format!("pid {}", a["pid"]));
    assert!(again.stderr.contains("started 20"), "names the start time: {}", again.stderr);
    f.finish();
}

#[test]
fn kill_is_graceful_then_forced_and_leaves_nothing() {
    let Some(f) = TestFleet::new("kill") else { return };
    // Graceful: the agent exits on SIGTERM.
    f.run(&["spawn", "polite", "ws-001", "--", "sleep", "60"]).code(0);
    let pid = f.wait_state("polite", &["running"], T)["pid"].as_i64().expect("pid");
    f.run(&["kill", "polite"]).code(0);
    assert!(!alive(pid));
    let a = f.agent("polite");
    assert_eq!(a["state"], "killed");
    assert_eq!(a["killed_by"], "user");
    assert!(!f.cgroup("polite").exists(), "cgroup removed");
    // Killing it again succeeds with a note.
    let again = f.run(&["kill", "polite"]);
    again.code(0);
    assert!(again.stdout.contains("already ended"), "{}", again.stdout);

    // --force: a tree of processes, all gone at once, cgroup removed.
    f.run(&["spawn", "tree", "ws-001", "--", "sh", "-c", "sleep 100 & sleep 100 & sleep 100 & echo up; wait"]).code(0);
    f.wait_log("tree", "up", T);
    let procs = f.cgroup("tree").procs().expect("procs");
    assert!(procs.len() >= 4, "{procs:?}");
    let out = f.run(&["kill", "tree", "--force"]);
    out.code(0);
    assert!(out.stdout.contains("killed at once"), "{}", out.stdout);
    for p in procs {
        assert!(!alive(p as i64), "pid {p} survived");
    }
    assert!(!f.cgroup("tree").exists());
    let exits: Vec<_> = f.events("tree").into_iter().filter(|e| e["event"] == "exit").collect();
    assert_eq!(exits.len(), 1, "one exit event: {exits:?}");
    assert_eq!(exits[0]["state"], "killed");
    f.run(&["kill", "nobody"]).code(5).one_error_line("no such agent: nobody");
    f.finish();
}

#[test]
fn an_orphaned_agent_is_shown_and_still_killable() {
    let Some(f) = TestFleet::new("orphan") else { return };
    f.run(&["spawn", "orph", "ws-001", "--", "sleep", "60"]).code(0);
    let a = f.wait_state("orph", &["running"], T);
    let (pid, sup) = (a["pid"].as_i64().expect("pid"), a["supervisor_pid"].as_i64().expect("supervisor pid"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill supervisor");
    let a = f.wait_state("orph", &["orphaned"], T);
    assert!(alive(pid), "the agent outlives its supervisor");
    assert_eq!(a["pid"], pid);
    // The id stays busy while its cgroup has processes.
    f.run(&["spawn", "orph", "ws-001", "--", "true"]).code(4).one_error_line("orphaned");
    f.run(&["kill", "orph"]).code(0);
    assert!(!alive(pid));
    assert!(!f.cgroup("orph").exists());
    let a = f.agent("orph");
    assert_eq!(a["state"], "killed");
    assert!(a["cause"].as_str().unwrap_or("").contains("supervisor was gone"), "{a:#}");
    f.finish();
}

#[test]
fn logs_and_run_in_cgroup() {
    let Some(f) = TestFleet::new("logs") else { return };
    f.run(&[
        "spawn",
        "talk",
        "ws-001",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; done; echo err >&2; sleep 60",
    ])
    .code(0);
    f.wait_log("talk", "err", T);
    let all = f.run(&["logs", "talk"]);
    all.code(0);
    assert!(all.stdout.contains("line1\n") && all.stdout.contains("err\n"), "{}", all.stdout);
    let tail = f.run(&["logs", "talk", "-n", "2"]);
    assert_eq!(tail.stdout, "line5\nerr\n");
    f.run(&["logs", "nobody"]).code(5);

    let inside = f.run(&["run-in-cgroup", "talk", "--", "sh", "-c", "cat /proc/self/cgroup; exit 7"]);
    inside.code(7);
    assert!(inside.stdout.lines().any(|l| l.starts_with("0::") && l.ends_with("/agents/talk")), "{}", inside.stdout);
    f.run(&["run-in-cgroup", "nobody", "--", "true"]).code(5).one_error_line("cgroup-create");

    // logs -f follows until the agent ends: it has printed the log so far (so it follows)
    // before the kill.
    let mut follower = f.cmd(&["logs", "talk", "-f"]).stdout(std::process::Stdio::piped()).spawn().expect("follow");
    let out = crate::util::lines_of(follower.stdout.take().expect("stdout"));
    crate::util::wait_line(&out, "err", T);
    f.run(&["kill", "talk"]).code(0);
    crate::util::wait_until(
        T,
        || "logs -f outlived its agent".into(),
        || follower.try_wait().expect("try_wait").is_some(),
    );
    assert!(out.lock().expect("lines").iter().any(|l| l == "line1"));
    f.finish();
}

#[test]
fn spawn_wait_streams_and_exits_with_the_agents_code() {
    let Some(f) = TestFleet::new("wait") else { return };
    let out = f.run(&["spawn", "w1", "ws-001", "--wait", "--", "sh", "-c", "echo working; exit 3"]);
    out.code(3);
    assert!(out.stdout.contains("working"), "{}", out.stdout);
    assert_eq!(f.agent("w1")["state"], "failed");
    f.run(&["spawn", "w2", "ws-001", "--wait", "--", "true"]).code(0);
    assert_eq!(f.agent("w2")["state"], "exited");
    f.finish();
}

#[test]
fn spawn_wait_stops_the_agent_on_ctrl_c() {
    let Some(f) = TestFleet::new("ctrlc") else { return };
    let child = f
        .cmd(&["spawn", "w3", "ws-001", "--wait", "--", "sleep", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn --wait");
    let pid = f.wait_state("w3", &["running"], T)["pid"].as_i64().expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("Ctrl-C");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!alive(pid), "the agent was stopped");
    let a = f.agent("w3");
    assert_eq!(a["state"], "killed");
    assert!(a["cause"].as_str().unwrap_or("").contains("Ctrl-C"), "{a:#}");
    f.finish();
}

#[test]
fn supervisors_are_protected_from_the_oom_killer() {
    let Some(f) = TestFleet::new("oomprotect") else { return };
    // Some sandboxes forbid lowering oom_score_adj even to root; then there is nothing to check.
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").expect("read own");
    if std::fs::write("/proc/self/oom_score_adj", "-1000").is_err() {
        crate::util::skip("oomprotect", "this host forbids lowering oom_score_adj, even to root");
        f.finish();
        return;
    }
    std::fs::write("/proc/self/oom_score_adj", own.trim()).expect("restore own score");
    f.run(&["spawn", "p1", "ws-001", "--", "sleep", "60"]).code(0);
    let a = f.wait_state("p1", &["running"], T);
    let sup = a["supervisor_pid"].as_i64().expect("supervisor pid");
    // It protects itself once `spawn` has returned (in its housekeeping, 50 ms in).
    let score = || std::fs::read_to_string(format!("/proc/{sup}/oom_score_adj")).expect("supervisor score");
    let deadline = std::time::Instant::now() + T;
    while score().trim() != "-1000" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(score().trim(), "-1000");
    let agent = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", a["pid"])).expect("agent score");
    assert_eq!(agent.trim(), "0", "the agent must stay killable");
    // A restart comes from a protected supervisor: the new run must not inherit that.
    let script = "cat /proc/self/oom_score_adj; sleep 0.3; exit 1";
    f.run(&["spawn", "p2", "ws-001", "--restart", "on-failure", "--", "sh", "-c", script]).code(0);
    let scores =
        || -> Vec<String> { f.log("p2").lines().filter(|l| !l.starts_with("fleetctl:")).map(String::from).collect() };
    let deadline = std::time::Instant::now() + T;
    while scores().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let scores = scores();
    assert!(scores.len() >= 2 && scores.iter().all(|s| s == "0"), "every run starts killable: {scores:?}");
    f.finish();
}

#[test]
fn cgroup_create_is_idempotent_and_applies_limits() {
    let Some(f) = TestFleet::new("cgcreate") else { return };
    let out = f.run(&["cgroup-create", "box", "--memory-max", "256M", "--memory-high", "200M", "--pids-max", "64"]);
    out.code(0);
    assert!(out.stdout.contains("box: created"), "{}", out.stdout);
    for dir in f.cgroup("box").dirs() {
        assert!(out.stdout.contains(&dir.display().to_string()), "prints {}: {}", dir.display(), out.stdout);
    }
    let l = f.limits("box");
    assert_eq!(l.memory_max, fleet_core::size::Limit::Bytes(256 << 20));
    assert_eq!(l.pids_max, fleet_core::size::Limit::Bytes(64));
    assert_eq!(l.swap_max, fleet_core::size::Limit::Bytes(0));
    let again = f.run(&["cgroup-create", "box", "--memory-max", "512M", "--memory-high", "200M"]);
    again.code(0);
    assert!(again.stdout.contains("exists; limits applied"), "{}", again.stdout);
    assert_eq!(f.limits("box").memory_max, fleet_core::size::Limit::Bytes(512 << 20));
    f.run(&["run-in-cgroup", "box", "--", "true"]).code(0);
    f.run(&["cgroup-create", "../escape"]).code(2).one_error_line("invalid id");
    f.finish();
}

#[test]
fn spawn_replaces_an_empty_leftover_cgroup() {
    use fleet_core::size::Limit;
    use std::os::unix::fs::MetadataExt;
    let Some(f) = TestFleet::new("leftover") else { return };
    // A whole one, as cgroup-create leaves it, with other limits...
    f.run(&["cgroup-create", "whole", "--memory-max", "256M", "--memory-high", "200M", "--pids-max", "7"]).code(0);
    // ...and only the unified directory, as a spawn killed between its mkdirs leaves it.
    std::fs::create_dir(&f.cgroup("part").unified).expect("mkdir");
    let inode = |id: &str| std::fs::metadata(&f.cgroup(id).unified).expect("stat").ino();
    for id in ["whole", "part"] {
        let before = inode(id);
        f.run(&["spawn", id, "ws-001", "--", "sleep", "600"]).code(0);
        // Replaced, not reused: its counters (oom_kill, failcnt, peak) start from zero.
        assert_ne!(inode(id), before, "{id}: the leftover was reused");
        let l = f.limits(id);
        assert_eq!((l.memory_max, l.pids_max), (Limit::Bytes(4 << 30), Limit::Bytes(512)), "{id}");
        assert_eq!(f.cgroup(id).procs().expect("procs").len(), 1, "{id}");
    }
    f.finish();
}

/// `/proc/locks` is rendered a page per read and resumed by position, so while `kill --all`
/// releases locks, a reader can skip one that is still held. With over a page of locks, every
/// kill must still wait for its supervisor and every end be recorded exactly once.
#[test]
fn kill_all_over_a_hundred_agents_records_each_end_once() {
    let Some(f) = TestFleet::new("killall") else { return };
    f.small_start_reserve();
    let n = 120;
    std::thread::scope(|s| {
        for t in 0..8 {
            let f = &f;
            s.spawn(move || {
                for i in (t..n).step_by(8) {
                    f.run(&["spawn", &format!("k{i:03}"), "ws-001", "--", "sleep", "600"]).code(0);
                }
            });
        }
    });
    let run = f.run(&["kill", "--all", "--force"]);
    run.code(0);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    for i in 0..n {
        let id = format!("k{i:03}");
        let exits: Vec<_> = f.events(&id).into_iter().filter(|e| e["event"] == "exit").collect();
        assert_eq!(exits.len(), 1, "{id}: {exits:?}");
        assert!(
            exits[0]["supervised"].is_null(),
            "{id}'s end was recorded by the killer, not its supervisor: {exits:?}"
        );
    }
    f.finish();
}

/// A caller's descriptors left open without close-on-exec (a CI runner's pipe on fd 5) must
/// not be held by the detached supervisor for the agent's life: the caller's read would never
/// see EOF.
#[test]
fn the_supervisor_lets_go_of_every_descriptor_the_caller_left_open() {
    let Some(f) = TestFleet::new("fds") else { return };
    let start = std::time::Instant::now();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"exec 5>&1 6>&2; exec "$0" spawn held ws-001 -- sleep 60"#)
        .arg(crate::util::bin())
        .envs(f.cmd(&[]).get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
        .output()
        .expect("spawn through sh");
    assert!(out.status.success(), "{out:?}");
    assert!(start.elapsed() < Duration::from_secs(30), "the caller's pipes stayed open until the agent ended");
    assert_eq!(f.agent("held")["state"], "running");
    f.finish();
}

/// A sleeping supervisor keeps little of its code and constants resident: it lets go of
/// its read-only segments before it sleeps (`fleet_core::own_pages`), in whatever build
/// runs it. Awake, it maps about 2 MiB of them (the installed build; over 7 MiB the debug
/// build); asleep, what it ran after the advice: tens of KiB, some 600 KiB in a debug build.
#[test]
fn a_sleeping_supervisor_keeps_little_of_its_code_resident() {
    let Some(f) = TestFleet::new("letgo") else { return };
    f.run(&["spawn", "l1", "ws-001", "--", "sleep", "600"]).code(0);
    let a = f.wait_state("l1", &["running"], T);
    let sup = a["supervisor_pid"].as_i64().expect("supervisor pid");
    let file_kib = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{sup}/status")).unwrap_or_default();
        let line = status.lines().find_map(|l| l.strip_prefix("RssFile:")).unwrap_or("0");
        line.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
    };
    crate::util::wait_until(
        T,
        || format!("supervisor {sup} still maps {} KiB of files", file_kib()),
        || file_kib() < 1024,
    );
    f.run(&["kill", "l1", "--force"]).code(0);
    f.finish();
}
