//! The subcommands that only read: `status`, `memory`, `queue` and `events`.

use super::parse::{parse_duration, parse_state};
use clap::{Args, ValueEnum};
use fleet_core::{id::AgentId, state::AgentState};
use std::time::Duration;

/// `fleetctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show only these agents
    pub ids: Vec<AgentId>,
    /// Show only agents in these states (comma-separated)
    #[arg(long, value_delimiter = ',', value_parser = parse_state)]
    pub state: Vec<AgentState>,
    /// One JSON object: {"schema", "host", "agents"}
    #[arg(long)]
    pub json: bool,
}

/// `fleetctl queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// One JSON object: {"schema", "waiting"}
    #[arg(long)]
    pub json: bool,
}

/// `fleetctl memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Sort by this column, largest first
    #[arg(long, value_enum, default_value_t = MemorySort::Current)]
    pub sort: MemorySort,
    /// One JSON object: {"schema", "budget", "agents", "totals"}
    #[arg(long)]
    pub json: bool,
}

/// Columns `memory --sort` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MemorySort {
    /// Memory in use now
    Current,
    /// Percent of the agent's own limit
    Percent,
    /// Most ever used
    Peak,
    /// OOM kills
    OomKills,
    /// Memory pressure (PSI some avg10)
    Pressure,
    /// Agent id (ascending)
    Id,
}

/// `fleetctl events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this agent's events
    #[arg(allow_hyphen_values = true)]
    pub id: Option<AgentId>,
    /// Only events newer than this long ago (e.g. 1h, 30m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Keep printing new events as they are written
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line, as written in the journal
    #[arg(long)]
    pub json: bool,
}
