//! The host around the fleet: kernel parameters, swap, mounts, and the cgroup tree above the
//! fleet root. `setup-host` changes these and `doctor` reads them; nothing else touches them.

pub mod ancestry;
pub mod mounts;
pub mod packaging;
pub mod swap;
pub mod sysctl;
pub mod systemd;
