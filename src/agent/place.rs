//! Atomic placement: a command is inside its agent's cgroup before its first instruction.
//!
//! The child writes `0` ("myself") into the agent's `cgroup.procs` in every hierarchy
//! between fork and exec. The files are opened in the parent beforehand, so the child only
//! calls `write(2)`, which is async-signal-safe; if any write fails, exec never happens and
//! `spawn()` returns the error. Nothing of an agent ever runs unlimited.
//!
//! The child also unblocks every signal: the supervisor blocks SIGTERM, SIGINT, SIGHUP and
//! SIGCHLD to read them from a signalfd, a blocked mask survives exec, and std does not reset
//! it. An agent that inherited it would never see a graceful SIGTERM (dash unblocks its own
//! mask at startup; busybox sh and most programs do not).
//!
//! The child also resets its OOM score to 0. Supervisors protect themselves with -1000, which
//! children inherit; an agent with -1000 can never be chosen by the OOM killer, so at its
//! memory limit the kernel would retry reclaim forever instead of ending it.

use anyhow::{Context, Result};
use fleet_core::cgroup::Cgroup;
use std::{
    fs::{File, OpenOptions},
    io,
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::Command,
};

/// Arranges for `cmd`'s child to join `cgroup`, with an ordinary OOM score, just before exec.
pub fn place_before_exec(cmd: &mut Command, cgroup: &Cgroup) -> Result<()> {
    let files = open_procs(cgroup)?;
    // SAFETY: the closure runs in the forked child, where only async-signal-safe calls are
    // allowed; `reset_inherited` and `join` make nothing else, and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            reset_inherited();
            join(&files)
        });
    }
    Ok(())
}

/// Opens `cgroup`'s `cgroup.procs` file in every hierarchy, for a child to [`join`].
pub fn open_procs(cgroup: &Cgroup) -> Result<Vec<File>> {
    cgroup
        .procs_files()
        .into_iter()
        .map(|path| {
            OpenOptions::new()
                .write(true)
                .create(false)
                .open(&path)
                .with_context(|| format!("cannot open {} to place the command", path.display()))
        })
        .collect()
}

/// Undoes what an agent must not inherit from its supervisor: a blocked signal mask and
/// the OOM protection. For the child between fork and exec.
///
/// # Safety
/// Async-signal-safe: sigprocmask(2), then open(2), write(2) and close(2).
pub unsafe fn reset_inherited() {
    // SAFETY: as documented above.
    unsafe {
        unblock_signals();
        reset_oom_score();
    }
}

/// Unblocks every signal. For the child between fork and exec: async-signal-safe,
/// sigprocmask(2) only.
pub fn unblock_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Writes `0` ("myself") into each opened `cgroup.procs` file: the calling process joins the
/// cgroup in every hierarchy. For the child between fork and exec.
///
/// # Safety
/// Async-signal-safe: write(2) only.
pub unsafe fn join(procs: &[File]) -> io::Result<()> {
    for file in procs {
        // SAFETY: a one-byte write from a static buffer to a descriptor we own.
        if unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets the calling process's `oom_score_adj` back to 0. Raising it needs no privilege, so this
/// cannot fail for a reason we could act on; it is best-effort.
///
/// # Safety
/// Async-signal-safe: open(2), write(2) and close(2) on a constant path.
pub unsafe fn reset_oom_score() {
    // SAFETY: see above; the path is a static NUL-terminated string.
    unsafe {
        let fd = libc::open(fleet_core::procs::SELF_OOM_SCORE_ADJ.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
}
