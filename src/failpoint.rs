//! Named points where the fault-injection tests kill fleetctl for real, at the one moment a
//! signal sent from outside could only hit by luck (`FLEETCTL_FAILPOINT=NAME`).
//!
//! A hit is a real SIGKILL of this process: nothing runs after it, no destructor, no undo,
//! exactly as when an operator's `kill -9` or the OOM killer lands there. Unset (always, in
//! production) it costs one environment lookup.

/// `spawn`, after the agent's cgroup, record and scratch dir exist and before its
/// supervisor starts.
pub const SPAWN_AFTER_CGROUP: &str = "spawn-after-cgroup";

/// Kills this process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if std::env::var_os("FLEETCTL_FAILPOINT").is_some_and(|v| v == name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
