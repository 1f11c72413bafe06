//! Letting go of memory before the supervisor sleeps. It sleeps in `poll(2)` for minutes or
//! hours at a time, and what it touched while awake would stay resident all that time: the
//! code and constants it ran (the kernel maps 64 KiB around each page it faults in), the
//! output buffer, and freed heap.

use super::Supervisor;
use std::time::{Duration, Instant};

/// At most this often: each time costs the next wake-up a dozen page faults (to fault the
/// code back in), which a supervisor whose agent writes output all the time would
/// otherwise pay at each line.
const EVERY: Duration = Duration::from_secs(10);

/// When the supervisor last let go of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LetGo {
    /// Not before its housekeeping: until `spawn` has returned, every system call the
    /// supervisor makes is one `spawn`'s caller may wait for.
    NotYet,
    /// At the next sleep.
    Due,
    At(Instant),
}

impl LetGo {
    fn due(self, now: Instant) -> bool {
        match self {
            LetGo::NotYet => false,
            LetGo::Due => true,
            LetGo::At(then) => now.saturating_duration_since(then) >= EVERY,
        }
    }
}

impl Supervisor {
    /// Before a sleep, at most every [`EVERY`]: drops the output buffer and returns the
    /// heap's free memory to the kernel. Returns whether the code and read-only data pages
    /// are to be let go of too, which the poll does last thing before it sleeps
    /// ([`fleet_core::own_pages::release_clean_file_pages`]): code run after that faults its
    /// pages back in.
    pub(super) fn let_go_before_sleeping(&mut self, now: Instant) -> bool {
        if !self.let_go.due(now) {
            return false;
        }
        self.let_go = LetGo::At(now);
        self.output_buf = Vec::new();
        release_free_heap();
        true
    }
}

/// Returns the heap's free memory to the kernel.
fn release_free_heap() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
    // SAFETY: mi_collect only frees and purges mimalloc's own unused memory.
    #[cfg(target_env = "musl")]
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_let_go_of_after_housekeeping_and_then_at_most_every_ten_seconds() {
        let t0 = Instant::now();
        assert!(!LetGo::NotYet.due(t0), "not while spawn may still wait");
        assert!(LetGo::Due.due(t0));
        assert!(!LetGo::At(t0).due(t0 + Duration::from_secs(9)));
        assert!(LetGo::At(t0).due(t0 + EVERY));
    }
}
