//! `fleetctl gc [--older-than 24h] [--logs] [--dry-run]`: collect what no live process owns.
//!
//! Ownership is a held lock (a live supervisor) or processes in a cgroup, never a file's
//! say-so, so gc only ever removes:
//! - records of agents that ended longer ago than `--older-than` (and with `--logs`, their
//!   logs), with their lock files;
//! - records that say "running" whose supervisor is gone and whose cgroup is empty: the agent
//!   ended unobserved; gc records that first, so the end is not lost, then treats it as ended
//!   now;
//! - agent directories holding only an unheld lock (a spawn killed before its first record);
//! - empty cgroups under `agents/` that no live supervisor holds;
//! - scratch directories whose agent has no supervisor and no processes (tmpfs pages left
//!   there would leak host memory), only in this fleet's own directory of the scratch root:
//!   other fleets may share the root, and what they keep there is theirs.
//!
//! An orphan that still has processes is left alone: ending it is `kill`'s decision.

use crate::{
    agent::{stop, view},
    context::Ctx,
    exit::Exit,
};
use anyhow::{Context, Result};
use fleet_cli::GcArgs;
use fleet_core::{id::AgentId, lock::Lock, paths::remove_dir_tree};
use std::time::SystemTime;

/// Entry point.
pub fn run(ctx: &Ctx, args: GcArgs) -> Result<Exit> {
    let verb = if args.dry_run { "would collect" } else { "collected" };
    let mut collected = 0;
    let (views, _) = view::load_all(ctx)?;
    for v in views {
        let id = v.record.id.clone();
        // An orphan, running or ended unobserved (shown `failed` until its end is recorded).
        if v.unsettled() {
            // Held while gc settles and removes, so a spawn of the id cannot start meanwhile
            // (it is refused, exit 4) and have its new run taken for the old one.
            let Some(_held) = hold(ctx, &id)? else {
                continue; // a spawn in progress, seen between its lock and its supervisor
            };
            let cgroup = ctx.fleet.agent(&id);
            if cgroup.exists() && cgroup.populated().unwrap_or(true) {
                println!("{id}: orphaned and still running; left alone (end it with `fleetctl kill {id}`)");
                continue;
            }
            crate::failpoint::hit(crate::failpoint::GC_SETTLE);
            if args.dry_run {
                println!("{id}: would record that it ended unobserved after its supervisor died");
            } else {
                // A killer's turn too, so a `kill` of the id cannot record the same end.
                let turn = stop::open_stop_turn(ctx, &id)?;
                turn.lock()?;
                if stop::record_unobserved_end(ctx, &id)? {
                    println!("{id}: recorded that it ended unobserved after its supervisor died");
                }
                cgroup.remove()?;
            }
            collected += 1;
            if args.older_than.is_zero() && !args.dry_run {
                remove_agent(ctx, &id, args.logs)?;
                println!("{id}: {verb}: its record");
            }
            continue;
        }
        let old_enough = v.record.ended_at.and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= args.older_than);
        // A new run of the id may be starting (its spawn holds the lock before it rewrites
        // the record): its directory is not ours to remove.
        if v.state.is_terminal()
            && !v.supervised
            && old_enough
            && let Some(_held) = hold(ctx, &id)?
        {
            if !args.dry_run {
                remove_agent(ctx, &id, args.logs)?;
            }
            println!("{id}: {verb}: {} {}", v.state, ended_ago(v.record.ended_at));
            collected += 1;
        }
    }
    collected += stale_dirs_and_cgroups(ctx, args.dry_run, verb)?;
    println!("{verb} {collected} item(s)");
    Ok(Exit::Ok)
}

/// Agent directories with no record and no holder, and empty cgroups nobody owns.
fn stale_dirs_and_cgroups(ctx: &Ctx, dry_run: bool, verb: &str) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(ctx.dirs.agents_dir()).into_iter().flatten().flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|s| s.parse::<AgentId>().ok()) else { continue };
        if ctx.dirs.state_path(&id).exists() {
            continue;
        }
        if let Some(_held) = hold(ctx, &id)? {
            if !dry_run {
                remove_dir_tree(&entry.path())?;
            }
            println!("{id}: {verb}: lock without a record (a spawn that died before starting)");
            n += 1;
        }
    }
    for name in ctx.fleet.agent_names()? {
        let Ok(id) = name.parse::<AgentId>() else { continue };
        let cgroup = ctx.fleet.agent(&id);
        if cgroup.populated().unwrap_or(true) {
            continue;
        }
        if let Some(_held) = hold_if_recorded(ctx, &id)? {
            if !dry_run {
                cgroup.remove()?;
            }
            println!("{id}: {verb}: empty cgroup {}", cgroup.unified.display());
            n += 1;
        }
    }
    for entry in std::fs::read_dir(ctx.own_scratch_root()).into_iter().flatten().flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|s| s.parse::<AgentId>().ok()) else { continue };
        let cgroup = ctx.fleet.agent(&id);
        if cgroup.exists() && cgroup.populated().unwrap_or(true) {
            continue;
        }
        if let Some(_held) = hold_if_recorded(ctx, &id)? {
            if !dry_run {
                remove_dir_tree(&entry.path())?;
            }
            println!("{id}: {verb}: scratch dir {}", entry.path().display());
            n += 1;
        }
    }
    Ok(n)
}

/// Agent `id`'s lock, taken, or `None` when someone holds it: gc removes things only while
/// holding it, so no spawn of the id starts in between (it is refused, exit 4).
fn hold(ctx: &Ctx, id: &AgentId) -> Result<Option<Lock>> {
    Ok(Lock::try_acquire(&ctx.dirs.lock_path(id))?)
}

/// [`hold`] for things an agent's state directory may not exist for (a cgroup, a scratch
/// dir): with no directory there is no lock to take, and nothing of ours to make one in,
/// so an empty `Some` says nobody can hold it (a spawn makes the directory before its lock).
fn hold_if_recorded(ctx: &Ctx, id: &AgentId) -> Result<Option<Option<Lock>>> {
    if !ctx.dirs.agent_dir(id).exists() {
        return Ok(Some(None));
    }
    Ok(hold(ctx, id)?.map(Some))
}

/// Removes an agent's state directory (record, locks) and, if asked, its logs.
fn remove_agent(ctx: &Ctx, id: &AgentId, logs: bool) -> Result<()> {
    let dir = ctx.dirs.agent_dir(id);
    remove_dir_tree(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    ctx.fleet.agent(id).remove()?;
    if logs {
        let log = ctx.dirs.log_path(id);
        let _ = std::fs::remove_file(&log);
        let mut old = log.into_os_string();
        old.push(".1");
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

fn ended_ago(t: Option<SystemTime>) -> String {
    t.and_then(|t| t.elapsed().ok())
        .map(|d| format!("{} ago", fleet_core::timefmt::human_duration(d)))
        .unwrap_or_default()
}
