//! Every bad input a tired operator might type: one clear line, a distinct exit code, and
//! nothing left behind.

use crate::util::TestFleet;

#[test]
fn bad_spawns_get_their_code_and_leave_nothing() {
    let Some(f) = TestFleet::new("badinput") else { return };
    let long = "a".repeat(300);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["spawn", "../x", "ws-001", "--", "true"], 2, "invalid id '../x'"),
        (vec!["spawn", "a/b", "ws-001", "--", "true"], 2, "letters, digits"),
        (vec!["spawn", "", "ws-001", "--", "true"], 2, "invalid id ''"),
        (vec!["spawn", &long, "ws-001", "--", "true"], 2, "1-64 characters"),
        (vec!["spawn", "-rf", "ws-001", "--", "true"], 2, "starting with a letter or digit"),
        (vec!["spawn", "ok", "ws-404", "--", "true"], 2, "workspace 'ws-404' not found"),
        (vec!["spawn", "ok", "/nonexistent/ws", "--", "true"], 2, "does not exist"),
        (vec!["spawn", "ok", "ws-001"], 2, "COMMAND"),
        (vec!["spawn", "ok", "ws-001", "--memory-max", "4X", "--", "true"], 2, "invalid size '4X'"),
        (vec!["spawn", "ok", "ws-001", "--memory-max", "10", "--", "true"], 2, "did you mean 10G?"),
        (
            vec!["spawn", "ok", "ws-001", "--memory-max", "1G", "--memory-high", "2G", "--", "true"],
            2,
            "must not exceed",
        ),
        (vec!["spawn", "ok", "ws-001", "--pids-max", "0", "--", "true"], 2, "at least 1"),
        (
            vec!["spawn", "ok", "ws-001", "--soft-timeout", "30m", "--hard-timeout", "15m", "--", "true"],
            2,
            "shorter than the hard timeout",
        ),
        (vec!["spawn", "ok", "ws-001", "--hard-timeout", "soon", "--", "true"], 2, "invalid duration 'soon'"),
        (vec!["spawn", "ok", "ws-001", "--", "/nonexistent/cmd"], 1, "cannot start '/nonexistent/cmd'"),
        (vec!["--cgroup-parent", "../escape", "status"], 2, "invalid cgroup parent"),
        (vec!["kill"], 2, "required arguments were not provided: <IDS>"),
        (vec!["kill", "ghost"], 5, "no such agent: ghost"),
        (vec!["logs", "ghost"], 5, "no such agent: ghost"),
        (vec!["status", "--state", "zombie"], 2, "unknown state 'zombie'"),
        (vec!["status", "ghost"], 5, "no such agent: ghost"),
        (vec!["events", "ghost"], 5, "no such agent: ghost"),
        (vec!["status", "--json", "ghost"], 5, "no such agent: ghost"),
        (vec!["run-in-cgroup", "ghost", "--", "true"], 5, "no cgroup for ghost"),
    ];
    for (args, code, fragment) in &cases {
        let run = f.run(args);
        assert_eq!(run.code, *code, "{args:?}\nstderr: {}", run.stderr);
        assert!(run.stderr.contains(fragment), "{args:?}: stderr lacks '{fragment}':\n{}", run.stderr);
        if *code != 2 || !run.stderr.contains("Usage") {
            let lines = run.stderr.lines().filter(|l| !l.trim().is_empty()).count();
            assert_eq!(lines, 1, "{args:?}: one line, not:\n{}", run.stderr);
        }
    }
    // Nothing half-made: no agent cgroup, no record, no lock file, no log.
    assert!(f.fleet.agent_names().unwrap_or_default().is_empty(), "{:?}", f.fleet.agent_names());
    let leftovers: Vec<_> = std::fs::read_dir(f.tmp.path().join("state/agents"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "state left behind: {leftovers:?}");
    assert!(!f.tmp.path().join("log/agents/ok.log").exists());
    f.finish();
}

#[test]
fn a_bad_config_file_is_named() {
    let Some(f) = TestFleet::new("badconfig") else { return };
    let path = f.tmp.path().join("fleet.toml");
    std::fs::write(&path, "[thresholds]\nspawn = 150\n").expect("write");
    let run = f.run(&["--config", path.to_str().expect("utf8"), "status"]);
    run.code(1).one_error_line("thresholds.spawn = 150");
    std::fs::write(&path, crate::util::as_root("[agent]\nmemory_max = \"2G\"\nmemory_high = \"1G\"\n")).expect("write");
    let run = f.run(&["--config", path.to_str().expect("utf8"), "spawn", "cfg", "ws-001", "--", "sleep", "30"]);
    run.code(0);
    assert!(run.stdout.contains("memory max 2.0 GiB, high 1.0 GiB"), "config defaults apply: {}", run.stdout);
    f.finish();
}

/// An agent's cgroup is `agents/<id>`, beside the kernel's own files of `agents/`: an id that
/// names one (or one a later kernel may add) is refused by every command, and the kernel's
/// file is left alone.
#[test]
fn ids_that_name_cgroup_files_are_refused() {
    let Some(f) = TestFleet::new("cgroupids") else { return };
    f.fleet.ensure().expect("ensure fleet");
    let agents = f.fleet.agents();
    for id in ["cgroup.procs", "memory.max", "cgroup.kill", "pids.max", "tasks", "notify_on_release", "io.weight"] {
        let before = std::fs::symlink_metadata(agents.memory_dir().join(id)).ok().map(|m| m.file_type());
        // Making an agent under such a name is refused ...
        for args in [vec!["spawn", id, "ws-001", "--", "sleep", "30"], vec!["cgroup-create", id]] {
            let run = f.run(&args);
            run.code(2)
                .one_error_line(&format!("invalid id '{id}': the kernel keeps a file of that name in every cgroup"));
            let lines = run.stderr.lines().filter(|l| !l.trim().is_empty()).count();
            assert_eq!(lines, 1, "{args:?}: one line, not:\n{}", run.stderr);
        }
        // ... naming one is not (an older build may have made it), and the kernel's file
        // is no agent.
        let no_agent = format!("no such agent: {id}");
        let no_cgroup = format!("no cgroup for {id} under");
        for (args, says) in [
            (vec!["kill", id], &no_agent),
            (vec!["status", id], &no_agent),
            (vec!["run-in-cgroup", id, "--", "true"], &no_cgroup),
        ] {
            let run = f.run(&args);
            run.code(5).one_error_line(says);
            let lines = run.stderr.lines().filter(|l| !l.trim().is_empty()).count();
            assert_eq!(lines, 1, "{args:?}: one line, not:\n{}", run.stderr);
        }
        let after = std::fs::symlink_metadata(agents.memory_dir().join(id)).ok().map(|m| m.file_type());
        assert_eq!(before, after, "{id}: the kernel's file was touched");
        assert!(!f.tmp.path().join("state/agents").join(id).exists(), "{id}: a refused spawn left state");
    }
    assert!(f.fleet.agent_names().unwrap_or_default().is_empty(), "{:?}", f.fleet.agent_names());
    // Near misses are ordinary ids.
    f.run(&["spawn", "memory-hog.1", "ws-001", "--", "sleep", "30"]).code(0);
    f.finish();
}
