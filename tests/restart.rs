//! `--restart on-failure`: backoff, the crash-loop breaker, and never after a kill.

use crate::util::TestFleet;
use std::time::Duration;

#[test]
fn failures_back_off_and_trip_the_breaker() {
    let Some(f) = TestFleet::new("crashloop") else { return };
    let args = [
        "spawn",
        "crashy",
        "ws-001",
        "--restart",
        "on-failure",
        "--restart-backoff",
        "100ms",
        "--crash-loop-after",
        "4",
        "--",
        "sh",
        "-c",
        "echo try; exit 3",
    ];
    f.run(&args).code(0);
    let a = f.wait_state("crashy", &["crash-loop"], Duration::from_secs(20));
    assert_eq!(a["restarts"], 3, "{a:#}");
    assert_eq!(a["exit_code"], 3);
    assert!(a["cause"].as_str().unwrap_or("").starts_with("crash loop: 4 failures"), "{a:#}");
    let events = f.events("crashy");
    let delays: Vec<u64> =
        events.iter().filter(|e| e["event"] == "restart_scheduled").filter_map(|e| e["delay_ms"].as_u64()).collect();
    assert_eq!(delays, [100, 200, 400], "exponential backoff");
    assert_eq!(events.iter().filter(|e| e["event"] == "crash_loop").count(), 1);
    assert_eq!(f.log("crashy").matches("try\n").count(), 4);
    // As text, the state is said once: not "crash-loop: crash loop: …".
    let text = f.run(&["events", "crashy"]).code(0).stdout.clone();
    let ends: Vec<&str> = text.lines().filter(|l| l.contains(" crash_loop ") || l.contains(" exit ")).collect();
    assert!(!ends.is_empty() && ends.iter().all(|l| !l.contains("crash loop")), "{text}");
    // Each run's part of the log is marked.
    assert_eq!(f.log("crashy").matches("fleetctl: run ").count(), 4);
    f.finish();
}

#[test]
fn a_killed_agent_is_never_restarted() {
    let Some(f) = TestFleet::new("norestart") else { return };
    f.run(&["spawn", "keep", "ws-001", "--restart", "on-failure", "--restart-backoff", "100ms", "--", "sleep", "60"])
        .code(0);
    let sup = f.wait_state("keep", &["running"], Duration::from_secs(10))["supervisor_pid"].as_i64().expect("sup");
    f.run(&["kill", "keep"]).code(0);
    // Only its supervisor restarts an agent: once it has exited, no restart can come.
    crate::util::wait_until(
        Duration::from_secs(20),
        || "the supervisor outlived the kill".into(),
        || !crate::util::alive(sup),
    );
    let a = f.agent("keep");
    assert_eq!(a["state"], "killed");
    assert_eq!(a["restarts"], 0);
    assert!(f.events("keep").iter().all(|e| e["event"] != "restart"));
    f.finish();
}

#[test]
fn a_kill_during_backoff_stops_the_restarts() {
    let Some(f) = TestFleet::new("backoffkill") else { return };
    f.run(&["spawn", "flaky", "ws-001", "--restart", "on-failure", "--restart-backoff", "5s", "--", "false"]).code(0);
    let a = f.wait_state("flaky", &["starting"], Duration::from_secs(10));
    assert!(a["cause"].as_str().unwrap_or("").contains("code 1"), "{a:#}");
    f.run(&["kill", "flaky"]).code(0);
    let a = f.agent("flaky");
    assert_eq!(a["state"], "killed", "{a:#}");
    assert!(f.events("flaky").iter().all(|e| e["event"] != "restart"));
    f.finish();
}
