//! The spawn queue at the scale it is for: an orchestrator queueing hundreds of spawns. More
//! waiters than `fs.inotify.max_user_instances` allows inotify instances, a waiter dying in
//! the middle, each behind waiter waiting on the one ahead only, `kill -l` of waiters.

use crate::queue::{
    Started, T, assert_line_left_nothing, full_at_one_agent, in_background, journal_ids, queued, wait_stopped,
    waited_then, waiting,
};
use crate::util::{TestFleet, wait_until, waits_for_lock};
use std::path::PathBuf;

/// The ticket file of `id`'s waiter, if it has one.
fn ticket(f: &TestFleet, id: &str) -> Option<PathBuf> {
    let suffix = format!(".{id}");
    std::fs::read_dir(f.state.join("queue"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(&suffix)))
}

/// Starts queued spawns of `ids` (agents that end at once) one after another, each once the
/// one before has its ticket, so their arrival order is `ids`' order.
fn line_up(f: &TestFleet, ids: &[String], extra: &[&str]) -> Vec<Started> {
    ids.iter()
        .map(|id| {
            let mut args = vec!["spawn", id, "ws-001", "--queue=5m"];
            args.extend(extra);
            args.extend(["--", "true"]);
            let waiter = in_background(&mut f.cmd(&args));
            wait_until(T, || format!("{id} never joined the line"), || ticket(f, id).is_some());
            waiter
        })
        .collect()
}

/// More waiters than one user may have inotify instances (128 by default; read here) all
/// join and are listed in arrival order, each behind waiter blocked on the ticket directly
/// ahead of it and nothing else; one SIGKILLed in the middle is passed (the one behind it
/// moves up and waits on the one before); then all run, in arrival order, to the end.
#[test]
fn more_waiters_than_inotify_instances_all_run_in_arrival_order() {
    let Some(f) = TestFleet::new("queue-scale") else { return };
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(128);
    // More waiters than the limit, where that is affordable: each is a process of a few MiB,
    // and 400 of them took a 2 GiB guest down (systemd raises the limit well past 128).
    const MOST: usize = 160;
    let count = (limit + 32).min(MOST);
    if limit + 32 > MOST {
        crate::util::skip_part(
            "queue-scale",
            &format!("more waiters than inotify instances: this host allows {limit}, the test lines up {MOST}"),
        );
    }
    f.set_config("[agent]\nstart_reserve = \"1M\"\n");
    // The fleet's own budget: what the waiting processes take of a small host (a 2 GiB
    // guest) is not the fleet's, and must not turn a wait for the cap into one for memory.
    f.set_budget(512 << 20);
    let cap = "3";
    for i in 0..3 {
        f.run(&["spawn", &format!("holder{i}"), "ws-001", "--max-agents", cap, "--", "sleep", "600"]).code(0);
    }
    let ids: Vec<String> = (0..count).map(|i| format!("w{i:03}")).collect();
    let mut waiters = line_up(&f, &ids, &["--max-agents", cap, "--label", "batch=scale"]);
    let listed = waiting(&f);
    assert_eq!(listed.len(), count);
    for (i, (position, id, reason)) in listed.iter().enumerate() {
        assert_eq!((*position as usize, id), (i + 1, &ids[i]));
        assert_eq!(reason, if i == 0 { "cap" } else { "turn" }, "{id}");
    }
    // Each behind waiter waits for the lock of the ticket directly ahead (the kernel lists it
    // in /proc/locks), not on the whole queue dir.
    let pids: Vec<u32> = waiters.iter_mut().map(|w| w.child().id()).collect();
    for i in 1..count {
        let ahead = ticket(&f, &ids[i - 1]).expect("ticket");
        let p = pids[i];
        wait_until(T, || format!("{} does not wait on {}'s ticket", ids[i], ids[i - 1]), || waits_for_lock(p, &ahead));
    }
    // SIGKILL one in the middle: the one behind it moves up and waits on the one before.
    let middle = count / 2;
    let dead_ticket = ticket(&f, &ids[middle]).expect("ticket");
    waiters[middle].child().kill().expect("SIGKILL");
    waiters[middle].child().wait().expect("reap");
    let before = ticket(&f, &ids[middle - 1]).expect("ticket");
    let behind = pids[middle + 1];
    wait_until(T, || format!("{} never moved up", ids[middle + 1]), || waits_for_lock(behind, &before));
    let listed = waiting(&f);
    assert_eq!(listed[middle], ((middle + 1) as u64, ids[middle + 1].clone(), "turn".into()));
    assert!(!dead_ticket.exists(), "the dead waiter's ticket is removed by whoever sees it");
    // Let them all through: each agent ends at once, which lets the next in.
    let finished = std::fs::read_dir(f.state.join("agents")).expect("agents").count();
    assert_eq!(finished, 3, "nothing but the holders was started while they held the cap");
    f.run(&["kill", "holder0", "holder1", "holder2"]).code(0);
    let survivors: Vec<String> =
        ids.iter().enumerate().filter(|(i, _)| *i != middle).map(|(_, id)| id.clone()).collect();
    for (i, waiter) in waiters.into_iter().enumerate().filter(|(i, _)| *i != middle) {
        let out = waiter.output();
        out.code(0);
        assert!(out.stdout.contains(&format!("{} started", ids[i])), "{out:?}");
    }
    assert_eq!(journal_ids(&f, "queue_left", Some("admitted")), survivors, "admitted in arrival order");
    assert!(waiting(&f).is_empty());
    f.run(&["kill", "--all"]).code(0);
    assert_line_left_nothing(&f);
    f.finish();
}

/// `kill -l SELECTOR` takes exactly the waiters whose spawns carry matching labels out of
/// line (exit 6 for them, nothing made), even when no agent matches; the others keep their
/// places and the agents run on.
#[test]
fn kill_by_selector_withdraws_exactly_the_matching_waiters() {
    let Some(f) = TestFleet::new("queue-kill-label") else { return };
    f.set_config("[thresholds]\nmax_agents = 1\n[agent]\nstart_reserve = \"1M\"\n");
    f.run(&["spawn", "holder", "ws-001", "--label", "team=c", "--", "sleep", "600"]).code(0);
    let plan = [("a1", "team=a"), ("b1", "team=b"), ("a2", "team=a"), ("b2", "team=b")];
    let mut waiters: Vec<(&str, Started)> = plan
        .iter()
        .map(|(id, label)| {
            let w = queued(&f, id, &["--queue", "--label", label]);
            wait_until(T, || format!("{id} never joined"), || ticket(&f, id).is_some());
            (*id, w)
        })
        .collect();
    let run = f.run(&["kill", "-l", "team=a"]);
    run.code(0);
    for id in ["a1", "a2"] {
        assert!(run.stdout.contains(&format!("{id}: taken out of the line")), "{run:?}");
    }
    assert!(!run.stdout.contains("b1") && !run.stdout.contains("holder"), "{run:?}");
    // Out of line at once.
    let ids = |f: &TestFleet| waiting(f).into_iter().map(|w| w.1).collect::<Vec<_>>();
    assert_eq!(ids(&f), ["b1", "b2"]);
    for id in ["a1", "a2"] {
        let at = waiters.iter().position(|(w, _)| *w == id).expect("waiter");
        let (_, waiter) = waiters.remove(at);
        waited_then(waiter.output().code(6), &format!("{id}: taken out of the line by `fleetctl kill`"));
        assert!(!f.state.join("agents").join(id).exists(), "a withdrawn waiter made nothing");
    }
    assert_eq!(f.agent("holder")["state"], "running");
    // A selector that matches neither waiters nor agents is still exit 5.
    f.run(&["kill", "-l", "team=z"]).code(5);
    // One matching both an agent and waiters: the waiters go first, so none starts in the room.
    let run = f.run(&["kill", "-l", "team in (b,c)"]);
    run.code(0);
    assert!(run.stdout.contains("b1: taken out") && run.stdout.contains("holder: stopped"), "{run:?}");
    for (id, waiter) in waiters {
        waited_then(waiter.output().code(6), &format!("{id}: taken out of the line"));
    }
    assert!(waiting(&f).is_empty());
    f.finish();
}

/// The end of an agent between a newcomer's refusal and the watch it then sleeps on is not
/// lost: the waiter, stopped right there (failpoint `queue-head`), is admitted once let go,
/// since a head looks again after making its watch rather than sleeping first.
#[test]
fn an_agent_ending_before_the_heads_watch_is_not_missed() {
    let Some(f) = full_at_one_agent("queue-lost-wake") else { return };
    let mut w = in_background(
        f.cmd(&["spawn", "w", "ws-001", "--queue=60s", "--", "sleep", "600"])
            .env("FLEETCTL_FAILPOINT", "queue-head:stop")
            // Out of reach, so no re-check 2 s later hides a missed wake: the waiter would
            // then sleep out its whole 60 s bound before its last look.
            .env("FLEETCTL_QUEUE_RECHECK_SECS", "3600"),
    );
    let pid = w.child().id();
    wait_stopped(pid, "the waiter before its watch");
    assert_eq!(waiting(&f), [(1, "w".into(), "cap".into())]);
    f.run(&["kill", "holder"]).code(0);
    use nix::sys::signal::{Signal, kill};
    kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGCONT).expect("continue the waiter");
    let out = w.output();
    out.code(0);
    assert_eq!(f.agent("w")["state"], "running", "{out:?}");
    f.run(&["kill", "--all"]).code(0);
    f.finish();
}
