//! fleetctl's command line, defined once with clap's derive API. The binary parses it; xtask
//! generates shell completions and man pages from the same definition.

mod args;

pub use args::*;

use clap::CommandFactory;

/// The clap command, for generators.
pub fn command() -> clap::Command {
    Cli::command()
}
