//! A full state or log disk, the moment a fleet is likeliest to need a kill: spawn fails
//! cleanly, kill and relief still end their agents, running agents are spared, and every end
//! is recorded once when there is room.

use crate::util::{TestFleet, alive};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[test]
fn a_full_state_or_log_dir_fails_spawn_cleanly_and_spares_running_agents() {
    let Some(f) = TestFleet::new("fulldisk") else { return };
    let mounts = small_state_and_log_disks(&f);
    f.run(&["spawn", "alive", "ws-001", "--", "sh", "-c", "while :; do echo tick; sleep 0.05; done"]).code(0);
    f.wait_log("alive", "tick", T);
    for (dir, disk) in ["state", "log"].into_iter().zip(&mounts) {
        let filler = disk.fill();
        let run = f.run(&["spawn", "new", "ws-001", "--", "sleep", "600"]);
        run.code(1).one_error_line(&format!("the {dir} dir"));
        assert!(!f.cgroup("new").exists(), "a refused spawn left its cgroup");
        assert!(!f.tmp.path().join("state/agents/new").exists(), "a refused spawn left its record");
        assert!(!f.own_scratch().join("new").exists(), "a refused spawn left its scratch dir");
        // The running agent keeps running, and its supervisor keeps draining its output
        // (a full log must not block the agent on a full pipe).
        let main = f.agent("alive")["pid"].as_i64().expect("pid");
        let ticks = |f: &TestFleet| f.log("alive").matches("tick").count();
        let (before, cpu_before) = (ticks(&f), agent_output(&f));
        if dir == "state" {
            crate::util::wait_until(T, || "its output stopped reaching the log".into(), || ticks(&f) > before);
        } else {
            // Its log cannot grow; the agent still must not block on a full pipe: it keeps
            // printing (its ticks keep coming, each a new `sleep`).
            let progress = || agent_output(&f) > cpu_before;
            crate::util::wait_until(T, || "the agent stopped making progress".into(), progress);
        }
        assert!(alive(main), "{dir} full: the running agent was harmed");
        assert_eq!(f.agent("alive")["state"], "running");
        std::fs::remove_file(&filler).expect("free the space");
    }
    f.run(&["spawn", "new", "ws-001", "--", "sleep", "600"]).code(0);
    f.run(&["kill", "alive", "new"]).code(0);
    // Everything has ended; unmount before `finish` removes the temp dir (a mount point
    // cannot be removed), keeping the state dir's lock files for its checks.
    let held = fleet_core::lock::HeldLocks::read(std::path::Path::new("/proc"));
    assert!(!held.contains(&f.tmp.path().join("state/agents/alive/lock")), "a supervisor still holds its lock");
    drop(mounts);
    f.finish();
}

/// A full disk is when a fleet is likeliest to need a kill. With the state and log dirs both
/// full, `kill` and relief still end their agents (saying what they could not record), and
/// nothing runs on.
#[test]
fn a_full_state_and_log_disk_does_not_stop_kill_or_relief() {
    let Some(f) = TestFleet::new("fullkill") else { return };
    f.set_budget(128 << 20);
    let mounts = small_state_and_log_disks(&f);
    f.run(&["spawn", "k1", "ws-001", "--", "sleep", "600"]).code(0);
    f.run(&["spawn", "r1", "ws-001", "--", "sh", "-c", &crate::util::hog_script(32, "sleep 600")]).code(0);
    f.wait_log("r1", "ready", Duration::from_secs(90));
    let pids: Vec<i64> = ["k1", "r1"].iter().map(|id| f.agent(id)["pid"].as_i64().expect("pid")).collect();
    let fillers: Vec<_> = mounts.iter().map(crate::util::Tmpfs::fill).collect();

    let kill = f.run(&["kill", "k1"]);
    // Two warnings on a kill that succeeds (not an error line): what it could not record,
    // and that the supervisor records the end once there is room.
    kill.code(0);
    assert!(kill.stderr.lines().any(|l| l.contains("killing it anyway")), "{kill:?}");
    assert!(kill.stdout.contains("k1: stopped on SIGTERM"), "{kill:?}");
    assert!(!alive(pids[0]) && !f.cgroup("k1").exists(), "kill left k1 running on a full disk");

    // r1 holds a quarter of the budget; relief to 5 % must end it.
    let relief = f.run(&["relief", "5", "--grace", "1s"]);
    assert!(matches!(relief.code, 0 | 3), "{relief:?}");
    assert!(relief.stdout.contains("killed r1"), "{relief:?}");
    assert!(!alive(pids[1]) && !f.cgroup("r1").exists(), "relief left r1 running on a full disk");

    for filler in fillers {
        std::fs::remove_file(filler).expect("free the space");
    }
    // Their supervisors record the ends once there is room; each run ends once.
    f.run(&["kill", "k1", "r1"]).code(0);
    for id in ["k1", "r1"] {
        let exits = f.events(id).into_iter().filter(|e| e["event"] == "exit").count();
        assert_eq!(exits, 1, "{id}: {:?}", f.events(id));
    }
    drop(mounts);
    f.finish();
}

/// An agent that ends on its own while the state disk is full: its supervisor journals the
/// end and waits for room to save the record, so no reader takes it for dead meanwhile and
/// no command records the end a second time.
#[test]
fn an_end_on_a_full_state_disk_is_recorded_once_when_there_is_room() {
    let Some(f) = TestFleet::new("fullend") else { return };
    let state = f.tmp.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    let disk = crate::util::Tmpfs::mount(&state, "size=2m");
    let go = f.tmp.path().join("go");
    let script = format!("echo up; while [ ! -e {} ]; do sleep 0.05; done; exit 3", go.display());
    f.run(&["spawn", "e1", "ws-001", "--", "sh", "-c", &script]).code(0);
    f.wait_log("e1", "up", Duration::from_secs(30));
    let pid = f.agent("e1")["pid"].as_i64().expect("pid");
    let filler = disk.fill();
    std::fs::write(&go, "").expect("go");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while alive(pid) || f.cgroup("e1").exists() {
        assert!(std::time::Instant::now() < deadline, "e1 did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Readers and gc meanwhile: the run is its live supervisor's to record.
    for _ in 0..3 {
        f.run(&["status"]).code(0);
    }
    f.run(&["gc"]);
    std::fs::remove_file(filler).expect("free the space");
    let a = f.wait_state("e1", &["failed", "exited"], Duration::from_secs(30));
    assert_eq!(a["exit_code"], 3, "{a:#}");
    let events: Vec<String> = f.events("e1").iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(events, ["spawn", "exit"], "one end, recorded by its supervisor");
    drop(disk);
    f.finish();
}

/// A 2 MiB tmpfs on the fleet's state dir and one on its log dir, in that order, to fill.
/// Drop them before `finish`: a mount point cannot be removed.
fn small_state_and_log_disks(f: &TestFleet) -> Vec<crate::util::Tmpfs> {
    ["state", "log"]
        .iter()
        .map(|dir| {
            let path = f.tmp.path().join(dir);
            std::fs::create_dir_all(&path).expect("mkdir");
            crate::util::Tmpfs::mount(&path, "size=2m")
        })
        .collect()
}

/// CPU time the agent has used: it grows only while the agent runs, not while it is blocked
/// (cgroup2's cpu.stat has it on hybrid hosts too).
fn agent_output(f: &TestFleet) -> u64 {
    let stat = std::fs::read_to_string(f.cgroup("alive").unified.join("cpu.stat")).unwrap_or_default();
    stat.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}
