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
        ("daemon", "setsid sh -c 'sh -c \"sleep 600\" & exit 0' & sleep 600"),
        // closes every descriptor, then keeps running.
        ("closed", "exec 0<&- 1>&- 2>&-; sleep 600"),
        // forks 50 children that ignore SIGTERM and outlive the main process.
        ("forker", "i=0; while [ $i -lt 50 ]; do (trap '' TERM; sleep 600) & i=$((i+1)); done; echo forked; sleep 600"),
    ];
    for (id, script) in cases {
        f.run(&["spawn", id, "ws-001", "--", "sh", "-c", script]).code(0);
    }
    f.wait_log("forker", "forked", T);
    std::thread::sleep(Duration::from_millis(300));
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
fn a_frozen_or_vanished_cgroup_is_handled() {
    let Some(f) = TestFleet::new("behindback") else { return };
    // Frozen behind fleetctl's back, and deaf to SIGTERM: the grace runs out and cgroup.kill,
    // which works on frozen cgroups, ends it. (A frozen process that does not ignore SIGTERM
    // dies of it: the freezer lets fatal signals through.)
    f.run(&["spawn", "ice", "ws-001", "--", "sh", "-c", "trap '' TERM; sleep 600"]).code(0);
    let pid = f.wait_state("ice", &["running"], T)["pid"].as_i64().expect("pid");
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
