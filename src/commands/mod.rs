//! One module per subcommand, each with one entry function `run(ctx, args) -> Result<Exit>`.

pub mod cgroup_create;
pub mod doctor;
pub mod events;
pub mod gc;
pub mod kill;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod queue;
pub mod relief;
pub mod restart;
pub mod run_in_cgroup;
pub mod setup_host;
pub mod spawn;
pub mod status;
pub mod watch;
