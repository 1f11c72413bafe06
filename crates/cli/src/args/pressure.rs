//! The subcommands that act on memory pressure: `relief` and `watch`, and the victim options
//! they share.

use super::parse::{parse_duration, parse_interval, parse_protected, parse_target};
use clap::{Args, ValueEnum};
use fleet_core::{id::AgentId, labels::Selector};
use std::{path::PathBuf, time::Duration};

/// `fleetctl relief`.
#[derive(Debug, Args)]
pub struct ReliefArgs {
    /// Kill until fleet memory use is below this percentage of the budget (1-99)
    #[arg(value_parser = parse_target, allow_hyphen_values = true)]
    pub target: u8,
    /// Which agents to kill, and how.
    #[command(flatten)]
    pub victims: VictimArgs,
    /// Print the plan (victims, memory freed, projected use) and kill nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan and the kills as one JSON document (docs/relief-json.md)
    #[arg(long)]
    pub json: bool,
}

/// How relief and the watcher's guard choose and stop victims: one definition, so the two
/// take the same options. Their defaults differ (`WatchArgs` overrides them).
#[derive(Debug, Clone, Args)]
pub struct VictimArgs {
    /// Which agents go first
    #[arg(long, value_enum, default_value_t = ReliefOrder::Largest)]
    pub order: ReliefOrder,
    /// Never kill this agent, or the agents whose labels match a selector such as batch=42
    /// (repeatable); agents spawned with --protect are always spared
    #[arg(long, value_name = "ID|SELECTOR", value_parser = parse_protected)]
    pub protect: Vec<Protected>,
    /// Time between SIGTERM and the kill, per victim
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub grace: Duration,
    /// Time a victim spawned with --save-signal has to save its state after that signal,
    /// before SIGTERM; given only while the fleet is below 98 % of its budget; 0s: never
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub save_grace: Duration,
}

/// What `--protect` names: one agent, or every agent a selector matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protected {
    /// An id.
    Id(AgentId),
    /// A label selector (any value with '=', '!', '(' or a comma).
    Selector(Selector),
}

/// The order relief and the guard pick victims in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReliefOrder {
    /// Largest memory first: the fewest kills that reach the target
    Largest,
    /// Most recently started first: the least work lost
    Newest,
    /// Longest running first
    Oldest,
    /// The agent that grew the most over the last 10 s first (then largest): the runaway.
    /// Only the watcher, which samples, knows growth
    #[value(alias = "growing")]
    Growth,
    /// The most memory freed per minute of run time lost first: the agents whose kill frees
    /// much and throws away little work
    LeastWork,
}

/// `fleetctl watch`.
#[derive(Debug, Args)]
#[command(
    mut_arg("order", |a| a.default_value("growth").requires("auto_kill")),
    mut_arg("grace", |a| a.default_value("0s").requires("auto_kill")),
    mut_arg("protect", |a| a.requires("auto_kill")),
    mut_arg("save_grace", |a| a.default_value("1s").requires("auto_kill"))
)]
pub struct WatchArgs {
    /// At or above the kill threshold (95 %), kill agents (by --order, protected spared)
    /// until use is below the spawn threshold (85 %)
    #[arg(long)]
    pub auto_kill: bool,
    /// How often to refresh when memory is calm (at least 100ms); it samples faster as
    /// headroom shrinks
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, default_value = "1s")]
    pub interval: Duration,
    /// Rewrite this file atomically each tick with `fleetctl metrics` output (for
    /// node_exporter's textfile collector)
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Which agents the guard kills, and how (with --auto-kill).
    #[command(flatten)]
    pub victims: VictimArgs,
}
