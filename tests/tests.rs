//! fleetctl's integration tests: the real binary on real cgroups, each test's fleet nested
//! under the test process's own cgroup. Run as root; elsewhere each test says why it skipped.

mod util;

mod admission;
mod bad_input;
mod bulk;
mod config_file;
mod containment;
mod events_text;
mod faults;
mod fleets;
mod full_disk;
mod gc;
mod harness;
mod inputs;
mod journal_rotation;
mod leases;
mod lifecycle;
mod limits;
mod logs;
mod observe;
mod orphans;
mod outputs;
mod permissions;
mod pressure;
mod queue;
mod queue_races;
mod queue_scale;
mod quickstart;
mod records;
mod relief;
mod relief_work;
mod restart;
mod schema;
mod setup_host;
mod setup_host_config;
mod stall;
mod stall_trigger;
mod systemd_host;
mod tables;
mod timeouts;
mod watch;
