//! gc collects only what no live process owns.

use crate::util::{TestFleet, alive};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[test]
fn gc_collects_what_nothing_owns_and_leaves_the_living_alone() {
    let Some(f) = TestFleet::new("gc") else { return };
    // An ended agent, a live one, an orphan whose processes are gone, an orphan still
    // running, a bare empty cgroup, and a lock a killed spawn left without a record.
    f.run(&["spawn", "ended", "ws-001", "--wait", "--", "true"]).code(0);
    f.run(&["spawn", "live", "ws-001", "--", "sleep", "600"]).code(0);
    for id in ["dead-orphan", "live-orphan"] {
        f.run(&["spawn", id, "ws-001", "--", "sleep", "600"]).code(0);
        let a = f.wait_state(id, &["running"], T);
        let sup = a["supervisor_pid"].as_i64().expect("supervisor") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup), nix::sys::signal::Signal::SIGKILL)
            .expect("kill supervisor");
        f.wait_state(id, &["orphaned"], T);
    }
    let dead_pid = f.agent("dead-orphan")["pid"].as_i64().expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(dead_pid as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill agent");
    while alive(dead_pid) {
        std::thread::sleep(Duration::from_millis(20));
    }
    f.run(&["cgroup-create", "bare"]).code(0);
    let stale = f.tmp.path().join("state/agents/stale");
    std::fs::create_dir_all(&stale).expect("mkdir");
    std::fs::write(stale.join("lock"), "").expect("lock");

    // The dry run changes nothing.
    let dry = f.run(&["gc", "--older-than", "0s", "--dry-run"]);
    dry.code(0);
    assert!(dry.stdout.contains("ended: would collect"), "{}", dry.stdout);
    assert!(stale.exists() && f.cgroup("bare").exists());
    // Shown as ended (unobserved) already, and journaled once by the first command to see
    // it, as every reader does; the dry run leaves the record as it was.
    assert_eq!(f.agent("dead-orphan")["state"], "failed");
    let exits = |f: &TestFleet| f.events("dead-orphan").into_iter().filter(|e| e["event"] == "exit").count();
    assert_eq!(exits(&f), 1);
    let record = std::fs::read_to_string(f.tmp.path().join("state/agents/dead-orphan/state.json")).expect("record");
    assert!(record.contains("\"running\""), "the dry run settled the record: {record}");

    let run = f.run(&["gc", "--older-than", "0s", "--logs"]);
    run.code(0);
    let out = &run.stdout;
    assert!(out.contains("live-orphan: orphaned and still running; left alone"), "{out}");
    assert!(out.contains("dead-orphan: recorded that it ended unobserved"), "{out}");
    assert!(!stale.exists(), "the stale lock is gone");
    assert!(!f.cgroup("bare").exists(), "the empty cgroup is gone");
    assert!(!f.cgroup("dead-orphan").exists());
    let status = f.status();
    let ids: Vec<&str> = status["agents"].as_array().expect("agents").iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, ["live", "live-orphan"], "only what lives keeps a record");
    assert!(!f.tmp.path().join("log/agents/ended.log").exists(), "--logs removes collected agents' logs");
    let exit = f.events("dead-orphan").into_iter().find(|e| e["event"] == "exit" && e["supervised"] == false);
    assert!(exit.is_some(), "the unobserved end is in the journal");
    assert_eq!(exits(&f), 1, "and only once");
    // A default run keeps recent records.
    f.run(&["spawn", "recent", "ws-001", "--wait", "--", "true"]).code(0);
    f.run(&["gc"]).code(0);
    assert_eq!(f.agent("recent")["state"], "exited", "younger than 24h: kept");
    f.finish();
}

#[test]
fn gc_after_a_storm_of_sigkills_leaves_nothing_without_a_live_owner() {
    use nix::{sys::signal::Signal, unistd::Pid};
    let Some(f) = TestFleet::new("storm") else { return };
    f.small_start_reserve();
    for i in 1..=16 {
        std::fs::create_dir_all(f.tmp.path().join(format!("ws/ws-{i:03}"))).expect("slot");
    }
    // Twelve agents with leases and scratch dirs; half of them exit soon on their own.
    for i in 0..12 {
        let life = if i % 2 == 0 { "600" } else { "0.3" };
        f.run(&["spawn", &format!("s{i:02}"), "auto", "--ports", "2", "--", "sleep", life]).code(0);
    }
    let sups: Vec<i32> = f.status()["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|a| a["supervisor_pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    // The storm: every supervisor SIGKILLed, while new spawns and kills are SIGKILLed at
    // staggered moments, and two spawns die exactly between their cgroup and their exec.
    std::thread::scope(|s| {
        for (n, pid) in sups.iter().enumerate() {
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(n as u64 * 7));
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
            });
        }
        for i in 0..8 {
            let f = &f;
            s.spawn(move || {
                let id = format!("n{i}");
                let mut cmd = if i % 2 == 0 {
                    f.cmd(&["spawn", &id, "auto", "--ports", "2", "--", "sleep", "600"])
                } else {
                    f.cmd(&["kill", &format!("s{:02}", i), "--grace", "5s"])
                };
                let mut child = cmd
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("fleetctl");
                std::thread::sleep(Duration::from_millis(i as u64 * 4));
                let _ = child.kill();
                let _ = child.wait();
            });
        }
        for id in ["h1", "h2"] {
            let f = &f;
            s.spawn(move || {
                let _ = f
                    .cmd(&["spawn", id, "auto", "--", "sleep", "600"])
                    .env("FLEETCTL_FAILPOINT", "spawn-after-cgroup")
                    .output();
            });
        }
    });
    // Let the storm settle before gc, so that nothing loses its owner between gc and the
    // checks: the supervisors of killed spawns see them go and exit (no record still
    // starting), and the short-lived agents end, unobserved (only `sleep 600`s run on).
    let settled = || {
        let starting = f.status()["agents"].as_array().expect("agents").iter().any(|a| a["state"] == "starting");
        let short_lived_run = f.fleet.agent_names().expect("agents").iter().any(|id| {
            f.cgroup(id).procs().unwrap_or_default().iter().any(|p| {
                let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                !cmdline.is_empty() && cmdline != b"sleep\x00600\0"
            })
        });
        !starting && !short_lived_run
    };
    let deadline = std::time::Instant::now() + T;
    while !settled() {
        assert!(std::time::Instant::now() < deadline, "the storm never settled: {:#}", f.status());
        std::thread::sleep(Duration::from_millis(50));
    }
    let gc = f.run(&["gc", "--older-than", "0s"]);
    gc.code(0);

    // Ownership is a held lock or live processes in the agent's cgroup; everything left must
    // have one.
    let held = fleet_core::lock::HeldLocks::read(std::path::Path::new("/proc"));
    let owned = |id: &str| {
        let cg = f.cgroup(id);
        held.contains(&f.tmp.path().join(format!("state/agents/{id}/lock")))
            || (cg.exists() && !cg.procs().unwrap_or_default().is_empty())
    };
    for id in f.fleet.agent_names().expect("agents") {
        assert!(owned(&id), "cgroup {id} has no live owner\n{}", gc.stdout);
    }
    for dir in [f.tmp.path().join("state/agents"), f.own_scratch()] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            assert!(owned(&id), "{}/{id} has no live owner\n{}", dir.display(), gc.stdout);
        }
    }
    // What is left is truthful: orphans with running processes, or supervised agents.
    for a in f.status()["agents"].as_array().expect("agents") {
        let state = a["state"].as_str().unwrap_or("");
        assert!(matches!(state, "orphaned" | "running"), "{a:#}");
        if state == "orphaned" {
            assert!(a["workspace_slot"].is_null() && a["port_base"].is_null(), "an orphan still shows a lease: {a:#}");
        }
    }
    f.finish();
}

/// `gc --dry-run` lists and counts exactly what `gc` then collects: an orphan that ended
/// unobserved (its cgroup, its record, its scratch dir), an ended agent, and a cgroup that
/// `cgroup-create` made and `kill` emptied, which is not called a spawn that died.
#[test]
fn gc_dry_run_counts_what_gc_then_collects() {
    let Some(f) = TestFleet::new("gccount") else { return };
    f.run(&["spawn", "ended", "ws-001", "--wait", "--", "true"]).code(0);
    f.run(&["spawn", "orphan", "ws-001", "--", "sleep", "600"]).code(0);
    let a = f.wait_state("orphan", &["running"], T);
    let (sup, pid) = (a["supervisor_pid"].as_i64().expect("supervisor"), a["pid"].as_i64().expect("pid"));
    for p in [sup, pid] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
        crate::util::wait_until(T, || format!("{p} still alive"), || !alive(p));
    }
    f.run(&["cgroup-create", "made"]).code(0);
    f.run(&["kill", "made"]);

    let text = f.run(&["gc", "--older-than", "0s", "--dry-run"]);
    let real = f.run(&["gc", "--older-than", "0s"]);
    real.code(0);
    let items =
        |out: &str| out.lines().filter(|l| l.contains(": would collect: ") || l.contains(": collected: ")).count();
    let count = |out: &str| out.lines().last().unwrap_or("").split_whitespace().find_map(|w| w.parse::<usize>().ok());
    let n = items(&text.stdout);
    assert!(n >= 4, "orphan's cgroup and record, ended's record, made's cgroup:\n{}", text.stdout);
    assert_eq!(count(&text.stdout), Some(n), "the dry run's total is its lines:\n{}", text.stdout);
    assert_eq!(items(&real.stdout), n, "dry run:\n{}\nreal run:\n{}", text.stdout, real.stdout);
    assert_eq!(count(&real.stdout), Some(n), "real run:\n{}", real.stdout);
    let lines = |out: &str| -> Vec<String> {
        out.lines().filter(|l| l.contains("collect")).map(|l| l.replace("would collect", "collected")).collect()
    };
    assert_eq!(lines(&text.stdout), lines(&real.stdout), "the same items in the same order");
    // `kill` emptied and removed its cgroup; its stopping turn is what is left.
    let made = real.stdout.lines().find(|l| l.starts_with("made: collected: ")).unwrap_or_default();
    assert!(made.contains("cgroup-create") && !made.contains("died before starting"), "{}", real.stdout);
    assert!(!f.cgroup("made").exists() && !f.cgroup("orphan").exists());
    f.finish();
}
