//! Named points where the fault-injection tests kill fleetctl for real, at the one moment a
//! signal sent from outside could only hit by luck (`FLEETCTL_FAILPOINT=NAME`), or stop it
//! there (`NAME:stop`) to race another command against that moment.
//!
//! A hit is a real SIGKILL of this process: nothing runs after it, no destructor, no undo,
//! exactly as when an operator's `kill -9` or the OOM killer lands there. (`:stop` raises
//! SIGSTOP; the test sends SIGCONT.) Unset (always, in production) it costs one environment
//! lookup.

/// `spawn`, after the agent's cgroup, record and scratch dir exist and before its
/// supervisor starts.
pub const SPAWN_AFTER_CGROUP: &str = "spawn-after-cgroup";

/// `spawn`, once its agent runs (the record says `running`) and before it reports, or with
/// `--wait` follows the agent.
pub const SPAWN_AFTER_GO: &str = "spawn-after-go";

/// `spawn --queue`, once a waiter is admitted (the ledger has its entry) and before it
/// takes its id and leaves the line.
pub const QUEUE_ADMITTED: &str = "queue-admitted";

/// `spawn --queue`, a waiter that has become the head of the line (or joined it as the
/// head after a refusal), before it makes the inotify watch it then sleeps on.
pub const QUEUE_HEAD: &str = "queue-head";

/// `kill` (or relief), after the agent's supervisor has recorded the end and let go of the
/// id, before the cgroup is removed.
pub const KILL_AFTER_SUPERVISOR: &str = "kill-after-supervisor";

/// `gc`, holding an orphan's lock, before it records that the orphan ended unobserved.
pub const GC_SETTLE: &str = "gc-settle";

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
