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
    assert_eq!(f.agent("dead-orphan")["state"], "orphaned");

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
    // A default run keeps recent records.
    f.run(&["spawn", "recent", "ws-001", "--wait", "--", "true"]).code(0);
    f.run(&["gc"]).code(0);
    assert_eq!(f.agent("recent")["state"], "exited", "younger than 24h: kept");
    f.finish();
}
