//! `fleetctl status [ID…] [--state S,…] [-l SELECTOR] [--json]`: the host and every agent.

use crate::out::out;
use crate::{
    agent::sample::{
        Detail,
        status::{Shown, report},
    },
    context::Ctx,
    exit::Exit,
    render::status::render_table,
};
use anyhow::Result;
use fleet_cli::StatusArgs;

/// Entry point.
pub fn run(ctx: &Ctx, args: StatusArgs) -> Result<Exit> {
    let shown = Shown { ids: &args.ids, states: &args.state, selector: args.selector.as_ref() };
    let report = report(ctx, shown, Detail::Status)?;
    if args.json {
        crate::out::json(&report)?;
    } else {
        out!("{}", render_table(&report, crate::terminal::layout(args.table.wide(), args.table.no_headers)))?;
    }
    // A named agent that is not there is most likely a typo: say so, as `kill` does, after
    // showing the ones that are. (An id that --state filtered out is not unknown.)
    let unknown: Vec<&str> =
        args.ids.iter().filter(|id| !crate::agent::exists(ctx, id)).map(|id| id.as_str()).collect();
    // A selector that matches no agent at all (not one --state filtered out) is a typo too.
    if let Some(selector) = &args.selector
        && report.agents.is_empty()
        && crate::agent::select::matching(ctx, selector)?.is_empty()
    {
        return Err(crate::agent::select::none_match(selector));
    }
    if !unknown.is_empty() {
        let exit = if unknown.len() == args.ids.len() { Exit::NoSuchAgent } else { Exit::Partial };
        let message = format!("no such agent: {} (see `fleetctl status`)", unknown.join(", "));
        return Err(crate::exit::Fail::error(exit, message));
    }
    Ok(Exit::Ok)
}
