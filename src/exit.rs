//! Exit codes are a type, decided in `main`; commands never exit the process themselves.

use std::fmt;

/// How fleetctl ends. The numbers are a contract documented in `docs/exit-codes.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: it failed; the message says why.
    Failure,
    /// 2: the command line was wrong.
    Usage,
    /// 3: a bulk operation did part of its work.
    Partial,
    /// 4: the id is already running, or the name is in use.
    Busy,
    /// 5: no such agent.
    NoSuchAgent,
    /// 69: the fleet's service is not running: on a systemd host the fleet's scope is
    /// missing until `fleetctl.service` has run since boot (EX_UNAVAILABLE).
    Unavailable,
    /// 75: refused for now: memory is over the spawn threshold, or a lease pool (workspace
    /// slots, ports) is exhausted (EX_TEMPFAIL).
    Refused,
    /// 6: a `spawn --queue` taken out of line by `kill`; nothing was started.
    Withdrawn,
    /// 77: not permitted (EX_NOPERM).
    Permission,
    /// 130: interrupted by Ctrl-C.
    Interrupted,
    /// The agent's own exit code (`spawn --wait`, `run-in-cgroup`).
    Code(i32),
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Partial => 3,
            Exit::Busy => 4,
            Exit::NoSuchAgent => 5,
            Exit::Withdrawn => 6,
            Exit::Unavailable => 69,
            Exit::Refused => 75,
            Exit::Permission => 77,
            Exit::Interrupted => 130,
            Exit::Code(c) => c,
        }
    }
}

/// An error that ends the command with a specific exit code and one line for the operator.
#[derive(Debug)]
pub struct Fail {
    /// The exit code.
    pub exit: Exit,
    /// What was wrong and what to do.
    pub message: String,
}

impl Fail {
    /// Builds the error as an `anyhow::Error`, ready to return.
    pub fn error(exit: Exit, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Fail { exit, message: message.into() })
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// What to do about a permission error, after the error itself.
pub const NOT_PERMITTED: &str =
    "run fleetctl as root, or as the user root delegated the fleet to (sudo fleetctl setup-host --delegate $USER)";

/// The one line for an error: the error, and for a permission error that does not say
/// what to do (an OS error from deep down), [`NOT_PERMITTED`].
pub fn describe(err: &anyhow::Error) -> String {
    if exit_for(err) == Exit::Permission && err.downcast_ref::<Fail>().is_none() {
        format!("{err:#}; {NOT_PERMITTED}")
    } else {
        format!("{err:#}")
    }
}

/// A path the caller may not look into: exit 77 with what to do (never "not found").
pub fn denied(path: &std::path::Path) -> anyhow::Error {
    Fail::error(Exit::Permission, format!("cannot read {}: permission denied; {NOT_PERMITTED}", path.display()))
}

/// Decides the exit code for an error: a [`Fail`] says it; a permission error anywhere in
/// the chain is 77; anything else is 1.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    if let Some(fail) = err.downcast_ref::<Fail>() {
        return fail.exit;
    }
    let denied = err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
            || cause
                .downcast_ref::<fleet_core::Error>()
                .is_some_and(|e| e.io_kind() == Some(std::io::ErrorKind::PermissionDenied))
    });
    if denied { Exit::Permission } else { Exit::Failure }
}
