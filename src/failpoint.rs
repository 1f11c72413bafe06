//! Named points where the fault-injection tests kill fleetctl for real, at the one moment a
//! signal sent from outside could only hit by luck (`FLEETCTL_FAILPOINT=NAME`), or stop it
//! there (`NAME:stop`) to race another command against that moment.
//!
//! A hit is a real SIGKILL of this process: nothing runs after it, no destructor, no undo,
//! exactly as when an operator's `kill -9` or the OOM killer lands there. (`:stop` raises
//! SIGSTOP; the test sends SIGCONT.) Unset (always, in production) it costs one environment
//! lookup. One test knob lives here too, for the same reason: [`queue_recheck`].

/// `spawn`, after the agent's cgroup, record and scratch dir exist and before its
/// supervisor starts.
pub const SPAWN_AFTER_CGROUP: &str = "spawn-after-cgroup";

/// `spawn`, once its agent runs (the record says `running`) and before it reports, or with
/// `--wait` follows the agent.
pub const SPAWN_AFTER_GO: &str = "spawn-after-go";

/// A supervisor whose agent's run is over for good, after it has woken the spawns in line
/// and before it exits.
pub const SUPERVISOR_END: &str = "supervisor-end";

/// `spawn --queue`, once a waiter is admitted (the ledger has its entry) and before it
/// takes its id and leaves the line.
pub const QUEUE_ADMITTED: &str = "queue-admitted";

/// `spawn --queue`, once an admitted waiter has left the line and before it writes its
/// agent's record.
pub const QUEUE_LEFT: &str = "queue-left";

/// `kill`, once it knows the waiters it will take out of line (`-l`, `--all`: listed) and
/// before it takes them out.
pub const KILL_LISTED_WAITERS: &str = "kill-listed-waiters";

/// `spawn --queue`, a waiter that has become the head of the line (or joined it as the
/// head after a refusal), before it makes the inotify watch it then sleeps on.
pub const QUEUE_HEAD: &str = "queue-head";

/// `kill` (or relief), after the agent's supervisor has recorded the end and let go of the
/// id, before the cgroup is removed.
pub const KILL_AFTER_SUPERVISOR: &str = "kill-after-supervisor";

/// `gc`, holding an orphan's lock, before it records that the orphan ended unobserved.
pub const GC_SETTLE: &str = "gc-settle";

/// `spawn --queue`'s safety re-check of a waiter nothing woke: `default`, unless a test sets
/// `FLEETCTL_QUEUE_RECHECK_SECS` (a huge one, so that a wake that should have come and did
/// not fails the test at its `--queue` timeout instead of passing a re-check late).
pub fn queue_recheck(default: std::time::Duration) -> std::time::Duration {
    std::env::var("FLEETCTL_QUEUE_RECHECK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(default, std::time::Duration::from_secs)
}

/// Kills (or stops) this process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    use nix::sys::signal::{Signal, raise};
    let Some(armed) = std::env::var_os("FLEETCTL_FAILPOINT") else { return };
    if armed == name {
        let _ = raise(Signal::SIGKILL);
    } else if armed.to_str().and_then(|a| a.strip_suffix(":stop")) == Some(name) {
        let _ = raise(Signal::SIGSTOP);
    }
}
