//! The only part of fleetctl that touches `/sys/fs/cgroup` and `/proc`.
//!
//! Every entry point takes its roots as parameters (the cgroup mount points, the proc root,
//! the state and log directories), so unit tests run against a fake tree in a temp dir and
//! integration tests against a real subtree nested under the test's own cgroup.
#![deny(missing_docs)]

pub mod admission;
#[cfg(any(test, feature = "alloc-count"))]
pub mod alloc_count;
pub mod cgroup;
pub mod error;
pub mod event;
pub mod host;
pub mod id;
pub mod journal;
pub mod journal_counts;
pub mod labels;
pub mod lease;
pub mod liveness;
pub mod lock;
pub mod meminfo;
pub mod own_pages;
pub mod paths;
pub mod procs;
pub mod queue;
pub mod roots;
pub mod size;
pub mod state;
pub mod timefmt;

pub use error::{Error, Result};

/// Test builds count allocations, for the tests that show a path allocates nothing or little.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;
