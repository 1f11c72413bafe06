//! Stalled agents seen early: an agent that thrashes at its memory limit is marked `stalled`
//! with a `stall` event, gets the signal it asked for, or is killed into a restartable
//! `stalled` end; a bystander beside it is not marked.
//!
//! What makes a real stall differs by layout. With swap off, anonymous memory cannot be
//! reclaimed, so an agent that only holds anonymous pages at its limit is OOM-killed, not
//! stalled; what stalls it is page cache it needs again and again and the kernel keeps
//! evicting. The agent holds anonymous memory just under its limit and reads a file of its
//! own through the page cache in a loop. On a hybrid host `memory.high` is v1's soft limit,
//! which never throttles: the limit that makes it reclaim is `memory.max`. On pure cgroup v2
//! `memory.high` throttles and reclaims on every charge above it, below `memory.max`.

use crate::util::{TestFleet, skip};
use fleet_core::cgroup::Layout;
use std::time::Duration;

/// Holds `anon` MiB, writes a `file` MiB file in its workspace, then touches its pages and
/// the file's in a loop; prints `got-usr2` on SIGUSR2.
const THRASH: &str = r#"
import mmap, os, signal, sys
signal.signal(signal.SIGUSR2, lambda *_: print("got-usr2", flush=True))
anon, size = int(sys.argv[1]), int(sys.argv[2])
held = bytearray(anon << 20)
path = "thrash-%d.dat" % os.getpid()
with open(path, "wb") as f:
    chunk = b"x" * (1 << 20)
    for _ in range(size):
        f.write(chunk)
data = mmap.mmap(os.open(path, os.O_RDONLY), 0, prot=mmap.PROT_READ)
os.unlink(path)
print("thrashing", flush=True)
n = 0
while True:
    for i in range(0, len(held), 4096):
        held[i] = (held[i] + 1) & 255
    for i in range(0, len(data), 4096):
        n += data[i]
"#;

/// A fleet under a 512 MiB budget where 10 % `full` pressure for 4 s is a stall; None
/// (skipped) without python3 for the thrashing agent.
fn stall_fleet(test: &str) -> Option<TestFleet> {
    let f = TestFleet::new(test)?;
    if !std::process::Command::new("python3").args(["-c", ""]).status().is_ok_and(|s| s.success()) {
        skip::skip(test, "needs python3 for the thrashing agent");
        f.finish();
        return None;
    }
    f.set_budget(512 << 20);
    f.set_config("[agent]\nstall_threshold = 10\nstall_after = \"4s\"\n");
    Some(f)
}

/// The limit flags that make [`THRASH`] with 40 MiB held and a 40 MiB file stall here.
fn stalling_limits(layout: Layout) -> [&'static str; 4] {
    match layout {
        Layout::Hybrid => ["--memory-max", "64M", "--memory-high", "max"],
        Layout::Unified => ["--memory-max", "160M", "--memory-high", "56M"],
    }
}

#[test]
fn a_thrashing_agent_is_marked_stalled_and_signalled_and_a_bystander_is_not() {
    let Some(f) = stall_fleet("stall_marked") else { return };
    let layout = f.fleet.root.layout;
    let limits = stalling_limits(layout);
    let thrash = |id: &str, extra: &[&str]| {
        let mut args = vec!["spawn", id, "ws-001"];
        args.extend_from_slice(&limits);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "python3", "-c", THRASH, "40", "40"]);
        f.run(&args).code(0);
    };
    thrash("thrasher", &["--stall-signal", "SIGUSR2"]);
    f.run(&["spawn", "calm", "ws-001", "--stall-signal", "usr2", "--", "sh", "-c", "echo up; exec sleep 600"]).code(0);
    f.wait_log("calm", "up", Duration::from_secs(30));
    if !f.cgroup("thrasher").unified.join("memory.pressure").exists() {
        skip::skip("stall_marked", "the kernel has no pressure stall information (boot with psi=1)");
        return f.finish();
    }

    let stall = f.wait_event("thrasher", "stall", Duration::from_secs(120));
    assert_eq!((stall["threshold_percent"].as_u64(), stall["kill"].as_bool()), (Some(10), Some(false)), "{stall}");
    assert_eq!(stall["signal"], "SIGUSR2");
    f.wait_log("thrasher", "got-usr2", Duration::from_secs(60));
    let a = f.agent("thrasher");
    assert_eq!((a["state"].as_str(), a["stalled"].as_bool()), (Some("running"), Some(true)), "{a:#}");
    assert!(a["stalled_since"].is_string(), "{a:#}");
    let table = f.run(&["status"]);
    assert!(table.stdout.contains("running (stalled)"), "{}", table.stdout);

    // The bystander ran through it all unmarked.
    let calm = f.agent("calm");
    assert_eq!((calm["state"].as_str(), calm["stalled"].as_bool()), (Some("running"), Some(false)), "{calm:#}");
    assert!(f.events("calm").iter().all(|e| e["event"] != "stall"), "{:?}", f.events("calm"));
    f.finish();
}

#[test]
fn on_stall_kill_ends_a_thrashing_agent_stalled_and_restarts_it() {
    let Some(f) = stall_fleet("stall_kill") else { return };
    let limits = stalling_limits(f.fleet.root.layout);
    let mut args = vec!["spawn", "thrasher", "ws-001", "--on-stall", "kill", "--restart", "on-failure"];
    args.extend_from_slice(&limits);
    args.extend_from_slice(&["--", "python3", "-c", THRASH, "40", "40"]);
    f.run(&args).code(0);
    f.run(&["spawn", "calm", "ws-001", "--", "sh", "-c", "echo up; exec sleep 600"]).code(0);
    if !f.cgroup("thrasher").unified.join("memory.pressure").exists() {
        skip::skip("stall_kill", "the kernel has no pressure stall information (boot with psi=1)");
        return f.finish();
    }

    // Killed for the stall, and restarted: a restartable end.
    let restart = f.wait_event("thrasher", "restart_scheduled", Duration::from_secs(120));
    assert!(restart["cause"].as_str().is_some_and(|c| c.starts_with("stalled on memory")), "{restart}");
    let stall = f.events("thrasher").into_iter().find(|e| e["event"] == "stall").expect("a stall event before it");
    assert_eq!(stall["kill"], true);
    // Stopped for good while it waits or runs again: then its end is the operator's.
    f.wait_event("thrasher", "restart", Duration::from_secs(60));
    let calm = f.agent("calm");
    assert_eq!((calm["state"].as_str(), calm["stalled"].as_bool()), (Some("running"), Some(false)), "{calm:#}");
    f.finish();
}

#[test]
fn stall_flags_without_a_stall_watch_are_refused_with_one_line() {
    let Some(f) = TestFleet::new("stall_off") else { return };
    f.set_config("[agent]\nstall_after = \"off\"\n");
    f.run(&["spawn", "a", "ws-001", "--stall-signal", "SIGUSR2", "--", "true"])
        .code(2)
        .one_error_line("agent.stall_after is \"off\"");
    f.run(&["spawn", "a", "ws-001", "--stall-signal", "SIGKILL", "--", "true"])
        .code(2)
        .one_error_line("unknown signal");
    f.set_config("[agent]\nstall_after = \"1s\"\n");
    f.run(&["status"]).code(1).one_error_line("agent.stall_after");
    f.set_config("");
    assert!(f.status()["agents"].as_array().is_some_and(|a| a.is_empty()), "a refused spawn left a record");
    f.finish();
}
