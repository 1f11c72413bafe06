//! Admission under concurrency, and limits that mean nothing under the fleet's budget.

use crate::{
    queue::{in_background, waiting},
    util::{Run, TestFleet, Tmpfs, wait_until},
};
use std::{sync::Barrier, time::Duration};

/// Generous: not a timed test, and the VM tier runs under TCG emulation.
const T: Duration = Duration::from_secs(90);

/// The start reserve each agent counts for before it has grown (docs/decisions.md).
const START_RESERVE_MIB: u64 = 32;

/// Parallel callers, each spawning one agent at the same moment.
const CALLERS: usize = 12;

/// Many callers spawn at once into a small budget, and every agent then takes about its
/// start reserve. The race is staged at its worst: no agent takes anything until every
/// spawn has been decided (each waits for a file the test makes afterwards), so admission
/// cannot see any agent's memory yet and must count the ones it has just admitted.
/// Afterwards the fleet is below the spawn threshold with every admitted agent running, and
/// the refused spawns exited 75, left nothing behind and are in the journal.
#[test]
fn parallel_spawns_count_each_other_and_stay_below_the_threshold() {
    let Some(f) = TestFleet::new("admission-race") else { return };
    let budget: u64 = 256 << 20;
    f.set_budget(budget);
    // Scratch on a tmpfs: what an agent writes there is memory charged to it, exactly as
    // much as it wrote (a shell building a string briefly needs twice its size).
    let scratch = f.tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let mount = Tmpfs::mount(&scratch, "size=512m");
    let go = f.tmp.path().join("go");
    let take = (START_RESERVE_MIB - 2) << 20;
    let script = format!(
        "until [ -e '{}' ]; do sleep 0.02; done; head -c {take} /dev/zero > \"$FLEET_SCRATCH/blob\" && echo ready; exec sleep 600",
        go.display()
    );
    let ids: Vec<String> = (0..CALLERS).map(|i| format!("c{i:02}")).collect();
    let start = Barrier::new(CALLERS);
    let runs: Vec<(String, Run)> = std::thread::scope(|s| {
        let callers: Vec<_> = ids
            .iter()
            .map(|id| {
                let (f, start, script) = (&f, &start, &script);
                s.spawn(move || {
                    start.wait();
                    (id.clone(), f.run(&["spawn", id, "ws-001", "--", "sh", "-c", script]))
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join().expect("caller")).collect()
    });
    let (admitted, refused): (Vec<_>, Vec<_>) = runs.iter().partition(|(_, run)| run.code == 0);
    for (id, run) in &refused {
        assert_eq!(run.code, 75, "{id}: {run:?}");
        run.one_error_line("at or above the spawn threshold of 85 %");
    }
    let summary = runs.iter().map(|(id, r)| format!("{id}: {}", r.code)).collect::<Vec<_>>().join(", ");
    assert!(!admitted.is_empty() && !refused.is_empty(), "all admitted or all refused: {summary}");
    // What admission promised: every admitted agent's reserve fits below the threshold.
    let threshold_mib = (budget >> 20) as f64 * 0.85;
    assert!(
        (admitted.len() as u64 * START_RESERVE_MIB) as f64 <= threshold_mib,
        "{} agents of {START_RESERVE_MIB} MiB admitted into {threshold_mib} MiB: {summary}",
        admitted.len()
    );

    std::fs::write(&go, "").expect("go");
    for (id, _) in &admitted {
        f.wait_log(id, "ready", T);
    }
    let status = f.status();
    let used = status["host"]["used_percent"].as_f64().expect("used_percent");
    println!(
        "admission: {} admitted, {} refused, the fleet settled at {used} %: {summary}",
        admitted.len(),
        refused.len()
    );
    assert!(used < 85.0, "the fleet settled at {used} % with {} agents: {summary}", admitted.len());
    for (id, _) in &admitted {
        let a = f.agent(id);
        assert_eq!(a["state"], "running", "{id} did not survive: {a:#}\n{}", f.log(id));
    }
    for (id, _) in &admitted {
        assert!(f.events(id).iter().all(|e| e["event"] != "spawn_refused"), "{id} was admitted");
    }
    for (id, _) in &refused {
        assert!(!f.cgroup(id).exists(), "{id}: a refused spawn left its cgroup");
        assert!(!f.tmp.path().join("state/agents").join(id).exists(), "{id}: a refused spawn left state");
        assert!(!scratch.join(id).exists(), "{id}: a refused spawn left its scratch dir");
        let events = f.events(id);
        assert_eq!(events.len(), 1, "{id}: one event, its refusal: {events:?}");
        let e = &events[0];
        assert_eq!((e["event"].as_str(), e["reason"].as_str()), (Some("spawn_refused"), Some("memory")), "{e}");
        assert_eq!(e["threshold_percent"], 85, "{e}");
        assert!(e["counted_percent"].as_f64().unwrap_or(0.0) >= 85.0, "{e}");
    }
    // The tmpfs goes once its files have (the agents' scratch dirs are removed at their end).
    f.run(&["kill", "--all", "--force"]).code(0);
    drop(mount);
    f.finish();
}

/// A memory limit the operator gave that is above the whole fleet budget cannot be what
/// stops the agent: spawn says so in one line and goes ahead. Limits within the budget, and
/// the built-in default nobody typed, say nothing.
#[test]
fn a_limit_above_the_budget_is_warned_about() {
    let Some(f) = TestFleet::new("overbudget") else { return };
    // Below the VM tier's memory, so the fleet's budget is the one named.
    f.set_budget(256 << 20);
    let run = f.run(&["spawn", "huge", "ws-001", "--memory-max", "2T", "--", "sleep", "60"]);
    run.code(0).one_error_line("huge: warning: its memory limit (2.0 TiB) is above the fleet's budget (256.0 MiB)");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stdout.contains("huge started"), "{run:?}");
    assert_eq!(f.limits("huge").memory_max, fleet_core::size::Limit::Bytes(2 << 40), "the limit is kept as given");
    assert_eq!(f.agent("huge")["state"], "running");

    let config = f.tmp.path().join("big-limits.toml");
    std::fs::write(&config, crate::util::as_root("[agent]\nmemory_max = \"1G\"\nmemory_high = \"128M\"\n"))
        .expect("config");
    let run = Run::from(
        f.cmd(&["spawn", "fromfile", "ws-001", "--", "sleep", "60"])
            .env("FLEET_CONFIG", &config)
            .output()
            .expect("spawn"),
    );
    run.code(0).one_error_line("fromfile: warning: its memory limit (1.0 GiB) is above the fleet's budget");

    for args in [
        vec!["spawn", "fits", "ws-001", "--memory-max", "128M", "--memory-high", "64M", "--", "sleep", "60"],
        vec!["spawn", "default", "ws-001", "--", "sleep", "60"],
        vec!["spawn", "unlimited", "ws-001", "--memory-max", "max", "--memory-high", "max", "--", "sleep", "60"],
    ] {
        let run = f.run(&args);
        run.code(0);
        assert!(run.stderr.is_empty(), "{args:?} warned: {}", run.stderr);
    }
    f.wait_state("fits", &["running"], T);
    f.finish();
}

/// A spawn refused because a lease pool is exhausted is journaled like one refused for
/// memory, and gives back what admission had set aside for its agent.
#[test]
fn a_spawn_refused_for_an_exhausted_pool_is_journaled_and_reserves_nothing() {
    let Some(f) = TestFleet::new("pool-refused") else { return };
    let ports = ["--ports", "4", "--port-range", "23300-23303"];
    f.run(&[&["spawn", "p1", "ws-001"][..], &ports, &["--", "sleep", "60"]].concat()).code(0);
    let run = f.run(&[&["spawn", "p2", "ws-001"][..], &ports, &["--", "sleep", "60"]].concat());
    run.code(75).one_error_line("port pool exhausted");
    let refused = f.events("p2");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0]["event"].as_str(), refused[0]["reason"].as_str()), (Some("spawn_refused"), Some("pool")));
    let ledger = ledger_ids(&f);
    assert!(ledger.iter().any(|id| id == "p1"), "p1's reservation is on file: {ledger:?}");
    assert!(!ledger.iter().any(|id| id == "p2"), "the refused p2 kept a reservation: {ledger:?}");
    f.finish();
}

/// The admission ledger's entries (`<state>/admission.lock`: `AT RESERVE OWNER ID [R]`, with
/// its hand-over lines applied, as fleetctl reads it) as (id, owner) pairs; an owner is
/// `PID:START`, or `PID` in a line of an older fleetctl.
fn ledger_lines(f: &TestFleet) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(f.state.join("admission.lock")).unwrap_or_default();
    let owner = |e: &fleet_core::admission::Entry| match e.start_ticks {
        Some(start) => format!("{}:{start}", e.pid),
        None => e.pid.to_string(),
    };
    fleet_core::admission::entries_of(&text).iter().map(|e| (e.id.to_string(), owner(e))).collect()
}

/// The ids the admission ledger has a line for.
fn ledger_ids(f: &TestFleet) -> Vec<String> {
    ledger_lines(f).into_iter().map(|(id, _)| id).collect()
}

/// A 256 MiB fleet whose agents start at 1 MiB: two reservations of 150 MiB pass its 85 %
/// threshold (217.6 MiB), one does not.
fn reserving_fleet(test: &str) -> Option<TestFleet> {
    let f = TestFleet::new(test)?;
    f.set_budget(256 << 20);
    f.small_start_reserve();
    Some(f)
}

/// What the reservation tests' agents are spawned with after their id and workspace.
const RESERVING: [&str; 5] = ["--memory-reserve", "150M", "--", "sleep", "600"];

/// Spawns `id` reserving 150 MiB, with `failpoint` armed to SIGKILL the spawn there.
fn spawn_killed_at(f: &TestFleet, id: &str, failpoint: &str) {
    let died = Run::from(
        f.cmd(&[&["spawn", id, "ws-001"][..], &RESERVING[..]].concat())
            .env("FLEETCTL_FAILPOINT", failpoint)
            .output()
            .expect("spawn"),
    );
    assert_eq!(died.code, -1, "spawn must have died of SIGKILL at {failpoint}: {died:?}");
}

/// A `--memory-reserve` lasts as long as its agent's supervisor: once `kill` has ended the
/// agent, the reservation is neither shown nor kept, even by an admission far below the
/// threshold, and the next spawn that needs its room is admitted.
#[test]
fn a_killed_agents_reservation_no_longer_counts_nor_shows() {
    let Some(f) = reserving_fleet("reserve-killed") else { return };
    let reserving =
        |id: &str, reserve: &str| f.run(&["spawn", id, "ws-001", "--memory-reserve", reserve, "--", "sleep", "600"]);
    reserving("r1", "150M").code(0);
    assert_eq!(f.agent("r1")["memory_reserve_bytes"], 150u64 << 20);
    reserving("r2", "150M")
        .code(75)
        .one_error_line("expected of agents still starting or reserved, 150.0 MiB for this agent");
    f.run(&["kill", "r1"]).code(0);
    let r1 = f.agent("r1");
    assert!(r1["memory_reserve_bytes"].is_null(), "an ended agent reserves nothing: {r1:#}");
    // Far below the threshold: it would fit with r1's reservation counted, and still drops it.
    reserving("small", "8M").code(0);
    assert!(!ledger_ids(&f).contains(&"r1".to_string()), "{:?}", ledger_ids(&f));
    reserving("r2", "150M").code(0);
    assert_eq!(ledger_ids(&f), ["small", "r2"]);
    f.finish();
}

/// A spawn SIGKILLed between its admission and its agent's start (its cgroup made, empty)
/// leaves a ledger line whose owner is gone: it counts for nothing, and the next admission
/// drops it.
#[test]
fn a_spawn_killed_after_admission_leaves_no_reservation_that_counts() {
    let Some(f) = reserving_fleet("reserve-spawnkill") else { return };
    spawn_killed_at(&f, "half", "spawn-after-cgroup");
    assert!(f.cgroup("half").exists(), "it died with its cgroup made");
    assert_eq!(ledger_ids(&f), ["half"], "its line is on file");
    f.run(&[&["spawn", "next", "ws-001"][..], &RESERVING[..]].concat()).code(0);
    assert_eq!(ledger_ids(&f), ["next"]);
    f.run(&["kill", "half", "next"]).code(0);
    f.finish();
}

/// A ledger written by fleetctl 9358994 (`AT RESERVE PID ID [R]`, no start time) still
/// loads: a lasting line of a running agent is adopted by its supervisor and keeps counting,
/// one of an agent that is gone is dropped.
#[test]
fn an_older_fleetctls_ledger_lines_are_adopted_or_dropped() {
    let Some(f) = reserving_fleet("reserve-oldledger") else { return };
    f.run(&["spawn", "r1", "ws-001", "--memory-reserve", "150M", "--", "sleep", "600"]).code(0);
    let supervisor = f.agent("r1")["supervisor_pid"].as_i64().expect("supervisor");
    // As 9358994 left it: owned by r1's spawn (long gone), and a reservation of an agent
    // that no longer exists.
    let path = f.state.join("admission.lock");
    let old = format!("1000 {} 999999 r1 R\n1000 {} 999998 ghost R\n", 150u64 << 20, 64u64 << 20);
    std::fs::write(&path, old).expect("an old ledger");
    f.run(&["spawn", "r2", "ws-001", "--memory-reserve", "150M", "--", "sleep", "600"])
        .code(75)
        .one_error_line("expected of agents still starting or reserved, 150.0 MiB for this agent");
    let lines = ledger_lines(&f);
    assert!(
        matches!(&lines[..], [(id, owner)] if id == "r1" && owner.starts_with(&format!("{supervisor}:"))),
        "r1's line adopted by its supervisor, the ghost's dropped: {lines:?}"
    );
    f.run(&["kill", "r1"]).code(0);
    f.run(&["spawn", "r2", "ws-001", "--memory-reserve", "150M", "--", "sleep", "600"]).code(0);
    f.finish();
}

/// Whether process `pid` is stopped (state `T`).
fn is_stopped(pid: i64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
}

/// A supervisor gives its agent's reservation up before it wakes the line at the end of the
/// run: a spawn waiting for that memory is admitted by that wake, while the supervisor still
/// lives (held there by a failpoint). The safety re-check is out of reach, so a wake that
/// admits nobody ends in the waiter's `--queue` timeout, not in a start a re-check late.
#[test]
fn a_waiter_for_a_reservation_starts_on_the_wake_at_its_agents_end() {
    let Some(f) = reserving_fleet("reserve-wake") else { return };
    let first = f
        .cmd(&[&["spawn", "r1", "ws-001"][..], &RESERVING[..]].concat())
        .env("FLEETCTL_FAILPOINT", "supervisor-end:stop")
        .output()
        .expect("spawn");
    Run::from(first).code(0);
    let supervisor = f.agent("r1")["supervisor_pid"].as_i64().expect("supervisor");
    let waiter = in_background(
        f.cmd(&[&["spawn", "r2", "ws-001", "--queue=60s"][..], &RESERVING[..]].concat())
            .env("FLEETCTL_QUEUE_RECHECK_SECS", "3600"),
    );
    wait_until(
        T,
        || format!("r2 never waited for memory: {:?}", waiting(&f)),
        || waiting(&f).iter().any(|(_, id, reason)| id == "r2" && reason == "memory"),
    );
    let killer = in_background(&mut f.cmd(&["kill", "r1"]));
    let admitted = waiter.output();
    admitted.code(0);
    assert_eq!(f.agent("r2")["state"], "running");
    wait_until(T, || format!("r1's supervisor {supervisor} never reached supervisor-end"), || is_stopped(supervisor));
    assert_eq!(ledger_ids(&f), ["r2"], "r1's line left while its supervisor lives");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor as i32), nix::sys::signal::Signal::SIGCONT)
        .expect("continue r1's supervisor");
    killer.output().code(0);
    f.run(&["kill", "r2"]).code(0);
    f.finish();
}

/// The reservation passes to the supervisor before the agent may run: a spawn SIGKILLed
/// right after its agent started leaves a reservation that keeps counting for as long as the
/// agent lives.
#[test]
fn a_spawn_killed_after_its_agent_started_leaves_the_reservation_to_its_supervisor() {
    let Some(f) = reserving_fleet("reserve-aftergo") else { return };
    spawn_killed_at(&f, "r1", "spawn-after-go");
    f.wait_state("r1", &["running"], T);
    f.run(&[&["spawn", "r2", "ws-001"][..], &RESERVING[..]].concat())
        .code(75)
        .one_error_line("expected of agents still starting or reserved, 150.0 MiB for this agent");
    f.run(&["kill", "r1"]).code(0);
    f.finish();
}

/// Far below the threshold, the sweep of lasting lines takes an owner listed in the fleet's
/// `supervisors/` cgroup as alive without asking /proc (one read for all of them). Where the
/// line can change the decision, near the threshold, its owner is checked exactly: a line
/// that names a listed supervisor's pid with another start time (a reused pid) is kept by
/// the first and dropped by the second.
#[test]
fn far_below_the_threshold_a_listed_owner_is_not_asked_of_proc() {
    let Some(f) = reserving_fleet("reserve-listed") else { return };
    let reserving = |id: &str, reserve: &str| {
        f.run(&["spawn", id, "ws-001", "--memory-reserve", reserve, "--", "sleep", "600"]).code(0);
    };
    reserving("r1", "8M");
    let supervisor = f.agent("r1")["supervisor_pid"].as_i64().expect("supervisor");
    let procs = f.fleet.supervisors().unified.join("cgroup.procs");
    let listed = || std::fs::read_to_string(&procs).unwrap_or_default().lines().any(|l| l == supervisor.to_string());
    wait_until(T, || format!("supervisor {supervisor} never moved to {}", procs.display()), listed);
    let path = f.state.join("admission.lock");
    let mut ledger = std::fs::read_to_string(&path).expect("ledger");
    ledger.push_str(&format!("1000 {} {supervisor}:1 ghost R\n", 150u64 << 20));
    std::fs::write(&path, ledger).expect("a line of a reused pid");
    // 8 + 150 + 8 MiB of reserves taken whole fit below 217.6 MiB: housekeeping only.
    reserving("small", "8M");
    assert_eq!(ledger_ids(&f), ["r1", "ghost", "small"]);
    // 60 MiB more would not fit with the ghost's 150: now its owner is checked.
    reserving("big", "60M");
    assert_eq!(ledger_ids(&f), ["r1", "small", "big"]);
    f.run(&["kill", "r1", "small", "big"]).code(0);
    f.finish();
}
