//! The spawn queue (`spawn --queue`, `fleetctl queue`), the agent cap and reservations, on
//! real cgroups under a small fleet budget.

use crate::util::{Run, TestFleet, Tmpfs, wait_until};
use serde_json::Value;
use std::{
    process::{Child, Stdio},
    sync::{
        Barrier,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// Generous: not a timed test.
pub(crate) const T: Duration = Duration::from_secs(120);

/// `queue --json`'s waiters: (position, id, reason).
pub(crate) fn waiting(f: &TestFleet) -> Vec<(u64, String, String)> {
    let run = f.run(&["queue", "--json"]);
    run.code(0);
    let v: Value = serde_json::from_str(&run.stdout).expect("queue --json");
    assert_eq!(v["schema"], 1, "{v}");
    v["waiting"]
        .as_array()
        .expect("waiting")
        .iter()
        .map(|w| {
            for key in ["since", "waited_seconds", "pid"] {
                assert!(!w[key].is_null(), "{key} missing: {w}");
            }
            (
                w["position"].as_u64().unwrap_or(0),
                w["id"].as_str().unwrap_or("").into(),
                w["reason"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

/// A queued spawn's stderr: the notice that it waits, then one line saying how it ended.
pub(crate) fn waited_then(run: &Run, fragment: &str) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(lines[0].contains(": waiting in line for "), "{run:?}");
    assert!(lines[1].starts_with("fleetctl: ") && lines[1].contains(fragment), "{run:?}");
}

/// A process the test started, killed by its pid if the test fails before it has ended.
pub(crate) struct Started(Option<Child>);

impl Started {
    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("still owned")
    }

    pub(crate) fn output(mut self) -> Run {
        Run::from(self.0.take().expect("still owned").wait_with_output().expect("it ends"))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fleet capped at one agent (`max_agents = 1`, agents start at 1 MiB), that one agent,
/// `holder`, running.
pub(crate) fn full_at_one_agent(test: &str) -> Option<TestFleet> {
    let f = TestFleet::new(test)?;
    f.set_config("[thresholds]\nmax_agents = 1\n[agent]\nstart_reserve = \"1M\"\n");
    f.run(&["spawn", "holder", "ws-001", "--", "sleep", "600"]).code(0);
    Some(f)
}

/// Waits until process `pid` is stopped (a `NAME:stop` failpoint raised SIGSTOP).
pub(crate) fn wait_stopped(pid: u32, what: &str) {
    wait_until(
        T,
        || format!("{what}: it never stopped"),
        || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
        },
    );
}

/// Nobody waits, and nothing but the `wake` file is left in the queue dir.
pub(crate) fn assert_line_left_nothing(f: &TestFleet) {
    assert!(waiting(f).is_empty());
    let left: Vec<_> = std::fs::read_dir(f.state.join("queue"))
        .expect("queue dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "wake")
        .collect();
    assert!(left.is_empty(), "left in the queue dir: {left:?}");
}

/// A queued spawn in the background.
pub(crate) fn queued(f: &TestFleet, id: &str, extra: &[&str]) -> Started {
    let mut args = vec!["spawn", id, "ws-001"];
    args.extend(extra);
    args.extend(["--", "sleep", "600"]);
    in_background(&mut f.cmd(&args))
}

/// `command` started in the background, its output piped.
pub(crate) fn in_background(command: &mut std::process::Command) -> Started {
    Started(Some(command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start fleetctl")))
}

/// The fleet root's memory use, from the kernel.
fn fleet_used(f: &TestFleet) -> u64 {
    let dir = f.fleet.root.memory_dir();
    let file = if f.fleet.root.memory_v1.is_some() { "memory.usage_in_bytes" } else { "memory.current" };
    std::fs::read_to_string(dir.join(file)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Sets its flag when dropped: a sampler thread in a scope stops even when the scope's body
/// panics (the scope waits for its threads before the panic goes on).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Samples the fleet's use until `stop`, keeping the highest.
fn watch_peak(f: &TestFleet, stop: &AtomicBool, peak: &AtomicU64) {
    while !stop.load(Ordering::SeqCst) {
        peak.fetch_max(fleet_used(f), Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The ids of the journal's events named `event` (with `outcome` when given), in the order
/// they were written.
pub(crate) fn journal_ids(f: &TestFleet, event: &str, outcome: Option<&str>) -> Vec<String> {
    std::fs::read_to_string(f.tmp.path().join("log/events.jsonl"))
        .expect("the journal")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == event && outcome.is_none_or(|o| e["outcome"] == o))
        .map(|e| e["id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// 40 queued spawns from 8 parallel callers into a fleet with room for a few: all run, in
/// the order they joined the line, the fleet's use never goes above the spawn threshold
/// plus one agent, and nothing is left waiting or half-made.
#[test]
fn forty_queued_spawns_all_run_in_arrival_order() {
    let Some(f) = TestFleet::new("queue-forty") else { return };
    let budget: u64 = 256 << 20;
    f.set_budget(budget);
    let scratch = f.roots.join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let mount = Tmpfs::mount(&scratch, "size=512m");
    // Each agent takes 24 MiB of tmpfs (charged to it) for a moment and ends, which frees it.
    let agent_mib = 24;
    let script = format!("head -c {} /dev/zero > \"$FLEET_SCRATCH/blob\" && sleep 0.5", agent_mib << 20);
    let (callers, each) = (8, 5);
    let start = Barrier::new(callers);
    let (stop, peak) = (AtomicBool::new(false), AtomicU64::new(0));
    let runs: Vec<(String, Run)> = std::thread::scope(|s| {
        let sampler = s.spawn(|| watch_peak(&f, &stop, &peak));
        let _stop = StopOnDrop(&stop);
        let threads: Vec<_> = (0..callers)
            .map(|c| {
                let (f, start, script) = (&f, &start, &script);
                s.spawn(move || {
                    start.wait();
                    (0..each)
                        .map(|i| {
                            let id = format!("q{c}-{i}");
                            let run = f.run(&["spawn", &id, "ws-001", "--queue=100s", "--", "sh", "-c", script]);
                            (id, run)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let runs: Vec<(String, Run)> = threads.into_iter().flat_map(|t| t.join().expect("caller")).collect();
        for (id, run) in &runs {
            assert_eq!(run.code, 0, "{id}: {run:?}");
        }
        for (id, _) in &runs {
            f.wait_state(id, &["exited", "failed", "killed", "oom-killed"], T);
        }
        stop.store(true, Ordering::SeqCst);
        sampler.join().expect("sampler");
        runs
    });
    for (id, run) in &runs {
        assert_eq!(run.code, 0, "{id}: {run:?}");
        assert_eq!(f.agent(id)["state"], "exited", "{id}: {}", f.log(id));
    }
    let joined = journal_ids(&f, "queued", None);
    assert!(joined.len() >= 8, "the line was used: {} joined", joined.len());
    assert_eq!(journal_ids(&f, "queue_left", Some("admitted")), joined, "admitted in the order they joined");
    let threshold = budget as f64 * 0.85;
    let peak = peak.load(Ordering::SeqCst);
    println!("queue: {} of 40 waited, the fleet peaked at {} MiB", joined.len(), peak >> 20);
    assert!(
        (peak as f64) <= threshold + f64::from(agent_mib << 20) + f64::from(4 << 20),
        "the fleet reached {} MiB, above the threshold ({} MiB) plus one agent",
        peak >> 20,
        threshold as u64 >> 20
    );
    assert!(waiting(&f).is_empty());
    assert_line_left_nothing(&f);
    drop(mount);
    f.finish();
}

/// With the agent cap full, waiters line up; a SIGKILLed waiter leaves no place behind,
/// `kill` takes a waiter out of line (exit 6 for it), a spawn without --queue does not jump
/// the line, TIMEOUT ends a wait with 75, and the end of an agent lets the head in.
#[test]
fn waiters_that_die_or_are_killed_free_their_place_at_once() {
    let Some(f) = full_at_one_agent("queue-kill") else { return };
    let mut w1 = queued(&f, "w1", &["--queue"]);
    wait_until(T, || format!("{:?}", waiting(&f)), || waiting(&f).len() == 1);
    let w2 = queued(&f, "w2", &["--queue"]);
    wait_until(T, || format!("{:?}", waiting(&f)), || waiting(&f).len() == 2);
    let w3 = queued(&f, "w3", &["--queue=10m"]);
    wait_until(T, || format!("{:?}", waiting(&f)), || waiting(&f).len() == 3);
    assert_eq!(
        waiting(&f),
        [(1, "w1".into(), "cap".into()), (2, "w2".into(), "turn".into()), (3, "w3".into(), "turn".into())]
    );
    // Nobody jumps the line.
    f.run(&["spawn", "jumper", "ws-001", "--", "sleep", "600"])
        .code(75)
        .one_error_line("3 spawn(s) wait in line (`fleetctl queue`); add --queue to wait behind them");

    w1.child().kill().expect("SIGKILL w1");
    w1.child().wait().expect("reap w1");
    let now = waiting(&f);
    assert_eq!(now.iter().map(|w| (w.0, w.1.as_str())).collect::<Vec<_>>(), [(1, "w2"), (2, "w3")], "{now:?}");

    let run = f.run(&["kill", "w2"]);
    run.code(0);
    assert!(run.stdout.contains("w2: taken out of the line"), "{run:?}");
    assert_eq!(waiting(&f).iter().map(|w| w.1.as_str()).collect::<Vec<_>>(), ["w3"]);
    let out = w2.output();
    waited_then(out.code(6), "w2: taken out of the line by `fleetctl kill`");
    assert!(!f.state.join("agents/w2").exists(), "a withdrawn waiter made nothing");

    let timed = f.run(&["spawn", "late", "ws-001", "--queue=1s", "--", "sleep", "600"]);
    waited_then(timed.code(75), "refusing to spawn after waiting 1s in line: 1 spawn(s) still wait ahead of it");
    assert!(!f.state.join("agents/late").exists());

    f.run(&["kill", "holder"]).code(0);
    let out = w3.output();
    out.code(0);
    assert!(out.stdout.contains("w3 started"), "{out:?}");
    assert_eq!(f.agent("w3")["state"], "running");
    assert!(waiting(&f).is_empty());

    // `kill --all` empties the line first: no waiter starts in the room the kills make.
    let w4 = queued(&f, "w4", &["--queue"]);
    wait_until(T, || format!("{:?}", waiting(&f)), || waiting(&f).len() == 1);
    let run = f.run(&["kill", "--all"]);
    run.code(0);
    assert!(run.stdout.contains("w4: taken out of the line") && run.stdout.contains("w3: stopped"), "{run:?}");
    waited_then(w4.output().code(6), "w4: taken out of the line by `fleetctl kill`");
    assert!(!f.state.join("agents/w4").exists());
    f.finish();
}

/// 16 callers race for a fleet capped at 5 agents: exactly 5 run, the rest get 75.
#[test]
fn the_agent_cap_holds_under_sixteen_racing_callers() {
    let Some(f) = TestFleet::new("queue-cap") else { return };
    f.set_budget(512 << 20);
    f.set_config("[thresholds]\nmax_agents = 5\n[agent]\nstart_reserve = \"1M\"\n");
    // A reservation that alone reaches the threshold could never be admitted: no waiting.
    f.run(&["spawn", "huge", "ws-001", "--queue", "--memory-reserve", "1G", "--", "sleep", "60"])
        .code(75)
        .one_error_line("1.0 GiB for this agent), at or above the spawn threshold of 85 %");
    let callers = 16;
    let start = Barrier::new(callers);
    let runs: Vec<(String, Run)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..callers)
            .map(|i| {
                let (f, start) = (&f, &start);
                s.spawn(move || {
                    let id = format!("cap{i:02}");
                    start.wait();
                    let run = f.run(&["spawn", &id, "ws-001", "--", "sleep", "600"]);
                    (id, run)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("caller")).collect()
    });
    let admitted: Vec<_> = runs.iter().filter(|(_, r)| r.code == 0).collect();
    for (id, run) in runs.iter().filter(|(_, r)| r.code != 0) {
        run.code(75).one_error_line("its maximum of 5 (max_agents)");
        assert!(!f.state.join("agents").join(id).exists(), "{id}: a refused spawn left state");
    }
    assert_eq!(admitted.len(), 5, "{runs:?}");
    let running = f.status()["agents"].as_array().expect("agents").iter().filter(|a| a["state"] == "running").count();
    assert_eq!(running, 5);
    f.finish();
}

/// 30 agents that start small and then each grow to 12 MiB, in a 256 MiB fleet with the
/// guard on. Without reservations all 30 are admitted on their small start and the guard
/// must kill; with `--memory-reserve 12M` (and `--queue`) admission counts each at its
/// reserve, the fleet stays below the kill threshold, the guard never fires and all 30 run.
#[test]
fn reservations_keep_a_growing_burst_below_the_kill_threshold() {
    let mut guard_kills = Vec::new();
    for reserve in [false, true] {
        let Some(f) = TestFleet::new(if reserve { "reserve-on" } else { "reserve-off" }) else { return };
        let budget: u64 = 256 << 20;
        f.set_budget(budget);
        f.small_start_reserve();
        let scratch = f.roots.join("scratch");
        std::fs::create_dir_all(&scratch).expect("mkdir");
        let mount = Tmpfs::mount(&scratch, "size=512m");
        let metrics = f.tmp.path().join("metrics.prom");
        let mut guard = Started(Some(crate::watch::start_guard(&f, &[], &metrics)));
        let go = f.tmp.path().join("go");
        // Small until the go, then 12 MiB in three steps (the pace of a real agent's growth,
        // which the guard samples), held for a while.
        let script = format!(
            "until [ -e '{}' ]; do sleep 0.05; done; for i in 1 2 3; do head -c {} /dev/zero >> \"$FLEET_SCRATCH/blob\"; sleep 0.3; done; sleep 2",
            go.display(),
            4 << 20
        );
        let (stop, peak) = (AtomicBool::new(false), AtomicU64::new(0));
        let ids: Vec<String> = (0..30).map(|i| format!("r{i:02}")).collect();
        std::thread::scope(|s| {
            let sampler = s.spawn(|| watch_peak(&f, &stop, &peak));
            let _stop = StopOnDrop(&stop);
            let callers: Vec<_> = ids
                .iter()
                .map(|id| {
                    let (f, script) = (&f, &script);
                    s.spawn(move || {
                        let mut args = vec!["spawn", id, "ws-001"];
                        if reserve {
                            args.extend(["--memory-reserve", "12M", "--queue=100s"]);
                        }
                        args.extend(["--", "sh", "-c", script]);
                        f.run(&args)
                    })
                })
                .collect();
            if reserve {
                // The first admitted agents are made: let them grow, and the rest follow.
                std::fs::write(&go, "").expect("go");
            } else {
                // Everyone is admitted on their small start, then all grow at once.
                wait_until(
                    T,
                    || "30 agents admitted".into(),
                    || ids.iter().all(|id| f.state.join("agents").join(id).exists()),
                );
                std::fs::write(&go, "").expect("go");
            }
            for c in callers {
                let run = c.join().expect("caller");
                assert!(run.code == 0, "{run:?}");
            }
            for id in &ids {
                f.wait_state(id, &["exited", "killed", "oom-killed", "failed"], T);
            }
            stop.store(true, Ordering::SeqCst);
            sampler.join().expect("sampler");
        });
        let killed: Vec<&String> = ids.iter().filter(|id| f.agent(id)["killed_by"] == "watch").collect();
        let peak = peak.load(Ordering::SeqCst);
        println!(
            "reservations {}: peak {} MiB, {} killed by the guard",
            if reserve { "on" } else { "off" },
            peak >> 20,
            killed.len()
        );
        if reserve {
            assert!(killed.is_empty(), "the guard fired with reservations: {killed:?}");
            assert!((peak as f64) < budget as f64 * 0.95, "peak {} MiB reached the kill threshold", peak >> 20);
            for id in &ids {
                assert_eq!(f.agent(id)["state"], "exited", "{id}: {}", f.log(id));
            }
            // Shown while it runs (tests/admission.rs); an ended run reserves nothing.
            let reserved = &f.agent("r00")["memory_reserve_bytes"];
            assert!(reserved.is_null(), "an ended agent's reservation is shown: {reserved}");
        }
        guard_kills.push(killed.len());
        crate::watch::interrupt(guard.child());
        let _ = guard.child().wait();
        drop(mount);
        f.finish();
    }
    assert!(guard_kills[0] > 0, "without reservations the burst should have made the guard kill");
}
