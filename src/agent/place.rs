//! What an agent's processes must not inherit from whoever starts them, and placing a command
//! started through std's `Command` (`run-in-cgroup`). The placing itself is
//! [`fleet_core::cgroup::Placement`]'s: the command is inside the agent's cgroup before its
//! first instruction, or it never runs.
//!
//! The child also unblocks every signal: the supervisor blocks SIGTERM, SIGINT, SIGHUP and
//! SIGCHLD to read them from a signalfd, a blocked mask survives exec, and std does not reset
//! it. An agent that inherited it would never see a graceful SIGTERM (dash unblocks its own
//! mask at startup; busybox sh and most programs do not).

use anyhow::Result;
use fleet_core::cgroup::{Born, Cgroup, Placement};
use std::{io, os::unix::process::CommandExt, path::Path, process::Command};

/// Arranges for `cmd`'s child to join `cgroup`, with an ordinary OOM score and no blocked
/// signal, just before exec. std forks, so the child joins even where it could be born in the
/// cgroup.
pub fn place_before_exec(cmd: &mut Command, cgroup: &Cgroup, proc_root: &Path) -> Result<()> {
    let mut placement = Placement::open(cgroup, proc_root)?;
    placement.set_oom_score_reset(true);
    // SAFETY: the closure runs in the forked child, where only async-signal-safe calls are
    // allowed; `unblock_signals` and `enter` make nothing else, and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            unblock_signals();
            placement.enter(Born::Outside).map_err(|refused| io::Error::from_raw_os_error(refused.errno))
        });
    }
    Ok(())
}

/// Unblocks every signal. For the child between fork and exec: async-signal-safe,
/// sigprocmask(2) only.
pub fn unblock_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
