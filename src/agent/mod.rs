//! What every command knows about agents: the supervisor's plan, how a process is placed in
//! an agent's cgroup, how an agent's live state is derived, and how an agent is stopped.

pub mod place;
pub mod plan;
pub mod relief;
pub mod stop;
pub mod usage;
pub mod view;
