//! Two fleets on one host (their own cgroups, state and logs) that share the workspace pool,
//! the scratch root and the lock dir, as fleets left at the default roots do: neither may
//! take what the other holds, nor remove what the other keeps.

use crate::util::{Run, TestFleet};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A command that leaves a file in its scratch dir, says so, and stays.
const KEEPS_SCRATCH: &str = "echo kept > \"$FLEET_SCRATCH/work\" && echo ready && exec sleep 600";

#[test]
fn gc_and_spawn_in_one_fleet_leave_another_fleets_scratch_alone() {
    let Some(a) = TestFleet::new("fleets-gc-a") else { return };
    let Some(b) = TestFleet::sharing_roots_with(&a, "fleets-gc-b") else { return };
    a.run(&["spawn", "w1", "ws-001", "--", "sh", "-c", KEEPS_SCRATCH]).code(0);
    a.wait_log("w1", "ready", T);
    let scratch = a.agent("w1")["scratch"].as_str().expect("scratch dir").to_string();
    let work = std::path::Path::new(&scratch).join("work");
    // B has no record of w1: its gc has nothing of A's to collect.
    let gc = b.run(&["gc", "--older-than", "0s"]);
    gc.code(0);
    assert_eq!(
        std::fs::read_to_string(&work).ok().as_deref(),
        Some("kept\n"),
        "B's gc removed A's scratch\n{}",
        gc.stdout
    );
    // An agent of the same id in B gets a scratch dir of its own: its spawn (which empties
    // its scratch dir) and its end (which removes it) leave A's alone.
    b.run(&["spawn", "w1", "ws-001", "--", "sh", "-c", "echo \"$FLEET_SCRATCH\""]).code(0);
    b.wait_state("w1", &["exited"], T);
    assert_ne!(b.agent("w1")["scratch"].as_str(), Some(scratch.as_str()), "both fleets' w1 got one scratch dir");
    b.run(&["gc", "--older-than", "0s"]).code(0);
    assert_eq!(std::fs::read_to_string(&work).ok().as_deref(), Some("kept\n"), "B's w1 removed A's scratch");
    assert_eq!(a.agent("w1")["state"], "running");
    b.finish();
    a.finish();
}

#[test]
fn auto_in_two_fleets_sharing_a_pool_hands_out_different_slots_and_ports() {
    let Some(a) = TestFleet::new("fleets-auto-a") else { return };
    let Some(b) = TestFleet::sharing_roots_with(&a, "fleets-auto-b") else { return };
    std::fs::create_dir_all(a.roots.join("ws/ws-002")).expect("second slot");
    let spawn = |f: &TestFleet, id: &str| {
        f.run(&["spawn", id, "auto", "--ports", "2", "--port-range", "23300-23303", "--", "sleep", "600"])
    };
    spawn(&a, "a1").code(0);
    spawn(&b, "b1").code(0);
    let (ea, eb) = (a.agent("a1"), b.agent("b1"));
    assert_ne!(ea["workspace_slot"], eb["workspace_slot"], "both fleets got one slot: {ea:#} {eb:#}");
    let (pa, pb) = (ea["port_base"].as_u64().expect("a1's ports"), eb["port_base"].as_u64().expect("b1's ports"));
    assert!(pa + 2 <= pb || pb + 2 <= pa, "overlapping port blocks {pa} and {pb}");
    // The pool is used up across both fleets, and `auto`'s exclusion holds across them too.
    let run = spawn(&b, "b2");
    run.code(75).one_error_line("workspace pool exhausted");
    assert!(run.stderr.contains("b1 (ws-") && run.stderr.contains("1 more held by another fleet"), "{}", run.stderr);
    let a_slot = ea["workspace_slot"].as_str().expect("slot");
    b.run(&["spawn", "b3", a_slot, "--", "sleep", "1"])
        .code(4)
        .one_error_line(&format!("workspace {a_slot} is leased"));
    // Named slots still share, across fleets as within one.
    a.run(&["kill", "a1"]).code(0);
    a.run(&["spawn", "a2", "ws-001", "--", "sleep", "600"]).code(0);
    b.run(&["spawn", "b4", "ws-001", "--", "sleep", "600"]).code(0);
    b.finish();
    a.finish();
}

#[test]
fn doctor_says_when_another_fleet_shares_the_roots() {
    let Some(a) = TestFleet::new("fleets-doctor-a") else { return };
    let Some(b) = TestFleet::sharing_roots_with(&a, "fleets-doctor-b") else { return };
    a.run(&["spawn", "a1", "auto", "--", "sh", "-c", KEEPS_SCRATCH]).code(0);
    a.wait_log("a1", "ready", T);
    let doctor = b.run(&["doctor"]);
    assert!(doctor.code == 0 || doctor.code == 1, "{doctor:?}");
    let line =
        |topic: &str| doctor.stdout.lines().find(|l| l.starts_with("note") && l.contains(topic)).map(str::to_string);
    let a_state = std::fs::canonicalize(a.tmp.path().join("state")).expect("A's state dir");
    let scratch = line("scratch").unwrap_or_else(|| panic!("no note on the scratch root:\n{}", doctor.stdout));
    assert!(
        scratch.contains("shared with the fleet whose state dir is")
            && scratch.contains(&a_state.display().to_string()),
        "{scratch}"
    );
    let pool = line("workspaces").unwrap_or_else(|| panic!("no note on the pool:\n{}", doctor.stdout));
    assert!(pool.contains("shared with another fleet: 1 slot(s)"), "{pool}");
    // A's own doctor sees only its own agent in the pool.
    let own = a.run(&["doctor"]);
    assert!(!own.stdout.lines().any(|l| l.starts_with("note") && l.contains("shared")), "{}", own.stdout);
    b.finish();
    a.finish();
}

#[test]
fn a_lock_dir_that_cannot_be_made_fails_spawn_cleanly() {
    let Some(f) = TestFleet::new("fleets-lockdir") else { return };
    let not_a_dir = f.tmp.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").expect("file");
    let run = Run::from(
        f.cmd(&["spawn", "x1", "auto", "--", "sleep", "600"])
            .env("FLEET_LOCK_DIR", &not_a_dir)
            .output()
            .expect("spawn"),
    );
    run.code(1).one_error_line(&format!("leases live in the host's lock dir {}", not_a_dir.display()));
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(f.agent("x1").is_null() && !f.cgroup("x1").exists(), "a failed spawn left its record or cgroup");
    assert!(!f.own_scratch().join("x1").exists(), "a failed spawn left its scratch dir");
    f.finish();
}

#[test]
fn a_state_dir_reached_through_a_symlink_keeps_one_fleet_key() {
    let Some(mut f) = TestFleet::new("fleets-symlink") else { return };
    let real = f.tmp.path().join("real");
    std::fs::create_dir(&real).expect("the symlink's target");
    std::os::unix::fs::symlink(&real, f.tmp.path().join("link")).expect("symlink");
    // Not there yet: the first spawn makes it, after it has planned its scratch dir.
    f.state = f.tmp.path().join("link/state");
    for id in ["a1", "a2"] {
        f.run(&["spawn", id, "ws-001", "--", "sh", "-c", KEEPS_SCRATCH]).code(0);
        f.wait_log(id, "ready", T);
    }
    let fleet_dir = |id: &str| {
        let scratch = f.agent(id)["scratch"].as_str().map(std::path::PathBuf::from);
        scratch.and_then(|s| s.parent().map(|p| p.to_path_buf())).unwrap_or_else(|| panic!("{id} has no scratch dir"))
    };
    assert_eq!(fleet_dir("a1"), fleet_dir("a2"), "the fleet's key changed between its first and second spawn");
    assert_eq!(fleet_dir("a1"), f.own_scratch(), "the key is not the state dir with its symlink resolved");
    let doctor = f.run(&["doctor"]);
    assert!(doctor.code == 0 || doctor.code == 1, "{doctor:?}");
    assert!(
        !doctor.stdout.lines().any(|l| l.starts_with("note") && l.contains("shared")),
        "the fleet shares its roots with itself:\n{}",
        doctor.stdout
    );
    f.finish();
}
