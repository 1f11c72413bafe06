//! The fleet under real memory pressure: one agent over the fleet's budget must take only
//! itself with it. Every test here has bystanders and checks who survived.

use crate::util::{Run, TestFleet, alive, hog_script};
use std::time::{Duration, Instant};

/// Generous: not a timed test, and under the VM tier's TCG emulation a hog takes tens of
/// seconds to reach the budget.
const T: Duration = Duration::from_secs(90);

/// What a bystander's supervisor writes in its agent's log when the fleet ran out of
/// memory above the agent and the kernel's victim was elsewhere (cgroup v1 tells every
/// cgroup below the one that ran out).
const SPARED: &str = "the OOM killer's victim was elsewhere";

/// A 512 MiB budget, five idle agents, one protected, one hog with limits far above the
/// budget, and no watcher: the kernel kills the hog, and nothing else may end.
#[test]
fn one_hog_over_the_fleet_budget_takes_only_itself() {
    let Some(f) = TestFleet::new("onehog") else { return };
    f.set_budget(512 << 20);
    let mut bystanders: Vec<String> = (1..=5).map(|n| format!("idle-{n}")).collect();
    for id in &bystanders {
        f.run(&["spawn", id, "ws-001", "--", "sleep", "900"]).code(0);
    }
    f.run(&["spawn", "keeper", "ws-001", "--protect", "--", "sleep", "900"]).code(0);
    bystanders.push("keeper".into());
    let pids: Vec<i64> = bystanders.iter().map(|id| f.agent(id)["pid"].as_i64().expect("a running pid")).collect();
    // The hog's own limits are far above the budget: only the fleet's budget can stop it.
    let hog = hog_script(1024, "echo survived");
    f.run(&["spawn", "hog", "ws-001", "--memory-max", "2G", "--memory-high", "2G", "--", "sh", "-c", &hog]).code(0);

    let a = f.wait_state("hog", &["oom-killed", "exited", "failed"], T);
    assert_eq!(a["state"], "oom-killed", "{a:#}\n{}", f.log("hog"));
    assert!(a["cause"].as_str().unwrap_or("").contains("below its own 2.0 GiB memory limit"), "{a:#}");
    assert!(!f.log("hog").contains("survived"));

    for (id, pid) in bystanders.iter().zip(&pids) {
        if f.fleet.root.memory_v1.is_some() {
            // Each supervisor was told of the fleet's OOM; wait until it has decided.
            wait_decided(&f, id);
        }
        let b = f.agent(id);
        assert_eq!(b["state"], "running", "bystander {id} must survive the hog: {b:#}\nlog:\n{}", f.log(id));
        assert_eq!(b["oom_kills"], 0, "{b:#}");
        assert!(alive(*pid), "bystander {id}'s process {pid} is gone");
        let events: Vec<_> = f.events(id).iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect();
        assert_eq!(events, ["spawn"], "bystander {id} has only its spawn in the journal");
    }
    f.finish();
}

/// Waits until agent `id`'s supervisor has logged that it spared its agent, or the agent is
/// no longer running (a wrong decision, which the caller's assertions then report).
fn wait_decided(f: &TestFleet, id: &str) {
    let deadline = Instant::now() + T;
    while !f.log(id).contains(SPARED) && f.agent(id)["state"] == "running" {
        assert!(Instant::now() < deadline, "{id}'s supervisor never decided:\n{}", f.log(id));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An agent whose child runs past the agent's own limit dies whole (the kernel takes the
/// child; cgroup v2's `memory.oom.group`, or on v1 the supervisor, takes the rest), and a
/// neighbour of the same shape runs on.
#[test]
fn an_agent_over_its_own_limit_dies_whole_and_its_neighbour_runs_on() {
    let Some(f) = TestFleet::new("ownoom") else { return };
    f.set_budget(512 << 20);
    // The main shell outlives its child unless the whole agent is killed.
    let tree = |child: &str| format!("sh -c '{child}' & wait; echo main-survived; sleep 900");
    f.run(&["spawn", "calm", "ws-001", "--", "sh", "-c", &tree("sleep 900")]).code(0);
    let hog = tree(&hog_script(256, "echo child-survived").replace('\'', "'\\''"));
    f.run(&["spawn", "greedy", "ws-001", "--memory-max", "64M", "--memory-high", "64M", "--", "sh", "-c", &hog])
        .code(0);
    let a = f.wait_state("greedy", &["oom-killed", "exited", "failed"], T);
    assert_eq!(a["state"], "oom-killed", "{a:#}\n{}", f.log("greedy"));
    assert!(a["cause"].as_str().unwrap_or("").contains("at its 64.0 MiB memory limit"), "{a:#}");
    assert!(!f.log("greedy").contains("child-survived"));
    assert!(!f.cgroup("greedy").exists(), "nothing of the agent is left");
    let calm = f.agent("calm");
    assert_eq!(calm["state"], "running", "{calm:#}\n{}", f.log("calm"));
    assert!(f.cgroup("calm").procs().expect("calm's processes").len() >= 2, "calm keeps its whole tree");
    f.finish();
}

/// On pure cgroup v2, `memory.oom.group` on the fleet root would make one OOM kill end every
/// agent (systemd sets it on units with `OOMPolicy=kill`): doctor fails on it.
#[test]
fn doctor_fails_on_an_oom_group_above_the_agents() {
    let Some(f) = TestFleet::new("oomgroup") else { return };
    f.run(&["spawn", "a1", "ws-001", "--", "sleep", "600"]).code(0);
    let line = |run: &crate::util::Run| run.stdout.lines().find(|l| l.contains("oom group")).map(str::to_string);
    if f.fleet.root.memory_v1.is_some() {
        // v1 has no such switch: nothing to check, nothing said.
        assert_eq!(line(&f.run(&["doctor"])), None);
        crate::util::skip_part("oomgroup", "the memory.oom.group part: cgroup v1 memory on this host");
        return f.finish();
    }
    let run = f.run(&["doctor"]);
    let ok = line(&run).unwrap_or_else(|| panic!("no oom group line: {run:?}"));
    assert!(ok.starts_with("ok"), "{ok}");
    std::fs::write(f.fleet.root.unified.join("memory.oom.group"), "1").expect("set oom.group on the fleet root");
    let run = f.run(&["doctor"]);
    let fail = line(&run).unwrap_or_else(|| panic!("no oom group line: {run:?}"));
    assert!(fail.starts_with("FAIL") && fail.contains("one OOM kill would end every agent"), "{fail}");
    assert_ne!(run.code, 0);
    // Any cgroup above a fleet's root counts too, up to the top of the tree: a fleet nested
    // in this one's root (made by the test; the test's own cgroup above it is not the test's
    // to write) finds the flag two levels above its agents.
    let nested = format!("{}/nested", f.name);
    let run = Run::from(f.cmd(&["doctor"]).env("FLEET_CGROUP_PARENT", &nested).output().expect("doctor"));
    let fail = line(&run).unwrap_or_else(|| panic!("no oom group line: {run:?}"));
    let above = format!("memory.oom.group is 1 on {}:", f.fleet.root.unified.display());
    assert!(fail.starts_with("FAIL") && fail.contains(&above), "{fail}");
    assert!(!f.fleet.root.unified.join("nested").exists(), "doctor made a cgroup");
    std::fs::write(f.fleet.root.unified.join("memory.oom.group"), "0").expect("clear it");
    f.finish();
}
