//! fleetctl's integration tests: the real binary on real cgroups, each test's fleet nested
//! under the test process's own cgroup. Run as root; elsewhere each test says why it skipped.

mod util;

mod admission;
mod bad_input;
mod config_file;
mod faults;
mod fleets;
mod full_disk;
mod gc;
mod harness;
mod leases;
mod lifecycle;
mod limits;
mod observe;
mod orphans;
mod pressure;
mod records;
mod relief;
mod relief_work;
mod restart;
mod schema;
mod setup_host;
mod stall;
mod timeouts;
mod watch;
