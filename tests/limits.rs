//! Real limits doing real work: OOM kills, fork bombs, admission control.

use crate::util::{TestFleet, hog_script};
use std::time::Duration;

/// Generous: these are not timed tests, and under the VM tier's TCG emulation a 200 MiB
/// hog takes tens of seconds to reach its limit.
const T: Duration = Duration::from_secs(90);

#[test]
fn an_agent_past_its_memory_max_is_oom_killed_and_recorded() {
    let Some(f) = TestFleet::new("oom") else { return };
    // A fleet budget too, so even a bug in the agent limit cannot touch the machine.
    f.set_budget(512 << 20);
    let script = hog_script(200, "echo survived");
    // memory.high at max: below it, cgroup v2 throttles the hog (for minutes under TCG)
    // instead of letting it reach the OOM killer, which is what this test is about.
    f.run(&["spawn", "hog", "ws-001", "--memory-max", "64M", "--memory-high", "64M", "--", "sh", "-c", &script])
        .code(0);
    let a = f.wait_state("hog", &["oom-killed", "exited", "failed"], T);
    assert_eq!(a["state"], "oom-killed", "{a:#}\n{}", f.log("hog"));
    assert!(a["oom_kills"].as_u64().unwrap_or(0) >= 1, "{a:#}");
    assert!(a["cause"].as_str().unwrap_or("").contains("at its 64.0 MiB memory limit"), "{a:#}");
    assert!(!f.log("hog").contains("survived"));
    let events: Vec<String> = f.events("hog").iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect();
    assert!(events.contains(&"oom_kill".to_string()), "{events:?}");
    // The text form says the limit as an operator reads it, not in bytes.
    let text = f.run(&["events", "hog"]).code(0).stdout.clone();
    let oom = text.lines().find(|l| l.contains(" oom_kill ")).unwrap_or_default();
    assert!(oom.contains("at its 64.0 MiB memory limit") && !oom.contains("67108864"), "{text}");
    assert!(!f.cgroup("hog").exists(), "cgroup removed after the OOM kill");
    f.finish();
}

/// Under its own limit but over the fleet's budget: the kernel's OOM killer acts for the
/// fleet root, and the record must not blame the agent's own limit.
#[test]
fn an_agent_over_the_fleet_budget_is_oom_killed_and_told_whose_limit() {
    let Some(f) = TestFleet::new("fleetoom") else { return };
    f.set_budget(64 << 20);
    let script = hog_script(200, "echo survived");
    f.run(&["spawn", "big", "ws-001", "--memory-max", "1G", "--memory-high", "1G", "--", "sh", "-c", &script]).code(0);
    let a = f.wait_state("big", &["oom-killed", "exited", "failed"], T);
    assert_eq!(a["state"], "oom-killed", "{a:#}\n{}", f.log("big"));
    let cause = a["cause"].as_str().unwrap_or("");
    assert!(cause.contains("below its own 1.0 GiB memory limit"), "{a:#}");
    assert!(!f.log("big").contains("survived"));
    f.finish();
}

#[test]
fn a_fork_bomb_stops_at_pids_max() {
    let Some(f) = TestFleet::new("forkbomb") else { return };
    f.set_budget(512 << 20);
    // Each round forks two more shells; without pids.max this grows without bound.
    // The agent's main process never forks, so the bomb cannot starve it: the bomb runs
    // beside it in its cgroup through run-in-cgroup, counted against the same pids.max.
    f.run(&["spawn", "bomb", "ws-001", "--pids-max", "32", "--", "sleep", "600"]).code(0);
    let bomber = f
        .cmd(&["run-in-cgroup", "bomb", "--", "sh", "-c", "b() { b & b & wait; }; while :; do b; done"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the bomb");
    let cg = f.cgroup("bomb");
    let pids_events = cg.pids_dir().join("pids.events");
    let deadline = std::time::Instant::now() + T;
    loop {
        let text = std::fs::read_to_string(&pids_events).unwrap_or_default();
        let hits: u64 =
            text.lines().find_map(|l| l.strip_prefix("max ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
        if hits > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the bomb never hit pids.max: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let current = cg.pids_current().expect("pids.current");
    assert!(current <= 32, "pids.current {current} above pids.max");
    // The host is fine: another agent still starts and runs.
    f.run(&["spawn", "calm", "ws-001", "--wait", "--", "echo", "fine"]).code(0);
    f.run(&["kill", "bomb", "--force"]).code(0);
    assert!(!cg.exists());
    let status = bomber.wait_with_output().expect("run-in-cgroup returns once its cgroup is killed");
    assert_ne!(status.status.code(), Some(0));
    f.finish();
}

#[test]
fn spawns_are_refused_over_the_spawn_threshold() {
    let Some(f) = TestFleet::new("admission") else { return };
    f.set_budget(256 << 20);
    f.run(&["spawn", "big", "ws-001", "--", "sh", "-c", &hog_script(100, "sleep 60")]).code(0);
    f.wait_log("big", "ready", T);
    let host = f.status()["host"].clone();
    let refused = f.run(&["spawn", "small", "ws-001", "--spawn-threshold", "30", "--", "true"]);
    assert_eq!(
        refused.code,
        75,
        "fleet was {host:#}\n{refused:?}\nbig's log:\n{}\nevents: {:?}",
        f.log("big"),
        f.events("big")
    );
    refused.one_error_line("at or above the spawn threshold of 30 %");
    assert!(refused.stderr.contains("256.0 MiB"), "names the budget: {}", refused.stderr);
    assert!(!f.cgroup("small").exists(), "a refused spawn makes no cgroup");
    assert!(!f.tmp.path().join("state/agents/small").exists(), "a refused spawn leaves no state");
    f.run(&["kill", "big", "--force"]).code(0);
    f.run(&["spawn", "small", "ws-001", "--spawn-threshold", "30", "--wait", "--", "true"]).code(0);
    f.finish();
}

#[test]
fn limits_reach_the_kernel() {
    let Some(f) = TestFleet::new("limits") else { return };
    let args = [
        "spawn",
        "lim",
        "ws-001",
        "--memory-max",
        "300M",
        "--memory-high",
        "200M",
        "--pids-max",
        "100",
        "--",
        "sleep",
        "60",
    ];
    f.run(&args).code(0);
    let l = f.limits("lim");
    use fleet_core::size::Limit;
    assert_eq!(l.memory_max, Limit::Bytes(300 << 20));
    assert_eq!(l.memory_high, Limit::Bytes(200 << 20));
    assert_eq!(l.swap_max, Limit::Bytes(0));
    assert_eq!(l.pids_max, Limit::Bytes(100));
    let cg = f.cgroup("lim");
    if cg.memory_v1.is_none() {
        let group = std::fs::read_to_string(cg.unified.join("memory.oom.group")).expect("oom.group");
        assert_eq!(group.trim(), "1");
    }
    f.finish();
}

/// fleetctl tells the layout by statfs(2) when the host mounts its cgroups at
/// /sys/fs/cgroup, and that must be what mountinfo says: on this machine (hybrid) and in the
/// VM (pure v2) both.
#[test]
fn the_statfs_probe_finds_what_mountinfo_says() {
    use fleet_core::cgroup::{Layout, Mounts};
    use std::path::Path;
    let detected = Mounts::detect(Path::new("/proc")).expect("mountinfo");
    match Mounts::probe(Path::new("/sys/fs/cgroup")) {
        Some(probed) => assert_eq!(probed, detected),
        None => {
            // Only a host that mounts cgroups elsewhere, or whose cgroup2 root lacks the
            // memory or pids controller, is left to mountinfo.
            let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
            let usual = match detected.layout {
                Layout::Hybrid => detected.unified == Path::new("/sys/fs/cgroup/unified"),
                Layout::Unified => controllers.contains("memory") && controllers.contains("pids"),
            };
            assert!(!usual, "the probe missed a usual layout: {detected:?}");
        }
    }
}
