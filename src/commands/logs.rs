//! `fleetctl logs ID [-f] [-n N]`: an agent's output, from the start or its last lines, and
//! with `-f` what it prints until it ends (the following is `agent::follow`'s, which
//! `spawn --wait` shares). `-l SELECTOR` prints every matching agent's log in turn. The
//! rotated `ID.log.1` comes first: the two files are one log.

use crate::out::outln;
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
use std::{
    fs::File,
    io::{Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Entry point.
pub fn run(ctx: &Ctx, args: LogsArgs) -> Result<Exit> {
    let Some(selector) = &args.selector else {
        let id = args.id.as_ref().context("an agent id or -l SELECTOR is required")?;
        return show(ctx, id, &args);
    };
    // Several logs, one after the other, each under a header as `tail` prints them.
    for id in crate::agent::select::matching_ids(ctx, selector)? {
        outln!("==> {id} <==")?;
        show(ctx, &id, &args)?;
    }
    Ok(Exit::Ok)
}

/// Prints agent `id`'s log (its last lines, and following it) as `args` say.
fn show(ctx: &Ctx, id: &AgentId, args: &LogsArgs) -> Result<Exit> {
    let path = ctx.dirs.log_path(id);
    let known = crate::agent::readable_exists(&ctx.dirs.agent_dir(id))?;
    if !crate::agent::readable_exists(&path)? {
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
    let old = rotated(&path);
    let (old_from, from) = match args.lines {
        Some(n) => tail_offsets(&old, &path, n)?,
        None => (Some(0), 0),
    };
    // The current file first: rotated meanwhile, it is the old one we then skip.
    let mut follower = Follower::open(&path, from)?;
    if let Some(old_from) = old_from {
        copy_rotated(&old, old_from, follower.inode(), &mut out)?;
    }
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

/// `ID.log.1`, the log's older part.
fn rotated(path: &Path) -> PathBuf {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    PathBuf::from(old)
}

/// Copies the rotated part from `offset`, unless it is gone or is the file `current` (a
/// rotation between the two opens).
fn copy_rotated(old: &Path, offset: u64, current: u64, out: &mut impl Write) -> Result<()> {
    let Ok(mut file) = File::open(old) else { return Ok(()) };
    if file.metadata()?.ino() == current {
        return Ok(());
    }
    file.seek(SeekFrom::Start(offset))?;
    std::io::copy(&mut file, out).with_context(|| format!("cannot copy {}", old.display()))?;
    Ok(())
}

/// Where the last `n` lines begin: in the rotated part (`Some` offset; all of the current
/// file follows) or in the current file.
fn tail_offsets(old: &Path, current: &Path, n: usize) -> Result<(Option<u64>, u64)> {
    let data = std::fs::read(current).with_context(|| format!("cannot read {}", current.display()))?;
    let (start, found) = tail_start(&data, n);
    if found == n {
        return Ok((None, start as u64));
    }
    let older = std::fs::read(old).unwrap_or_default();
    Ok((Some(tail_start(&older, n - found).0 as u64), 0))
}

/// The offset in `data` where its last `n` lines begin, and how many of them it has.
fn tail_start(data: &[u8], n: usize) -> (usize, usize) {
    if n == 0 {
        return (data.len(), 0);
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let breaks: Vec<usize> =
        body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').map(|(i, _)| i).take(n).collect();
    match breaks.get(n - 1) {
        Some(i) => (i + 1, n),
        None => (0, if data.is_empty() { 0 } else { breaks.len() + 1 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_finds_the_last_lines() {
        let data = b"one\ntwo\nthree\n";
        assert_eq!(tail_start(data, 1), (8, 1));
        assert_eq!(tail_start(data, 2), (4, 2));
        assert_eq!(tail_start(data, 3), (0, 3));
        assert_eq!(tail_start(data, 9), (0, 3));
        assert_eq!(tail_start(data, 0), (14, 0));
        assert_eq!(tail_start(b"", 2), (0, 0));
        assert_eq!(tail_start(b"partial", 2), (0, 1));
    }

    #[test]
    fn the_tail_reaches_into_the_rotated_part() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (old, cur) = (tmp.path().join("a.log.1"), tmp.path().join("a.log"));
        std::fs::write(&old, "one\ntwo\nthree\n").expect("write");
        std::fs::write(&cur, "four\n").expect("write");
        assert_eq!(tail_offsets(&old, &cur, 1).expect("tail"), (None, 0));
        assert_eq!(tail_offsets(&old, &cur, 3).expect("tail"), (Some(4), 0));
        std::fs::remove_file(&old).expect("rm");
        assert_eq!(tail_offsets(&old, &cur, 3).expect("tail"), (Some(0), 0));
    }
}
