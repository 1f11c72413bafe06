//! fleetctl's command line, defined once with clap's derive API. The binary parses it; xtask
//! generates shell completions and man pages from the same definition.

mod args;

pub use args::*;

use clap::{CommandFactory, Parser};
use std::ffi::OsString;

/// The clap command, for generators.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses fleetctl's command line. `fleetctl spawn …` is parsed by [`SpawnCli`], which builds
/// only spawn's arguments: building all fourteen subcommands' definitions was about half of
/// parsing, a visible part of spawn's latency, a benchmark goal. Every other command line, and
/// a spawn with a global flag before `spawn`, goes through [`Cli`]; both give the same result.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.get(1).is_some_and(|a| a == "spawn") {
        SpawnCli::try_parse_from(args).map(Cli::from)
    } else {
        Cli::try_parse_from(args)
    }
}
