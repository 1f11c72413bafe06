//! The memory a launch's child uses besides what it shares with the supervisor: its own
//! stack (for the `CLONE_VM` child) and a shared page for its failure report (which a
//! clone3 child, a copy of the supervisor, must reach too).

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicI32, Ordering};

/// The child's stack. execvpe builds each candidate path on the stack (at most PATH_MAX plus
/// a name), and glibc's copies a script's argv there for /bin/sh.
const STACK_SIZE: usize = 256 << 10;

/// A failure's step and errno, written by the child and read by the supervisor after the
/// exec (or exit): a shared page, so a child born of clone3 (a copy of the supervisor's
/// memory) reaches the same place as one that borrows it.
pub(super) struct Report {
    page: std::ptr::NonNull<AtomicI32>,
}

const REPORT_SIZE: usize = 4096;

impl Report {
    pub(super) fn new() -> Result<Report> {
        // SAFETY: a fresh shared anonymous mapping, zeroed by the kernel; nothing else refers to it.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REPORT_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("cannot map a page for the agent's start");
        }
        Ok(Report { page: std::ptr::NonNull::new(page.cast()).context("mmap returned null")? })
    }

    fn slots(&self) -> (&AtomicI32, &AtomicI32) {
        // SAFETY: the page holds at least two aligned i32s, zeroed or written only atomically,
        // for as long as `self` lives.
        unsafe { (self.page.as_ref(), &*self.page.as_ptr().add(1)) }
    }

    pub(super) fn clear(&self) {
        self.slots().0.store(-1, Ordering::Relaxed);
    }

    /// For the child: async-signal-safe, two stores.
    pub(super) fn fail(&self, step: usize, errno: i32) {
        let (step_slot, errno_slot) = self.slots();
        errno_slot.store(errno, Ordering::Relaxed);
        step_slot.store(step as i32, Ordering::Relaxed);
    }

    pub(super) fn failure(&self) -> Option<(usize, i32)> {
        let (step, errno) = self.slots();
        usize::try_from(step.load(Ordering::Relaxed)).ok().map(|s| (s, errno.load(Ordering::Relaxed)))
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; the child has exec'd or exited.
        unsafe { libc::munmap(self.page.as_ptr().cast(), REPORT_SIZE) };
    }
}

/// The child's stack: its own mapping, with an inaccessible page below it, so an overflow
/// faults instead of writing into the supervisor's memory.
pub(super) struct Stack {
    base: std::ptr::NonNull<libc::c_void>,
}

const GUARD: usize = 4096;

impl Stack {
    pub(super) fn new() -> Result<Stack> {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if p == libc::MAP_FAILED || libc::mprotect(p, GUARD, libc::PROT_NONE) != 0 {
                return Err(std::io::Error::last_os_error()).context("cannot map a stack for the agent's start");
            }
            p
        };
        Ok(Stack { base: std::ptr::NonNull::new(base).context("mmap returned null")? })
    }

    pub(super) fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping above the guard page is ours, readable and writable, for as long
        // as `self` lives.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().cast::<u8>().add(GUARD), STACK_SIZE) }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; the child has exec'd or exited.
        unsafe { libc::munmap(self.base.as_ptr(), STACK_SIZE + GUARD) };
    }
}
