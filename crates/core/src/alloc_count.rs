//! A global allocator for test builds that counts, per thread, the heap allocations made and
//! the most heap held at once, so a test can show that a hot path allocates nothing or that
//! a function holds a bounded buffer. It hands every call to the system allocator.
//!
//! The test builds of `fleet-core` and `fleetctl` install it (`#[global_allocator]`); it is
//! compiled for tests only (the `alloc-count` feature is a dev-dependency's).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

/// The system allocator, counted.
pub struct Counting;

thread_local! {
    /// Allocations so far, bytes held now (from when [`reset_peak`] was last called) and the
    /// most held at once since then.
    static STATS: Cell<(u64, i64, i64)> = const { Cell::new((0, 0, 0)) };
}

fn note(allocations: u64, bytes: i64) {
    // During thread teardown the counter may be gone; such calls are not a test's.
    let _ = STATS.try_with(|s| {
        let (n, held, peak) = s.get();
        let held = held + bytes;
        s.set((n + allocations, held, peak.max(held)));
    });
}

// SAFETY: every call goes to `System` unchanged; counting touches only a const-initialised
// thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(1, layout.size() as i64);
        // SAFETY: the caller keeps `GlobalAlloc::alloc`'s contract, which `System` has too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(1, layout.size() as i64);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, -(layout.size() as i64));
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(1, new_size as i64 - layout.size() as i64);
        // SAFETY: as for `dealloc`; the caller keeps `realloc`'s contract on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap allocations (and reallocations) this thread has made.
pub fn allocations() -> u64 {
    STATS.with(|s| s.get().0)
}

/// Starts measuring [`peak`] from now: what this thread holds now counts as nothing.
pub fn reset_peak() {
    STATS.with(|s| s.set((s.get().0, 0, 0)));
}

/// The most heap this thread held at once since [`reset_peak`], in bytes.
pub fn peak() -> u64 {
    STATS.with(|s| s.get().2.max(0) as u64)
}
