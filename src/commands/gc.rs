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

use crate::out::outln;
use crate::{
    agent::{stop, view},
    context::Ctx,
    exit::Exit,
};
use anyhow::{Context, Result};
use fleet_cli::GcArgs;
use fleet_core::{id::AgentId, lock::Lock, paths::remove_dir_tree};
use serde_json::{Value, json};
use std::{collections::BTreeSet, time::SystemTime};

/// What one gc run did or would do. A dry run walks the same steps as a real one and only
/// skips the removal, so both count the same items: a record, a state dir without one, an
/// empty cgroup, a scratch dir; each once.
struct Sweep {
    dry_run: bool,
    json: bool,
    /// What was (or would be) collected: `{"id", "item", "detail"}`.
    collected: Vec<Value>,
    /// Orphans whose unobserved end was (or would be) recorded.
    settled: Vec<String>,
    /// Orphans still running, left for `kill`.
    left_alone: Vec<String>,
    /// Agents whose cgroup the first pass already counted.
    cgroups_counted: BTreeSet<AgentId>,
    /// Agents whose scratch dir the first pass already counted.
    scratch_counted: BTreeSet<AgentId>,
}

impl Sweep {
    fn verb(&self) -> &'static str {
        if self.dry_run { "would collect" } else { "collected" }
    }

    /// Counts one item, with its line unless the output is JSON.
    fn collect(&mut self, id: &AgentId, item: &str, detail: String) -> Result<()> {
        if !self.json {
            let what = if item == "record" { "its record" } else { item };
            let detail = if detail.is_empty() { String::new() } else { format!(" {detail}") };
            outln!("{id}: {}: {what}{detail}", self.verb())?;
        }
        self.collected.push(json!({"id": id.as_str(), "item": item, "detail": detail}));
        Ok(())
    }

    fn say(&self, line: String) -> Result<()> {
        if self.json { Ok(()) } else { outln!("{line}") }
    }
}

/// Entry point.
pub fn run(ctx: &Ctx, args: GcArgs) -> Result<Exit> {
    let mut gc = Sweep {
        dry_run: args.dry_run,
        json: args.json,
        collected: Vec::new(),
        settled: Vec::new(),
        left_alone: Vec::new(),
        cgroups_counted: BTreeSet::new(),
        scratch_counted: BTreeSet::new(),
    };
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
                gc.say(format!("{id}: orphaned and still running; left alone (end it with `fleetctl kill {id}`)"))?;
                gc.left_alone.push(id.to_string());
                continue;
            }
            crate::failpoint::hit(crate::failpoint::GC_SETTLE);
            // Recording the end removes the scratch dir its supervisor would have: an item
            // of this gc's, counted here in both runs.
            let scratch = v.record.scratch.clone().filter(|dir| dir.exists());
            if args.dry_run {
                gc.say(format!("{id}: would record that it ended unobserved after its supervisor died"))?;
                gc.settled.push(id.to_string());
            } else {
                // A killer's turn too, so a `kill` of the id cannot record the same end.
                let turn = stop::open_stop_turn(ctx, &id)?;
                turn.lock()?;
                if stop::record_unobserved_end(ctx, &id)? {
                    gc.say(format!("{id}: recorded that it ended unobserved after its supervisor died"))?;
                    gc.settled.push(id.to_string());
                }
            }
            collect_cgroup(ctx, &mut gc, &id)?;
            if let Some(dir) = scratch {
                if !args.dry_run && dir.exists() {
                    remove_dir_tree(&dir)?;
                }
                gc.scratch_counted.insert(id.clone());
                gc.collect(&id, "scratch dir", dir.display().to_string())?;
            }
            if args.older_than.is_zero() {
                collect_record(ctx, &mut gc, &id, args.logs, String::new())?;
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
            collect_cgroup(ctx, &mut gc, &id)?;
            collect_record(ctx, &mut gc, &id, args.logs, format!("({} {})", v.state, ended_ago(v.record.ended_at)))?;
        }
    }
    stale_dirs_and_cgroups(ctx, &mut gc)?;
    let n = gc.collected.len();
    if args.json {
        let doc = json!({
            "schema": 1,
            "dry_run": args.dry_run,
            "collected": gc.collected,
            "settled": gc.settled,
            "left_alone": gc.left_alone,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        outln!("{} {n} item(s)", gc.verb())?;
    }
    Ok(Exit::Ok)
}

/// The agent's cgroup, if it is there (gc's callers have seen it empty): one item.
fn collect_cgroup(ctx: &Ctx, gc: &mut Sweep, id: &AgentId) -> Result<()> {
    let cgroup = ctx.fleet.agent(id);
    if !cgroup.exists() {
        return Ok(());
    }
    if !gc.dry_run {
        cgroup.remove()?;
    }
    gc.cgroups_counted.insert(id.clone());
    gc.collect(id, "empty cgroup", cgroup.unified.display().to_string())
}

/// The agent's state dir (record and locks) and, with `--logs`, its logs: one item.
fn collect_record(ctx: &Ctx, gc: &mut Sweep, id: &AgentId, logs: bool, detail: String) -> Result<()> {
    if !gc.dry_run {
        remove_agent(ctx, id, logs)?;
    }
    gc.collect(id, "record", detail)
}

/// Agent directories with no record and no holder, and empty cgroups nobody owns.
fn stale_dirs_and_cgroups(ctx: &Ctx, gc: &mut Sweep) -> Result<()> {
    for entry in std::fs::read_dir(ctx.dirs.agents_dir()).into_iter().flatten().flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|s| s.parse::<AgentId>().ok()) else { continue };
        if ctx.dirs.state_path(&id).exists() {
            continue;
        }
        // A spawn names itself in the lock before it writes a record; a `kill` of a cgroup
        // that `cgroup-create` made (no record, ever) leaves only its stopping turn.
        let why = match fleet_core::lock::read_holder(&ctx.dirs.lock_path(&id)).is_some() {
            true => "lock without a record (a spawn that died before starting)",
            false => "state dir without a record (left by a kill of a cgroup-create cgroup)",
        };
        if let Some(_held) = hold(ctx, &id)? {
            if !gc.dry_run {
                remove_dir_tree(&entry.path())?;
            }
            gc.collect(&id, why, String::new())?;
        }
    }
    for name in ctx.fleet.agent_names()? {
        let Ok(id) = name.parse::<AgentId>() else { continue };
        let cgroup = ctx.fleet.agent(&id);
        if gc.cgroups_counted.contains(&id) || cgroup.populated().unwrap_or(true) {
            continue;
        }
        if let Some(_held) = hold_if_recorded(ctx, &id)? {
            collect_cgroup(ctx, gc, &id)?;
        }
    }
    for entry in std::fs::read_dir(ctx.own_scratch_root()).into_iter().flatten().flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|s| s.parse::<AgentId>().ok()) else { continue };
        if gc.scratch_counted.contains(&id) {
            continue;
        }
        let cgroup = ctx.fleet.agent(&id);
        if !gc.cgroups_counted.contains(&id) && cgroup.exists() && cgroup.populated().unwrap_or(true) {
            continue;
        }
        if let Some(_held) = hold_if_recorded(ctx, &id)? {
            if !gc.dry_run {
                remove_dir_tree(&entry.path())?;
            }
            gc.collect(&id, "scratch dir", entry.path().display().to_string())?;
        }
    }
    Ok(())
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
