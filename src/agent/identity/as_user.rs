//! Asking the kernel as another user, without becoming that user: a child switches and
//! acts, and reports through its exit code.

use super::Credentials;

/// SIGKILLs every process that still runs as `uid` (an agent whose supervisor was killed,
/// or what one left behind), so the next agent given the uid can neither signal them nor be
/// watched by them: a child becomes `uid` and sends SIGKILL to every process it may signal
/// (`kill(-1)`: those whose real or saved uid is `uid`), and `spawn` waits for it. A killed
/// process runs no more code; it may linger as a zombie until its parent reaps it.
pub fn end_leftovers(uid: u32) -> std::io::Result<()> {
    let who = Credentials { uid, gid: uid, groups: Vec::new() };
    // Not a capability left after the switch (`assume` drops them): kill(-1) with CAP_KILL
    // would end every process of the host. ESRCH: nothing ran as the uid.
    // SAFETY (both): kill(2) with integers, and a read of errno, are all the child does;
    // spawn has installed no signal handler yet.
    let kill_all = || unsafe { libc::kill(-1, libc::SIGKILL) == 0 || *libc::__errno_location() == libc::ESRCH };
    match unsafe { in_child_as(&who, kill_all) }? {
        true => Ok(()),
        false => Err(std::io::Error::other(format!("the child that ends uid {uid}'s processes could not"))),
    }
}

/// Runs `then` in a child that has become `who` for good ([`Credentials::assume`]): what that
/// user may do, found out without switching this process. True when the switch and `then`
/// both succeeded.
///
/// The child borrows this process's memory (`CLONE_VM | CLONE_VFORK`, as posix_spawn(3)
/// starts a command) instead of copying its page tables, which a fork did on every spawn
/// that runs its agent as another user (to ask whether that user may write the workspace).
/// Credentials belong to each task, so the switch stays the child's; the dumpable flag
/// belongs to the memory, which the switch clears, so it is put back after.
///
/// # Safety
///
/// `then` runs in the child, on this process's memory while this thread is suspended: it
/// may only make system calls on what exists already (no allocation, no lock), and no
/// signal handler may be installed (one would run in the child, on the same memory).
pub unsafe fn in_child_as(who: &Credentials, then: impl FnOnce() -> bool) -> std::io::Result<bool> {
    // On this thread's stack, as posix_spawn(3) does: a heap block this size was zeroed page
    // by page on every spawn. The child needs a few hundred bytes of it (two system calls);
    // what lies below it is this suspended thread's own frames.
    let mut stack = [0u8; CHILD_STACK];
    let mut then = Some(then);
    let child = Box::new(move || -> isize {
        let ok = who.assume() && then.take().is_some_and(|then| then());
        // SAFETY: _exit(2) ends the child at once; nothing it borrowed is released twice.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    });
    let flags = nix::sched::CloneFlags::CLONE_VM | nix::sched::CloneFlags::CLONE_VFORK;
    // SAFETY: prctl with integer arguments only.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    // SAFETY: the child runs on `stack`, makes system calls on memory prepared before the
    // clone (`assume` is raw calls; `then` as the caller promised) and leaves through
    // `_exit`; CLONE_VFORK keeps this thread, and so everything the child borrows,
    // suspended until then. Another thread may run meanwhile: the child touches nothing of
    // theirs, only its stack and what this suspended thread owns.
    let child = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) };
    if dumpable == 1 {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    Ok(matches!(nix::sys::wait::waitpid(child?, None)?, nix::sys::wait::WaitStatus::Exited(_, 0)))
}

/// The stack of [`in_child_as`]'s child.
const CHILD_STACK: usize = 8 << 10;
