//! A record that cannot be read must not make its agent unkillable or invisible: the cgroup
//! is the truth for killing and measuring. Each test tears a running agent's `state.json`
//! and keeps a bystander whose record is fine.

use crate::util::{TestFleet, alive, hog_script, lines_of, wait_line};
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// Cuts agent `id`'s record off mid-field, as a crash in the middle of a non-atomic copy or
/// a bad disk would leave it.
fn tear_record(f: &TestFleet, id: &str) {
    let path = f.tmp.path().join(format!("state/agents/{id}/state.json"));
    let text = std::fs::read(&path).expect("record");
    std::fs::write(&path, &text[..text.len() / 3]).expect("tear record");
}

/// Spawns `id` running `script` under sh and waits for it to print `ready`.
fn spawn_ready(f: &TestFleet, id: &str, script: &str) -> i64 {
    f.run(&["spawn", id, "ws-001", "--", "sh", "-c", script]).code(0);
    f.wait_log(id, "ready", T);
    f.wait_state(id, &["running"], T)["pid"].as_i64().expect("pid")
}

/// The stderr lines that name agent `id`'s unreadable record.
fn record_lines(stderr: &str, id: &str) -> usize {
    stderr.lines().filter(|l| l.contains(&format!("agent {id}: record")) && l.contains("cannot be read")).count()
}

#[test]
fn kill_ends_an_agent_whose_record_is_torn() {
    let Some(f) = TestFleet::new("tornkill") else { return };
    let torn = spawn_ready(&f, "torn", "echo ready; sleep 600");
    let fine = spawn_ready(&f, "fine", "echo ready; sleep 600");
    tear_record(&f, "torn");

    let run = f.run(&["kill", "torn"]);
    run.code(0);
    assert_eq!(record_lines(&run.stderr, "torn"), 1, "the bad record is named once: {run:?}");
    assert!(!alive(torn), "kill left the agent running");
    assert!(!f.cgroup("torn").exists(), "kill left the cgroup");
    // Its supervisor was alive: it saw the kill and recorded the end, from the record it
    // keeps in memory, over the torn file.
    let a = f.agent("torn");
    assert_eq!((a["state"].as_str(), a["killed_by"].as_str()), (Some("killed"), Some("user")), "{a:#}");
    assert!(f.status()["bad_records"].as_array().expect("bad_records").is_empty());
    assert!(alive(fine), "the bystander was harmed");
    assert_eq!(f.agent("fine")["state"], "running");
    f.finish();
}

#[test]
fn kill_all_force_ends_agents_whose_records_are_torn_supervised_or_not() {
    let Some(f) = TestFleet::new("tornall") else { return };
    let supervised = spawn_ready(&f, "torn", "echo ready; sleep 600");
    let orphan = spawn_ready(&f, "torn-orphan", "echo ready; sleep 600");
    let fine = spawn_ready(&f, "fine", "echo ready; sleep 600");
    // An orphan with a torn record: nobody but `kill` will record its end.
    let sup = f.agent("torn-orphan")["supervisor_pid"].as_i64().expect("supervisor") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup), nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    f.wait_state("torn-orphan", &["orphaned"], T);
    tear_record(&f, "torn");
    tear_record(&f, "torn-orphan");

    let run = f.run(&["kill", "--all", "--force"]);
    run.code(0);
    for id in ["torn", "torn-orphan"] {
        assert_eq!(record_lines(&run.stderr, id), 1, "{id}'s bad record is named once: {run:?}");
        assert!(!f.cgroup(id).exists(), "{id}'s cgroup is left");
    }
    for pid in [supervised, orphan, fine] {
        assert!(!alive(pid), "pid {pid} survived kill --all --force");
    }
    // The orphan's end is in the journal, written by kill; its torn record is left as it is
    // (nothing can be known from it) and still named.
    let exits: Vec<Value> = f.events("torn-orphan").into_iter().filter(|e| e["event"] == "exit").collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!((exits[0]["state"].as_str(), exits[0]["supervised"].as_bool()), (Some("killed"), Some(false)));
    let bad = f.status()["bad_records"].clone();
    assert!(bad[0]["path"].as_str().unwrap_or("").ends_with("torn-orphan/state.json"), "{bad:#}");
    assert_eq!(f.agent("torn")["state"], "killed");
    // A second kill finds nothing to do and says so.
    let again = f.run(&["kill", "torn-orphan"]);
    again.code(0);
    assert!(again.stdout.contains("torn-orphan: already ended"), "{again:?}");
    f.finish();
}

#[test]
fn status_memory_and_relief_count_an_agent_whose_record_is_torn() {
    let Some(f) = TestFleet::new("tornmem") else { return };
    f.set_budget(256 << 20);
    let hog = spawn_ready(&f, "torn", &hog_script(64, "sleep 600"));
    let fine = spawn_ready(&f, "fine", "echo ready; sleep 600");
    tear_record(&f, "torn");

    // status shows it, with its cgroup's numbers, and still names the bad record.
    let status = f.status();
    let a = f.agent("torn");
    assert_eq!(a["state"], "running", "its supervisor holds it: {a:#}");
    assert!(a["memory_current_bytes"].as_u64().unwrap_or(0) >= 60 << 20, "{a:#}");
    assert!(a["record_error"].as_str().unwrap_or("").contains("cannot be read"), "{a:#}");
    assert!(status["bad_records"][0]["path"].as_str().unwrap_or("").ends_with("torn/state.json"), "{status:#}");

    // memory counts its cgroup.
    let run = f.run(&["memory", "--json"]);
    run.code(0);
    assert_eq!(record_lines(&run.stderr, "torn"), 1, "{run:?}");
    let mem: Value = serde_json::from_str(&run.stdout).expect("memory --json");
    let ids: Vec<&str> = mem["agents"].as_array().expect("agents").iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, ["torn", "fine"], "{mem:#}");
    assert!(mem["totals"]["current_bytes"].as_u64().unwrap_or(0) >= 60 << 20, "{mem:#}");

    // relief can reach a target that only killing it reaches: half its size below use now.
    let used = status["host"]["used_bytes"].as_u64().expect("used");
    let target = ((used - (32 << 20)) * 100).div_ceil(256 << 20);
    let run = f.run(&["relief", &target.to_string(), "--grace", "1s"]);
    run.code(0);
    assert_eq!(record_lines(&run.stderr, "torn"), 1, "named once however often relief measures: {run:?}");
    assert!(run.stdout.contains("killed torn"), "{run:?}");
    assert!(!alive(hog) && !f.cgroup("torn").exists(), "relief left the hog");
    assert_eq!(f.agent("torn")["killed_by"], "relief");
    assert!(alive(fine), "relief killed the bystander");
    f.finish();
}

/// Agents that a build before the cgroup file rule made under names it now refuses for new
/// agents (`io.worker` starts with a controller's name and a dot) are still listed, measured
/// and killed: one running without a record, as `cgroup-create` and `run-in-cgroup` left it,
/// and one that ended, with its record.
#[test]
fn agents_named_before_the_cgroup_file_rule_are_still_listed_and_killed() {
    let Some(f) = TestFleet::new("oldnames") else { return };
    let fine = spawn_ready(&f, "fine", "echo ready; sleep 600");
    // The old build's cgroup-create and run-in-cgroup: the agent's directory in every
    // hierarchy, and a shell that joins them all before it execs the agent.
    let dirs: Vec<_> = f.fleet.agents().dirs().iter().map(|d| d.join("io.worker")).collect();
    for dir in &dirs {
        std::fs::create_dir(dir).expect("the old agent's cgroup");
    }
    let join = "for d; do echo $$ > \"$d/cgroup.procs\" || exit 1; done; echo ready; exec sleep 600";
    let mut worker = std::process::Command::new("sh")
        .args(["-c", join, "sh"])
        .args(&dirs)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the old agent");
    let lines = lines_of(worker.stdout.take().expect("stdout"));
    wait_line(&lines, "ready", T);
    // The old build's spawn of `io.done`, which has ended: its record, under its name.
    f.run(&["spawn", "done", "ws-001", "--", "true"]).code(0);
    f.wait_state("done", &["exited"], T);
    let record = std::fs::read_to_string(f.state.join("agents/done/state.json")).expect("record");
    let old = f.state.join("agents/io.done");
    std::fs::create_dir(&old).expect("the old agent's state dir");
    std::fs::write(old.join("state.json"), record.replace("\"done\"", "\"io.done\"")).expect("old record");

    let status = f.status();
    assert!(status["bad_records"].as_array().is_some_and(|b| b.is_empty()), "{status:#}");
    let worker_entry = f.agent("io.worker");
    assert!(worker_entry["pids_current"].as_u64().unwrap_or(0) >= 1, "status lacks the running io.worker: {status:#}");
    assert_eq!(f.agent("io.done")["state"], "exited", "status lacks the ended io.done: {status:#}");
    let run = f.run(&["memory", "--json"]);
    run.code(0);
    let mem: Value = serde_json::from_str(&run.stdout).expect("memory --json");
    assert!(mem["agents"].as_array().expect("agents").iter().any(|a| a["id"] == "io.worker"), "{mem:#}");

    f.run(&["run-in-cgroup", "io.worker", "--", "true"]).code(0);

    let run = f.run(&["kill", "io.worker"]);
    run.code(0);
    let ended = worker.wait().expect("the old agent's end");
    assert!(!ended.success(), "the worker outlived kill: {ended:?}");
    assert!(dirs.iter().all(|d| !d.exists()), "kill left the cgroup");
    assert!(alive(fine), "the bystander was harmed");
    f.finish();
}
