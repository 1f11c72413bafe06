//! The subcommands that only read: `status`, `memory`, `queue` and `events`.

use super::parse::{parse_duration, parse_selector, parse_state};
use clap::{Args, ValueEnum};
use fleet_core::{id::AgentId, labels::Selector, state::AgentState};
use std::time::Duration;

/// `fleetctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show only these agents
    pub ids: Vec<AgentId>,
    /// Show only agents in these states (comma-separated)
    #[arg(long, value_delimiter = ',', value_parser = parse_state)]
    pub state: Vec<AgentState>,
    /// Show only agents whose labels match (e.g. batch=42, 'team in (a,b)', 'batch=42,tier!=gpu')
    #[arg(short = 'l', long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub selector: Option<Selector>,
    /// One JSON object: {"schema", "host", "agents"}
    #[arg(long)]
    pub json: bool,
    /// How the table is laid out.
    #[command(flatten)]
    pub table: TableArgs,
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
    /// Show only agents whose labels match (e.g. batch=42)
    #[arg(short = 'l', long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub selector: Option<Selector>,
    /// One JSON object: {"schema", "budget", "agents", "totals"}
    #[arg(long)]
    pub json: bool,
    /// How the table is laid out.
    #[command(flatten)]
    pub table: TableArgs,
}

/// The table options `status` and `memory` share.
#[derive(Debug, Clone, Default, Args)]
pub struct TableArgs {
    /// wide: every column, none dropped or cut to fit the terminal's width (or COLUMNS)
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<TableOutput>,
    /// Print the rows only: no header or summary lines (for scripts)
    #[arg(long)]
    pub no_headers: bool,
}

impl TableArgs {
    /// Whether `-o wide` was given.
    pub fn wide(&self) -> bool {
        self.output == Some(TableOutput::Wide)
    }
}

/// `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableOutput {
    /// Every column
    Wide,
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
    #[arg(allow_hyphen_values = true, conflicts_with = "selector")]
    pub id: Option<AgentId>,
    /// Only events of agents whose labels match (e.g. batch=42)
    #[arg(short = 'l', long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub selector: Option<Selector>,
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
