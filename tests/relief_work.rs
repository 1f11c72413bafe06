//! Relief that loses the least work, on real cgroups: `--order least-work` spares the long
//! run that a largest-first kill would take, and a victim spawned with `--save-signal` gets
//! its signal and time to save before the kill; bystanders survive both.

use crate::util::{TestFleet, hog_script, wait_until};
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

fn state(f: &TestFleet, id: &str) -> String {
    f.agent(id)["state"].as_str().unwrap_or("").to_string()
}

fn hog(f: &TestFleet, id: &str, mib: u64, extra: &[&str], then: &str) {
    let script = hog_script(mib, then);
    let mut args = vec!["spawn", id, "ws-001"];
    args.extend_from_slice(extra);
    args.extend(["--", "sh", "-c", &script]);
    f.run(&args).code(0);
    f.wait_log(id, "ready", T);
}

/// The relief target at which the fleet must free about `mib` MiB.
fn target_freeing(f: &TestFleet, mib: u64) -> String {
    let host = &f.status()["host"];
    let (used, budget) = (host["used_bytes"].as_u64().expect("used"), host["budget_bytes"].as_u64().expect("budget"));
    (used.saturating_sub(mib << 20) * 100 / budget).to_string()
}

#[test]
fn least_work_kills_the_young_agent_that_frees_enough_and_spares_the_long_run() {
    let Some(f) = TestFleet::new("least_work") else { return };
    f.set_budget(384 << 20);
    hog(&f, "veteran", 100, &[], "sleep 600");
    // The veteran has run a while (its uptime, as status shows it) before the others start.
    wait_until(T, || format!("{:#}", f.agent("veteran")), || f.agent("veteran")["uptime_seconds"].as_u64() >= Some(8));
    hog(&f, "young", 70, &[], "sleep 600");
    hog(&f, "small", 10, &[], "sleep 600");
    let target = target_freeing(&f, 50);

    // Largest first would take the veteran; least work takes the young agent, which frees
    // enough for a fraction of the run time lost.
    let largest = f.run(&["relief", &target, "--dry-run", "--order", "largest"]);
    assert!(largest.stdout.contains("veteran") && !largest.stdout.contains("young"), "{}", largest.stdout);
    let run = f.run(&["relief", &target, "--order", "least-work", "--grace", "0s"]);
    run.code(0);
    for (id, want) in [("young", "killed"), ("veteran", "running"), ("small", "running")] {
        assert_eq!(state(&f, id), want, "{id}\n{}", run.stdout);
    }
    f.finish();
}

#[test]
fn a_victim_that_asked_gets_its_save_signal_before_the_kill_and_bystanders_survive() {
    let Some(f) = TestFleet::new("save_signal") else { return };
    f.set_budget(384 << 20);
    let saver = "trap 'echo saved-state' USR1; while :; do sleep 1 & wait $!; done";
    hog(&f, "saver", 80, &["--save-signal", "SIGUSR1"], saver);
    hog(&f, "keeper", 10, &["--save-signal", "SIGUSR1"], saver);
    let target = target_freeing(&f, 40);

    let run = f.run(&["relief", &target, "--grace", "0s", "--save-grace", "3s"]);
    run.code(0);
    let saver_state = f.agent("saver");
    assert_eq!((saver_state["state"].as_str(), saver_state["killed_by"].as_str()), (Some("killed"), Some("relief")));
    assert!(f.log("saver").contains("saved-state"), "no save before the kill:\n{}", f.log("saver"));
    // The bystander was neither killed nor told to save.
    assert_eq!(state(&f, "keeper"), "running");
    assert!(!f.log("keeper").contains("saved-state"), "{}", f.log("keeper"));

    // With no save grace, no signal: a kill at once.
    hog(&f, "saver2", 80, &["--save-signal", "SIGUSR1"], saver);
    let target = target_freeing(&f, 40);
    f.run(&["relief", &target, "--grace", "0s", "--save-grace", "0s"]).code(0);
    assert_eq!(state(&f, "saver2"), "killed");
    assert!(!f.log("saver2").contains("saved-state"), "{}", f.log("saver2"));
    f.finish();
}

/// A saver that, told to save, also waits (up to 20 s) to see `other` save: it sees it only
/// if the two were told together.
fn saver_waiting_for(me: &str, other: &str) -> String {
    format!(
        "trap 'echo saved-state; : > saved-{me}; i=0; while [ ! -e saved-{other} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; \
         [ -e saved-{other} ] && echo saw-{other}-save' USR1; while :; do sleep 1 & wait $!; done"
    )
}

#[test]
fn relief_kills_a_round_of_the_plan_together_and_no_more_than_the_plan_needs() {
    let Some(f) = TestFleet::new("relief_rounds") else { return };
    f.set_budget(384 << 20);
    hog(&f, "v1", 40, &["--save-signal", "SIGUSR1"], &saver_waiting_for("v1", "v2"));
    hog(&f, "v2", 40, &["--save-signal", "SIGUSR1"], &saver_waiting_for("v2", "v1"));
    hog(&f, "v3", 30, &[], "sleep 600");
    hog(&f, "bystander", 10, &[], "sleep 600");
    // About 100 MiB to free: v1 and v2 (40 MiB each) are not enough, with v3 (30) they are.
    let target = target_freeing(&f, 100);
    let dry = f.run(&["relief", &target, "--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&dry.code(0).stdout).expect("relief --json");
    let mut planned: Vec<&str> =
        plan["plan"].as_array().expect("plan").iter().filter_map(|s| s["id"].as_str()).collect();
    // The two of 40 MiB first, in whichever order their few KiB put them.
    planned[..2].sort_unstable();
    assert_eq!(planned, ["v1", "v2", "v3"], "{plan:#}");

    let run = f.run(&["relief", &target, "--grace", "0s", "--save-grace", "10s"]);
    run.code(0);
    // The plan's victims and no more, each reported once, on stdout and in the journal.
    let mut reported: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("killed "))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    reported.sort_unstable();
    assert_eq!(reported, ["v1", "v2", "v3"], "{}", run.stdout);
    assert!(run.stdout.contains("after 3 kill(s)"), "{}", run.stdout);
    for id in ["v1", "v2", "v3"] {
        let kills = f.events(id).iter().filter(|e| e["event"] == "relief_kill").count();
        assert_eq!((id, kills, f.agent(id)["killed_by"].as_str()), (id, 1, Some("relief")));
    }
    assert_eq!(state(&f, "bystander"), "running");
    assert!(f.events("bystander").iter().all(|e| e["event"] != "relief_kill"));
    // The first round (half the plan, v1 and v2) was told to save together: each saw the
    // other save before the kill. One at a time, v1 would have been killed first.
    for (id, other) in [("v1", "v2"), ("v2", "v1")] {
        assert!(f.log(id).contains(&format!("saw-{other}-save")), "{id}:\n{}", f.log(id));
    }
    f.finish();
}
