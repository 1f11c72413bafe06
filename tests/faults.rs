//! What kills fleets: bad state on disk, agents that try to escape, cgroups changed behind
//! fleetctl's back, operators racing each other. Afterwards fleetctl must still be truthful
//! and leave nothing behind.

use crate::util::{TestFleet, alive};
use std::{process::Stdio, time::Duration};

const T: Duration = Duration::from_secs(20);

#[test]
fn corrupt_records_and_journal_lines_are_named_not_fatal() {
    let Some(f) = TestFleet::new("corrupt") else { return };
    f.run(&["spawn", "good", "ws-001", "--wait", "--", "true"]).code(0);
    let bad = f.tmp.path().join("state/agents/torn");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(bad.join("state.json"), "{\"schema\": 1, \"id\": \"torn\", \"sta").expect("write");
    let status = f.status();
    assert_eq!(status["agents"][0]["id"], "good");
    assert!(status["bad_records"][0]["path"].as_str().unwrap_or("").ends_with("torn/state.json"), "{status:#}");
    assert!(f.run(&["status"]).stdout.contains("unreadable record"));
    let journal = f.tmp.path().join("log/events.jsonl");
    let mut text = std::fs::read_to_string(&journal).expect("journal");
    text.push_str("{\"ts\": \"torn\n");
    std::fs::write(&journal, text).expect("write");
    let events = f.run(&["events"]);
    events.code(0).one_error_line("skipped unreadable journal line(s)");
    assert!(events.stdout.contains("good"), "{}", events.stdout);
    std::fs::remove_dir_all(&bad).expect("cleanup");
    f.finish();
}

#[test]
fn escaping_agents_are_fully_gone_after_kill() {
    let Some(f) = TestFleet::new("escape") else { return };
    let cases = [
        // setsid and double-fork: a daemon in a new session, its parent gone.
        ("daemon", "setsid sh -c 'sh -c \"sleep 600\" & echo daemonized; exit 0' & sleep 600"),
        // closes every descriptor, then keeps running.
        ("closed", "exec 0<&- 1>&- 2>&-; sleep 600"),
        // forks 500 children that ignore SIGTERM; the shell that made them exits, leaving
        // them to the supervisor (their subreaper) and to `kill`.
        (
            "forker",
            "(i=0; while [ $i -lt 500 ]; do (trap '' TERM; exec sleep 600) & i=$((i+1)); done) & wait; echo forked; exec sleep 600",
        ),
    ];
    for (id, script) in cases {
        f.run(&["spawn", id, "ws-001", "--pids-max", "1000", "--", "sh", "-c", script]).code(0);
    }
    // Each has escaped before the kill: the daemon said so, the closed one's `sleep` runs
    // (its descriptors were closed before it started), the forker's children are all there.
    f.wait_log("daemon", "daemonized", T);
    let runs_sleep = |id: &str| {
        f.cgroup(id)
            .procs()
            .unwrap_or_default()
            .iter()
            .any(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep"))
    };
    crate::util::wait_until(T, || "closed never started its sleep".into(), || runs_sleep("closed"));
    f.wait_log("forker", "forked", Duration::from_secs(120));
    let forked = || f.cgroup("forker").procs().map(|p| p.len()).unwrap_or(0);
    crate::util::wait_until(T, || format!("the 500 children run: {}", forked()), || forked() > 500);
    for (id, _) in cases {
        let pids = f.cgroup(id).procs().expect("procs");
        assert!(!pids.is_empty(), "{id} has processes");
        f.run(&["kill", id, "--grace", "1s"]).code(0);
        for p in pids {
            assert!(!alive(p as i64), "{id}: pid {p} escaped the kill");
        }
        assert!(!f.cgroup(id).exists(), "{id}'s cgroup is gone");
        assert_eq!(f.agent(id)["state"], "killed", "{id}");
    }
    f.finish();
}

#[test]
fn an_agent_whose_main_process_exits_takes_its_children_with_it() {
    let Some(f) = TestFleet::new("orphans") else { return };
    f.run(&[
        "spawn",
        "parent",
        "ws-001",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do sleep 600 & done; echo spawned; exit 0",
    ])
    .code(0);
    let a = f.wait_state("parent", &["exited"], T);
    assert_eq!(a["exit_code"], 0);
    assert!(!f.cgroup("parent").exists(), "the supervisor killed the orphans and removed the cgroup");
    f.finish();
}

#[test]
fn cgroups_an_agent_made_below_its_own_go_with_it() {
    let Some(f) = TestFleet::new("nest") else { return };
    f.run(&["spawn", "nest", "ws-001", "--", "sleep", "600"]).code(0);
    // What an agent running as root can do: cgroups of its own, in every hierarchy.
    let cgroup = f.cgroup("nest");
    for dir in cgroup.dirs() {
        std::fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir a cgroup below the agent's");
    }
    f.run(&["kill", "nest", "--force"]).code(0);
    for dir in cgroup.dirs() {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    assert_eq!(f.agent("nest")["state"], "killed");
    f.finish();
}

#[test]
fn a_frozen_or_vanished_cgroup_is_handled() {
    let Some(f) = TestFleet::new("behindback") else { return };
    // Frozen behind fleetctl's back, and deaf to SIGTERM: the grace runs out and cgroup.kill,
    // which works on frozen cgroups, ends it. (A frozen process that does not ignore SIGTERM
    // dies of it: the freezer lets fatal signals through.) "running" means the shell has
    // started, not that it has set its trap: freezing before the trap would make SIGTERM
    // fatal, so wait for the line printed after it.
    f.run(&["spawn", "ice", "ws-001", "--", "sh", "-c", "trap '' TERM; echo deaf; sleep 600"]).code(0);
    let pid = f.wait_state("ice", &["running"], T)["pid"].as_i64().expect("pid");
    f.wait_log("ice", "deaf", T);
    std::fs::write(f.cgroup("ice").unified.join("cgroup.freeze"), "1").expect("freeze");
    let out = f.run(&["kill", "ice", "--grace", "1s"]);
    out.code(0);
    assert!(out.stdout.contains("did not stop within the grace period; killed"), "{}", out.stdout);
    assert!(!alive(pid));
    // Killed and removed behind fleetctl's back: the supervisor records it truthfully.
    f.run(&["spawn", "gone", "ws-001", "--", "sleep", "600"]).code(0);
    f.wait_state("gone", &["running"], T);
    f.cgroup("gone").kill().expect("cgroup.kill");
    let a = f.wait_state("gone", &["failed"], T);
    assert_eq!(a["signal"], 9, "{a:#}");
    assert!(!f.cgroup("gone").exists());
    f.finish();
}

#[test]
fn two_operators_killing_one_agent_report_one_kill() {
    let Some(f) = TestFleet::new("doublekill") else { return };
    f.run(&["spawn", "both", "ws-001", "--", "sh", "-c", "trap '' TERM; sleep 600"]).code(0);
    f.wait_state("both", &["running"], T);
    let killers: Vec<_> = (0..2)
        .map(|_| f.cmd(&["kill", "both", "--grace", "1s"]).stdout(Stdio::piped()).spawn().expect("kill"))
        .collect();
    let outs: Vec<String> = killers
        .into_iter()
        .map(|k| String::from_utf8_lossy(&k.wait_with_output().expect("wait").stdout).into_owned())
        .collect();
    let killed =
        outs.iter().filter(|o| o.contains("killed (state killed)") || o.contains("stopped on SIGTERM")).count();
    let ended = outs.iter().filter(|o| o.contains("already ended")).count();
    assert_eq!((killed, ended), (1, 1), "{outs:?}");
    let exits = f.events("both").into_iter().filter(|e| e["event"] == "exit").count();
    assert_eq!(exits, 1, "one exit recorded");
    f.finish();
}

#[test]
fn a_spawn_killed_between_its_cgroup_and_the_exec_is_truthful_and_collected() {
    let Some(f) = TestFleet::new("spawnkill") else { return };
    let run = crate::util::Run::from(
        f.cmd(&["spawn", "half", "ws-001", "--", "sleep", "600"])
            .env("FLEETCTL_FAILPOINT", "spawn-after-cgroup")
            .output()
            .expect("spawn"),
    );
    assert_eq!(run.code, -1, "spawn must have died of SIGKILL: {run:?}");
    // It made the cgroup, the record and the scratch dir, then died: nothing ran.
    assert!(f.cgroup("half").exists() && f.cgroup("half").procs().expect("procs").is_empty());
    // The supervisor it had forked was waiting for its go; it sees spawn's end of their
    // socket close and exits, releasing its copy of the lock.
    let a = f.wait_state("half", &["orphaned"], Duration::from_secs(5));
    assert!(a["pid"].is_null(), "{a:#}");
    assert!(a["cause"].as_str().unwrap_or("").contains("spawn died before the agent started"), "{a:#}");
    // A run that never started has no spawn event, and so no exit either.
    f.run(&["kill", "half"]).code(0);
    assert_eq!(f.agent("half")["state"], "failed");
    f.run(&["gc", "--older-than", "0s"]).code(0);
    assert!(f.events("half").is_empty(), "{:?}", f.events("half"));
    assert!(!f.cgroup("half").exists(), "gc left the cgroup");
    assert!(!f.tmp.path().join("state/agents/half").exists(), "gc left the record or lock");
    assert!(!f.own_scratch().join("half").exists(), "gc left the scratch dir");
    assert!(f.agent("half").is_null());
    // The id is free again.
    f.run(&["spawn", "half", "ws-001", "--", "sleep", "600"]).code(0);
    f.finish();
}

/// `kill` while a `spawn` of the same id is between its lock and the agent's start: the
/// record says starting and names no supervisor yet, and there is no process to signal.
/// kill waits for the start (spawn holds the id's stopping turn), then stops the run like
/// any other.
#[test]
fn kill_during_a_spawn_waits_for_the_start_and_stops_the_run() {
    let Some(f) = TestFleet::new("killstart") else { return };
    let spawn = stopped_at(&f, &["spawn", "mid", "ws-001", "--", "sleep", "600"], "spawn-after-cgroup");
    assert_eq!(f.agent("mid")["state"], "starting");
    let killer =
        f.cmd(&["kill", "mid", "--grace", "2s"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kill");
    // The race: kill is waiting for the stopping turn the stopped spawn holds.
    let turn = f.state.join("agents/mid/kill.lock");
    crate::util::wait_until(
        T,
        || format!("kill never waited for {}", turn.display()),
        || crate::util::waits_for_lock(killer.id(), &turn),
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(spawn.id() as i32), nix::sys::signal::Signal::SIGCONT)
        .expect("SIGCONT");
    let spawned = crate::util::Run::from(spawn.wait_with_output().expect("spawn ends"));
    spawned.code(0);
    let killed = crate::util::Run::from(killer.wait_with_output().expect("kill ends"));
    killed.code(0);
    assert!(killed.stdout.contains("mid: stopped on SIGTERM"), "{killed:?}");
    let a = f.agent("mid");
    assert_eq!((a["state"].as_str(), a["killed_by"].as_str()), (Some("killed"), Some("user")), "{a:#}");
    f.finish();
}

/// `gc` settling an orphan that ended unobserved while a `spawn` of the same id races it:
/// the spawn is refused while gc holds the id (exit 4), and gc never takes a new run for the
/// old one. The old run ends once in the journal.
#[test]
fn gc_settling_an_orphan_never_touches_a_new_run_of_the_id() {
    let Some(f) = TestFleet::new("gcrace") else { return };
    f.run(&["spawn", "o1", "ws-001", "--", "sh", "-c", "while :; do echo tick; sleep 0.05; done"]).code(0);
    f.wait_log("o1", "tick", Duration::from_secs(30));
    let sup = f.agent("o1")["supervisor_pid"].as_i64().expect("supervisor");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
    // With its output's reader gone, the agent dies of SIGPIPE: an orphan that ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while alive(sup) || f.cgroup("o1").populated().unwrap_or(true) {
        assert!(std::time::Instant::now() < deadline, "o1 outlived its supervisor");
        std::thread::sleep(Duration::from_millis(10));
    }
    let gc = stopped_at(&f, &["gc"], "gc-settle");
    let spawn = f.run(&["spawn", "o1", "ws-001", "--", "sleep", "600"]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(gc.id() as i32), nix::sys::signal::Signal::SIGCONT)
        .expect("SIGCONT");
    crate::util::Run::from(gc.wait_with_output().expect("gc ends")).code(0);
    spawn.code(4);
    let exits: Vec<_> = f.events("o1").into_iter().filter(|e| e["event"] == "exit").collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0]["supervised"], false);
    // The id is free again, and the new run is left alone by the next gc.
    f.run(&["spawn", "o1", "ws-001", "--", "sleep", "600"]).code(0);
    f.run(&["gc"]).code(0);
    assert_eq!(f.agent("o1")["state"], "running");
    f.finish();
}

/// Starts fleetctl with `args`, armed to stop itself at `failpoint`, and returns once it has.
fn stopped_at(f: &TestFleet, args: &[&str], failpoint: &str) -> std::process::Child {
    let child = f
        .cmd(args)
        .env("FLEETCTL_FAILPOINT", format!("{failpoint}:stop"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetctl");
    let stopped = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !stopped() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(stopped(), "{args:?} never reached {failpoint}");
    child
}

/// A Ctrl-C that reaches `spawn --wait` the moment its agent runs, before `spawn` has even
/// reported it, stops the agent: it must not kill `spawn` and leave the agent running on,
/// detached from the operator who asked it to stop.
#[test]
fn ctrl_c_as_the_agent_starts_stops_the_agent_under_spawn_wait() {
    let Some(f) = TestFleet::new("ctrlcgo") else { return };
    let spawn = stopped_at(&f, &["spawn", "cc", "ws-001", "--wait", "--", "sleep", "600"], "spawn-after-go");
    let pid = f.wait_state("cc", &["running"], Duration::from_secs(10))["pid"].as_i64().expect("pid");
    use nix::sys::signal::{Signal, kill};
    let spawn_pid = nix::unistd::Pid::from_raw(spawn.id() as i32);
    kill(spawn_pid, Signal::SIGINT).expect("Ctrl-C");
    kill(spawn_pid, Signal::SIGCONT).expect("continue");
    let out = spawn.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "spawn died instead: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!alive(pid), "the agent was left running");
    let a = f.agent("cc");
    assert_eq!(a["state"], "killed");
    assert!(a["cause"].as_str().unwrap_or("").contains("Ctrl-C"), "{a:#}");
    f.finish();
}

/// A `spawn` of an id whose `kill` is still at work (the supervisor has recorded the end and
/// let go of the id; kill has yet to remove the cgroup, whose path the new run would make
/// again) is refused, and succeeds once the kill is done.
#[test]
fn spawn_during_a_kill_of_the_same_id_is_refused_until_it_is_done() {
    let Some(f) = TestFleet::new("spawnkill2") else { return };
    f.run(&["spawn", "re", "ws-001", "--", "sleep", "600"]).code(0);
    let killer = stopped_at(&f, &["kill", "re"], "kill-after-supervisor");
    assert_eq!(f.agent("re")["state"], "killed");
    f.run(&["spawn", "re", "ws-001", "--", "sleep", "600"]).code(4).one_error_line("being stopped");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(killer.id() as i32), nix::sys::signal::Signal::SIGCONT)
        .expect("SIGCONT");
    crate::util::Run::from(killer.wait_with_output().expect("kill ends")).code(0);
    f.run(&["spawn", "re", "ws-001", "--", "sleep", "600"]).code(0);
    assert_eq!(f.wait_state("re", &["running"], Duration::from_secs(30))["state"], "running");
    f.finish();
}

#[test]
fn relief_killed_mid_plan_leaves_no_stale_lock_and_a_second_relief_finishes() {
    let Some(f) = TestFleet::new("reliefkill") else { return };
    f.set_budget(256 << 20);
    for id in ["r1", "r2"] {
        // The trap comes first, so "ready" also means deaf to SIGTERM.
        let script = format!("trap '' TERM; {}", crate::util::hog_script(40, "sleep 600"));
        f.run(&["spawn", id, "ws-001", "--", "sh", "-c", &script]).code(0);
        f.wait_log(id, "ready", Duration::from_secs(90));
    }
    // Both must go to reach 5 %; each ignores SIGTERM, so relief waits out its grace.
    let mut relief =
        f.cmd(&["relief", "5", "--grace", "60s"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("relief");
    let requested = |id: &str| f.tmp.path().join(format!("state/agents/{id}/kill-request.json")).exists();
    let deadline = std::time::Instant::now() + T;
    while !(requested("r1") || requested("r2")) {
        assert!(std::time::Instant::now() < deadline, "relief never asked for a kill");
        std::thread::sleep(Duration::from_millis(10));
    }
    relief.kill().expect("SIGKILL relief");
    relief.wait().expect("reap relief");
    // Its host lock went with it, and status tells the truth: both still run.
    let held = fleet_core::lock::HeldLocks::read(std::path::Path::new("/proc"));
    assert!(!held.contains(&f.tmp.path().join("state/relief.lock")), "relief's lock outlived it");
    for id in ["r1", "r2"] {
        assert_eq!(f.agent(id)["state"], "running", "{id}");
    }
    let again = f.run(&["relief", "5", "--grace", "1s"]);
    again.code(0);
    for id in ["r1", "r2"] {
        let a = f.agent(id);
        assert_eq!((a["state"].as_str(), a["killed_by"].as_str()), (Some("killed"), Some("relief")), "{a:#}");
        let exits = f.events(id).into_iter().filter(|e| e["event"] == "exit").count();
        assert_eq!(exits, 1, "{id}: one exit recorded");
    }
    f.run(&["gc", "--older-than", "0s"]).code(0);
    assert!(f.status()["agents"].as_array().expect("agents").is_empty(), "gc left records");
    f.finish();
}

#[test]
fn operators_racing_kill_relief_and_spawn_report_each_kill_once_and_lose_no_record() {
    let Some(f) = TestFleet::new("race") else { return };
    f.set_budget(512 << 20);
    let ids = ["x1", "x2", "x3", "x4"];
    for id in ids {
        let script = crate::util::hog_script(24, "sleep 600");
        f.run(&["spawn", id, "ws-001", "--", "sh", "-c", &script]).code(0);
        f.wait_log(id, "ready", Duration::from_secs(90));
    }
    // At once: one operator kills all four, another relieves to 1 % (every agent a victim),
    // a third spawns new agents into the chaos and respawns x1.
    let (kill, relief, spawns) = std::thread::scope(|s| {
        let kill = s.spawn(|| f.run(&["kill", "x1", "x2", "x3", "x4", "--grace", "1s"]));
        let relief = s.spawn(|| f.run(&["relief", "1", "--grace", "1s"]));
        let spawns =
            s.spawn(|| ["y1", "y2", "x1"].map(|id| (id, f.run(&["spawn", id, "ws-001", "--", "sleep", "600"]))));
        (kill.join().expect("kill"), relief.join().expect("relief"), spawns.join().expect("spawn"))
    });
    // Each kill a reporter claims is one run's end recorded with that reporter as the killer,
    // and no run's end is claimed twice. (x1 may have two runs: the third operator may respawn
    // it after the first run was killed, and either operator may then kill the second.)
    let claims = |out: &str, id: &str| {
        out.lines()
            .filter(|l| {
                (l.starts_with(&format!("{id}: ")) && !l.contains("already ended"))
                    || l.starts_with(&format!("killed {id} "))
            })
            .count()
    };
    let mut kills = 0;
    for id in ids {
        let exits = f.events(id).into_iter().filter(|e| e["event"] == "exit").collect::<Vec<_>>();
        for (out, by) in [(&kill.stdout, "user"), (&relief.stdout, "relief")] {
            let recorded = exits.iter().filter(|e| e["killed_by"] == by).count();
            assert_eq!(
                claims(out, id),
                recorded,
                "{id}: {by} claims vs recorded ends\n{kill:?}\n{relief:?}\n{exits:?}"
            );
            kills += recorded;
        }
    }
    // Every spawn either started or was refused with the reason (x1 busy while it lived).
    for (id, run) in &spawns {
        assert!(run.code == 0 || (*id == "x1" && run.code == 4), "{id}: {run:?}");
    }
    // Every agent's every run ended at most once, and every agent has its record.
    let status = f.status();
    for id in ["x2", "x3", "x4", "y1", "y2", "x1"] {
        let a = status["agents"].as_array().expect("agents").iter().find(|a| a["id"] == id).cloned();
        assert!(a.is_some(), "{id}'s record was lost");
        let spawned = f.events(id).into_iter().filter(|e| e["event"] == "spawn").count();
        let exits = f.events(id).into_iter().filter(|e| e["event"] == "exit").count();
        assert!(exits <= spawned, "{id}: {exits} exits for {spawned} runs");
    }
    for id in ["x2", "x3", "x4"] {
        let a = f.agent(id);
        assert_eq!(a["state"], "killed", "{a:#}");
        assert_eq!(f.events(id).into_iter().filter(|e| e["event"] == "exit").count(), 1, "{id}");
    }
    assert!(kills >= 3, "x2..x4 were killed, each reported once: {kills}");
    f.finish();
}
