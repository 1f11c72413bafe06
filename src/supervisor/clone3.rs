//! clone3(2) with `CLONE_INTO_CGROUP`: a new process born in a cgroup2 directory, without the
//! `cgroup.procs` write whose write lock on the kernel's migration lock waits for an RCU grace
//! period (without `favordynmods`). The agent is born in its cgroup this way on pure cgroup v2
//! ([`super::launch`]); the supervisor is born in the fleet's `supervisors/` on every layout,
//! so that it is never a process of `spawn`'s caller (an ssh session, an orchestrator's unit),
//! not even for the moment after `spawn` returns.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The kernel's `struct clone_args` up to `cgroup` (version 2, Linux 5.7), declared here
/// because libc has it for some targets only.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What [`clone_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloned {
    /// In the child, born in the cgroup.
    Child,
    /// In the parent: the child's pid.
    Parent(i32),
    /// Nothing: the kernel cannot (before 5.7) or refuses the cgroup. The caller starts the
    /// process another way.
    Refused,
}

/// Clones the calling thread into the cgroup directory `dir`, with `extra` flags
/// (`CLONE_VFORK` for the agent) and SIGCHLD for its end.
///
/// # Safety
/// As fork(2): the child is a copy of the calling thread alone, so in a threaded process it
/// must make only async-signal-safe calls; and, with `CLONE_VFORK`, it shares nothing but
/// must end in exec or `_exit` before the parent runs on.
pub unsafe fn clone_into(dir: BorrowedFd, extra: u64) -> Cloned {
    let mut args = CloneArgs {
        flags: extra | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3(2) with no stack given: like fork(2), the child returns here on a copy
    // of this thread's stack; the caller's contract covers what it does next.
    match unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) } {
        0 => Cloned::Child,
        pid if pid > 0 => Cloned::Parent(pid as i32),
        _ => Cloned::Refused,
    }
}
