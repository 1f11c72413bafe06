//! Supervisors that die (SIGKILL): what their agents do, what `status` says about them, and
//! the journal line that records the death once.

use crate::util::{TestFleet, alive};
use serde_json::Value;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// SIGKILLs supervisor `sup` (by pid: the tests read it from `status`) and waits until it
/// is gone.
fn kill_supervisor(sup: i64) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL the supervisor");
    let deadline = Instant::now() + T;
    while alive(sup) {
        assert!(Instant::now() < deadline, "supervisor {sup} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn supervisor_deaths(f: &TestFleet, id: &str) -> Vec<Value> {
    f.events(id).into_iter().filter(|e| e["event"] == "supervisor_died").collect()
}

#[test]
fn an_orphan_that_died_is_shown_ended_and_its_supervisors_death_is_journaled_once() {
    let Some(f) = TestFleet::new("supdeath") else { return };
    let deadlines = ["--soft-timeout", "5m", "--hard-timeout", "10m"];
    // One that writes all the time, one that never writes, one whose supervisor lives.
    let talker = ["sh", "-c", "while :; do echo tick; sleep 0.05; done"];
    for (id, command) in [("talker", &talker[..]), ("quiet", &["sleep", "600"][..]), ("bystander", &["sleep", "600"])] {
        let mut args = vec!["spawn", id, "ws-001"];
        args.extend(deadlines);
        args.push("--");
        args.extend(command);
        f.run(&args).code(0);
    }
    f.wait_log("talker", "tick", T);
    let mut pids = std::collections::HashMap::new();
    for id in ["talker", "quiet", "bystander"] {
        let a = f.wait_state(id, &["running"], T);
        pids.insert(id, (a["pid"].as_i64().expect("pid"), a["supervisor_pid"].as_i64().expect("supervisor")));
    }
    for id in ["talker", "quiet"] {
        kill_supervisor(pids[id].1);
    }
    // The talker's next write finds no reader: it dies of SIGPIPE (and its last `sleep`
    // ends soon after).
    let deadline = Instant::now() + T;
    while alive(pids["talker"].0) || f.cgroup("talker").populated().unwrap_or(true) {
        assert!(Instant::now() < deadline, "the talker outlived its output's reader");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(alive(pids["quiet"].0), "the quiet orphan runs on");

    // The first commands to see the deaths race each other; each death is journaled once.
    let runs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| f.run(&["status", "--json"]))).collect();
        handles.into_iter().map(|h| h.join().expect("status")).collect()
    });
    for run in &runs {
        run.code(0);
    }
    for _ in 0..3 {
        f.status();
    }
    for id in ["talker", "quiet"] {
        let deaths = supervisor_deaths(&f, id);
        assert_eq!(deaths.len(), 1, "{id}: {deaths:?}");
        assert_eq!(deaths[0]["supervisor_pid"], pids[id].1, "{deaths:?}");
    }
    assert_eq!(supervisor_deaths(&f, "quiet")[0]["agent_alive"], true);
    assert!(supervisor_deaths(&f, "bystander").is_empty());

    // status is truthful: the talker has ended, unobserved; the quiet one runs with nobody
    // enforcing its deadlines; the bystander's are still ahead.
    let talker = f.agent("talker");
    assert_eq!(talker["state"], "failed", "{talker:#}");
    for field in ["pid", "supervisor_pid", "pids_current", "soft_deadline_in_seconds", "hard_deadline_in_seconds"] {
        assert!(talker[field].is_null(), "talker {field}: {talker:#}");
    }
    assert!(talker["cause"].as_str().unwrap_or("").contains("ended unobserved"), "{talker:#}");
    let quiet = f.agent("quiet");
    assert_eq!(
        (quiet["state"].as_str(), quiet["pid"].as_i64()),
        (Some("orphaned"), Some(pids["quiet"].0)),
        "{quiet:#}"
    );
    for field in ["soft_deadline", "hard_deadline", "soft_deadline_in_seconds", "hard_deadline_in_seconds"] {
        assert!(quiet[field].is_null(), "quiet {field}: nobody enforces it: {quiet:#}");
    }
    assert!(quiet["pids_current"].as_u64().unwrap_or(0) >= 1, "{quiet:#}");
    let bystander = f.agent("bystander");
    assert_eq!(bystander["state"], "running");
    assert!(bystander["hard_deadline_in_seconds"].as_i64().unwrap_or(0) > 0, "{bystander:#}");
    let counts = &f.status()["host"]["agents_by_state"];
    assert_eq!((counts["failed"].as_u64(), counts["orphaned"].as_u64()), (Some(1), Some(1)), "{counts:#}");

    // kill still cleans up: it records the talker's unobserved end and ends the quiet one.
    let run = f.run(&["kill", "talker", "quiet"]);
    run.code(0);
    assert!(run.stdout.contains("talker: already ended (failed"), "{run:?}");
    assert!(!alive(pids["quiet"].0));
    for id in ["talker", "quiet"] {
        assert!(!f.cgroup(id).exists(), "{id}'s cgroup is left");
        let exits: Vec<Value> = f.events(id).into_iter().filter(|e| e["event"] == "exit").collect();
        assert_eq!(exits.len(), 1, "{id}: {exits:?}");
        assert_eq!(exits[0]["supervised"], false, "{id}: {exits:?}");
        assert_eq!(supervisor_deaths(&f, id).len(), 1, "{id}: the death is not journaled again");
    }
    assert_eq!(f.agent("talker")["state"], "failed");
    assert_eq!(f.agent("quiet")["state"], "killed");
    assert!(alive(pids["bystander"].0), "the bystander was harmed");
    f.finish();
}

/// A spawn of an id whose previous run ended unobserved (its supervisor SIGKILLed, its
/// processes gone since) first records that end: every started run ends exactly once in
/// the journal, and the new run is the id's second.
#[test]
fn spawning_over_a_run_that_ended_unobserved_records_its_end_first() {
    let Some(f) = TestFleet::new("respawn") else { return };
    f.run(&["spawn", "talker", "ws-001", "--", "sh", "-c", "while :; do echo tick; sleep 0.05; done"]).code(0);
    f.wait_log("talker", "tick", T);
    let a = f.wait_state("talker", &["running"], T);
    let sup = a["supervisor_pid"].as_i64().expect("supervisor");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL the supervisor");
    // With its output's reader gone, the talker dies of SIGPIPE at its next write.
    let deadline = Instant::now() + T;
    while alive(sup) || f.cgroup("talker").populated().unwrap_or(true) {
        assert!(Instant::now() < deadline, "the talker outlived its supervisor");
        std::thread::sleep(Duration::from_millis(10));
    }
    f.run(&["spawn", "talker", "ws-001", "--", "sleep", "600"]).code(0);
    let events: Vec<String> = f
        .events("talker")
        .iter()
        .filter(|e| e["event"] != "supervisor_died")
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(events, ["spawn", "exit", "spawn"], "the first run ends once, before the second starts");
    let exit = f.events("talker").into_iter().find(|e| e["event"] == "exit").expect("exit");
    assert_eq!((exit["state"].as_str(), exit["supervised"].as_bool()), (Some("failed"), Some(false)), "{exit:#}");
    assert_eq!(f.wait_state("talker", &["running"], T)["state"], "running");
    f.finish();
}

/// A `kill` of an orphan that dies itself between ending the agent and recording the end
/// (SIGKILLed at a failpoint) leaves its request on file; the next reader sees the killer
/// gone too and journals the end, once.
#[test]
fn an_orphans_end_is_journaled_when_its_killer_died_before_recording_it() {
    let Some(f) = TestFleet::new("deadkiller") else { return };
    f.run(&["spawn", "o1", "ws-001", "--", "sleep", "600"]).code(0);
    let a = f.wait_state("o1", &["running"], T);
    let (pid, sup) = (a["pid"].as_i64().expect("pid"), a["supervisor_pid"].as_i64().expect("supervisor"));
    kill_supervisor(sup);
    let run = crate::util::Run::from(
        f.cmd(&["kill", "o1", "--force"]).env("FLEETCTL_FAILPOINT", "kill-after-supervisor").output().expect("kill"),
    );
    assert_eq!(run.code, -1, "kill must have died at its failpoint: {run:?}");
    assert!(!alive(pid), "the kill ended the agent before it died");
    assert_eq!(f.agent("o1")["state"], "failed");
    f.status();
    let exits: Vec<Value> = f.events("o1").into_iter().filter(|e| e["event"] == "exit").collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    f.finish();
}

/// `status` takes a supervisor listed in the fleet's `supervisors/` cgroup for alive without
/// asking `/proc`, but only when it is that supervisor: one SIGKILLed after it was listed is
/// shown dead at once (a dead process is not listed), and a record naming the pid of another
/// agent's live supervisor (a dead supervisor's pid taken by a new one) is judged by `/proc`,
/// where the start time tells them apart.
#[test]
fn a_supervisor_listed_in_its_cgroup_is_alive_only_if_it_is_that_process() {
    let Some(f) = TestFleet::new("suplisted") else { return };
    let ids = ["victim", "reused", "taker"];
    for id in ids {
        f.run(&["spawn", id, "ws-001", "--", "sleep", "600"]).code(0);
    }
    let sup = |id: &str| f.wait_state(id, &["running"], T)["supervisor_pid"].as_i64().expect("supervisor");
    let sups: Vec<i64> = ids.iter().map(|id| sup(id)).collect();
    // Each supervisor moves itself into supervisors/ shortly after its agent starts.
    let listed = || f.fleet.supervisors().procs().unwrap_or_default();
    crate::util::wait_until(
        T,
        || format!("supervisors listed: {:?}, want {sups:?}", listed()),
        || {
            let now = listed();
            sups.iter().all(|s| now.contains(&(*s as i32)))
        },
    );

    kill_supervisor(sups[0]);
    let status = f.status();
    let victim = status["agents"].as_array().expect("agents").iter().find(|a| a["id"] == "victim").expect("victim");
    assert_eq!(victim["state"], "orphaned", "{victim:#}");
    assert!(victim["supervisor_pid"].is_null(), "{victim:#}");

    // The taker's supervisor "took" the pid of reused's dead one: reused's record names it,
    // with its own supervisor's start time.
    kill_supervisor(sups[1]);
    let path = f.state.join("agents/reused/state.json");
    let mut record: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("record")).expect("json");
    record["supervisor"]["pid"] = sups[2].into();
    // A pid's earlier owner started before its new one. Supervisors spawned a few ms apart
    // can share a start time in clock ticks, which no real reuse of a pid can.
    let taker_record = std::fs::read_to_string(f.state.join("agents/taker/state.json")).expect("taker's record");
    let taker_start = serde_json::from_str::<Value>(&taker_record).expect("json")["supervisor"]["start_ticks"]
        .as_u64()
        .expect("taker's supervisor start");
    let own_start = record["supervisor"]["start_ticks"].as_u64().expect("start");
    record["supervisor"]["start_ticks"] = own_start.min(taker_start - 1).into();
    let tmp = path.with_extension("edit");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&record).expect("json")).expect("write");
    std::fs::rename(&tmp, &path).expect("replace the record");
    assert!(listed().contains(&(sups[2] as i32)), "the taker's supervisor is listed");
    let (reused, taker) = (f.agent("reused"), f.agent("taker"));
    assert_eq!((reused["state"].as_str(), taker["state"].as_str()), (Some("orphaned"), Some("running")), "{reused:#}");
    assert_eq!(taker["supervisor_pid"], sups[2]);
    assert!(alive(taker["pid"].as_i64().expect("pid")));

    f.run(&["kill", "--all"]).code(0);
    f.finish();
}
