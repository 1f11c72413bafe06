//! `fleetctl logs ID [-f] [-n N]`: an agent's output, from the start or its last lines, and
//! with `-f` what it prints until it ends (the following is `agent::follow`'s, which
//! `spawn --wait` shares). `-l SELECTOR` prints every matching agent's log in turn.

use crate::{
    agent::{
        follow::{FOLLOW_INTERVAL, Follower},
        view,
    },
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::{Context, Result};
use fleet_cli::LogsArgs;
use fleet_core::id::AgentId;
use std::path::Path;

/// Entry point.
pub fn run(ctx: &Ctx, args: LogsArgs) -> Result<Exit> {
    let Some(selector) = &args.selector else {
        let id = args.id.as_ref().context("an agent id or -l SELECTOR is required")?;
        return show(ctx, id, &args);
    };
    // Several logs, one after the other, each under a header as `tail` prints them.
    for id in crate::agent::select::matching_ids(ctx, selector)? {
        println!("==> {id} <==");
        show(ctx, &id, &args)?;
    }
    Ok(Exit::Ok)
}

/// Prints agent `id`'s log (its last lines, and following it) as `args` say.
fn show(ctx: &Ctx, id: &AgentId, args: &LogsArgs) -> Result<Exit> {
    let path = ctx.dirs.log_path(id);
    let known = ctx.dirs.agent_dir(id).is_dir();
    if !path.exists() {
        if !known {
            return Err(Fail::error(Exit::NoSuchAgent, format!("no such agent: {id} (no log at {})", path.display())));
        }
        // An agent that has printed nothing yet: its supervisor creates the log at the first
        // output, or 50 ms after the start.
        if !(args.follow && wait_for_log(ctx, id, &path)) {
            return Ok(Exit::Ok);
        }
    }
    let mut out = std::io::stdout().lock();
    let offset = match args.lines {
        Some(n) => tail_offset(&path, n)?,
        None => 0,
    };
    let mut follower = Follower::open(&path, offset)?;
    follower.copy_new(&mut out)?;
    if args.follow {
        while agent_alive(ctx, id) {
            std::thread::sleep(FOLLOW_INTERVAL);
            follower.copy_new(&mut out)?;
        }
        follower.copy_new(&mut out)?;
    }
    Ok(Exit::Ok)
}

/// Waits while the agent runs for its log to appear; false if it never did.
fn wait_for_log(ctx: &Ctx, id: &AgentId, path: &Path) -> bool {
    while !path.exists() && agent_alive(ctx, id) {
        std::thread::sleep(FOLLOW_INTERVAL);
    }
    path.exists()
}

fn agent_alive(ctx: &Ctx, id: &AgentId) -> bool {
    view::load_one(ctx, id).ok().flatten().is_some_and(|v| v.supervised)
}

/// The byte offset where the last `n` lines of the file begin.
fn tail_offset(path: &Path, n: usize) -> Result<u64> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if n == 0 {
        return Ok(data.len() as u64);
    }
    let body = data.strip_suffix(b"\n").unwrap_or(&data);
    let start = body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(n - 1).map(|(i, _)| i + 1).unwrap_or(0);
    Ok(start as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_finds_the_last_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a.log");
        std::fs::write(&path, "one\ntwo\nthree\n").expect("write");
        assert_eq!(tail_offset(&path, 1).expect("tail"), 8);
        assert_eq!(tail_offset(&path, 2).expect("tail"), 4);
        assert_eq!(tail_offset(&path, 9).expect("tail"), 0);
        assert_eq!(tail_offset(&path, 0).expect("tail"), 14);
    }
}
