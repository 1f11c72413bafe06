//! `fleetctl kill ID… | --all | -l SELECTOR [--force] [--grace 10s]`.

use crate::out::outln;
use crate::{
    agent::{
        stop::{StopRequest, Stopped, stop_agent},
        view,
    },
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::Result;
use fleet_cli::KillArgs;
use fleet_core::{admission::Ledger, id::AgentId, queue, timefmt::human_duration};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Takes the waiting spawns (`spawn --queue`) of `ids` (None: every one) out of line, each
/// with a line saying so; returns their ids, and those of waiters admitted as the kill came,
/// which are let start and then stopped as any agent. `seen_waiting`: `ids` were listed in
/// line just before (`kill -l`), so one no longer there but in the admission ledger was
/// admitted meanwhile.
fn withdraw_waiters(ctx: &Ctx, ids: Option<&[AgentId]>, seen_waiting: bool) -> Result<(Vec<AgentId>, Vec<AgentId>)> {
    let dir = queue::dir(&ctx.dirs.state);
    let (wanted, seen_waiting): (Vec<AgentId>, bool) = match ids {
        Some(ids) => (ids.to_vec(), seen_waiting),
        None => (queue::line(&dir)?.into_iter().map(|w| w.id).collect(), true),
    };
    crate::failpoint::hit(crate::failpoint::KILL_LISTED_WAITERS);
    let (mut withdrawn, mut admitted) = (Vec::new(), Vec::new());
    for id in wanted {
        match withdraw(ctx, &dir, &id, seen_waiting)? {
            Withdrawal::Admitted => admitted.push(id),
            Withdrawal::NotWaiting => {}
            Withdrawal::Withdrawn(waiter) => {
                let waited = waiter.since.elapsed().map(human_duration).unwrap_or_default();
                outln!(
                    "{id}: taken out of the line (it had waited {waited} for {}); nothing was started",
                    crate::agent::queue::describe(waiter.reason)
                )?;
                withdrawn.push(id);
            }
        }
    }
    Ok((withdrawn, admitted))
}

/// What became of a waiter `kill` looked for.
enum Withdrawal {
    /// Taken out of line.
    Withdrawn(queue::Waiter),
    /// Admitted before the kill could take it out: it has left the line to start.
    Admitted,
    /// None waits for the id.
    NotWaiting,
}

/// Takes `id`'s waiter out of line under the admission lock. An admitted one keeps its ticket until it has its id (whose
/// stopping turn it holds until the agent runs, which is what `stop_agent` then waits for),
/// or gives its admission back and waits again: this waits for either.
fn withdraw(ctx: &Ctx, dir: &Path, id: &AgentId, seen_waiting: bool) -> Result<Withdrawal> {
    let mut alarm: Option<queue::Alarm> = None;
    loop {
        let ledger = Ledger::lock(&ctx.dirs.admission_path())?;
        match queue::cancel(dir, id, &ledger)? {
            Some(queue::Cancel::Withdrawn(waiter)) => return Ok(Withdrawal::Withdrawn(waiter)),
            None if alarm.is_some() => return Ok(Withdrawal::Admitted),
            // Left the line since it was seen waiting, admitted: its spawn's line in the
            // ledger stays until its agent's run ends, but its record (and the labels `-l`
            // matches) may not be written yet. Stopped as any agent once it has started.
            None if seen_waiting && ledger.entries.iter().any(|e| &e.id == id) => {
                outln!("{id}: admitted from the line as the kill came; stopping it once it has started")?;
                return Ok(Withdrawal::Admitted);
            }
            None => return Ok(Withdrawal::NotWaiting),
            Some(queue::Cancel::Admitted(_)) => {
                drop(ledger);
                match &alarm {
                    Some(alarm) => {
                        alarm.sleep(crate::agent::queue::RECHECK);
                    }
                    None => {
                        outln!("{id}: admitted from the line as the kill came; stopping it once it has started")?;
                        // Watching first, then looking again: its leaving is not missed.
                        alarm = Some(queue::Alarm::watch(dir)?);
                    }
                }
            }
        }
    }
}

/// Entry point.
pub fn run(ctx: &Ctx, args: KillArgs) -> Result<Exit> {
    // Waiters first: with `--all`, none of them may start in the room the kills make.
    let (withdrawn, admitted) = match (&args.selector, args.all) {
        (Some(selector), _) => withdraw_waiters(ctx, Some(&waiting_ids(ctx, selector)?), true)?,
        (None, true) => withdraw_waiters(ctx, None, true)?,
        (None, false) => withdraw_waiters(ctx, Some(&args.ids), false)?,
    };
    let ids: Vec<AgentId> = match (&args.selector, args.all) {
        // Waiters that matched are done; those admitted as the kill came are stopped too.
        (Some(selector), _) => {
            let mut ids = selected_ids(ctx, selector, !withdrawn.is_empty() || !admitted.is_empty())?;
            ids.extend(admitted.into_iter().filter(|id| !ids.contains(id)).collect::<Vec<_>>());
            ids
        }
        // One admitted as the kill came may have no record yet.
        (None, true) => {
            let mut ids = all_ids(ctx)?;
            ids.extend(admitted.into_iter().filter(|id| !ids.contains(id)).collect::<Vec<_>>());
            ids
        }
        // An id that only waited is done; one with an agent too is stopped as well.
        (None, false) => {
            args.ids.iter().filter(|id| !withdrawn.contains(id) || ctx.dirs.agent_dir(id).exists()).cloned().collect()
        }
    };
    if ids.is_empty() {
        if withdrawn.is_empty() {
            outln!("no agents to kill")?;
        }
        return Ok(Exit::Ok);
    }
    let req = StopRequest { by: "user".into(), detail: None, grace: args.grace, force: args.force };
    // Agents are independent: stop them in parallel, so `kill --all` over hundreds of agents
    // costs a few grace periods, not one per agent. Output stays in id order.
    let workers = ids.len().clamp(1, workers_for(args.force));
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<Option<Stopped>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(id) = ids.get(i) else { break };
                        done.push((i, stop_agent(ctx, id, &req)));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let (mut unknown, mut failed, mut denied) = (Vec::new(), 0, 0);
    for (i, result) in results {
        let id = &ids[i];
        match result {
            Ok(Some(Stopped::Killed { sigkilled, state })) => {
                let how = if args.force {
                    "killed at once"
                } else if sigkilled {
                    "did not stop within the grace period; killed"
                } else {
                    "stopped on SIGTERM"
                };
                outln!("{id}: {how} (state {state})")?;
            }
            Ok(Some(Stopped::AlreadyEnded { state, cause })) => {
                let state = state.map(|s| s.to_string()).unwrap_or_else(|| "state unknown".into());
                let cause = cause.map(|c| format!(": {c}")).unwrap_or_default();
                outln!("{id}: already ended ({state}{cause}); nothing to kill")?;
            }
            Ok(None) => unknown.push(id.clone()),
            Err(e) => {
                eprintln!("fleetctl: {id}: {}", crate::exit::describe(&e));
                denied += usize::from(crate::exit::exit_for(&e) == Exit::Permission);
                failed += 1;
            }
        }
    }
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(AgentId::as_str).collect();
        let message = format!("no such agent: {} (see `fleetctl status`)", names.join(", "));
        let exit = if unknown.len() == ids.len() { Exit::NoSuchAgent } else { Exit::Partial };
        return Err(Fail::error(exit, message));
    }
    Ok(match failed {
        0 => Exit::Ok,
        n if n == ids.len() && denied == n => Exit::Permission,
        n if n == ids.len() => Exit::Failure,
        _ => Exit::Partial,
    })
}

/// The waiting spawns whose labels `selector` matches.
fn waiting_ids(ctx: &Ctx, selector: &fleet_core::labels::Selector) -> Result<Vec<AgentId>> {
    let waiting = queue::line(&queue::dir(&ctx.dirs.state))?;
    Ok(waiting.into_iter().filter(|w| selector.matches(&w.labels)).map(|w| w.id).collect())
}

/// The agents `selector` matches whose runs have not ended; none matching at all is exit 5,
/// unless waiters matched (`waiters_matched`).
fn selected_ids(ctx: &Ctx, selector: &fleet_core::labels::Selector, waiters_matched: bool) -> Result<Vec<AgentId>> {
    let matching = crate::agent::select::matching(ctx, selector)?;
    if matching.is_empty() && !waiters_matched {
        return Err(crate::agent::select::none_match(selector));
    }
    Ok(matching.into_iter().filter(|v| !v.state.is_terminal()).map(|v| v.record.id).collect())
}

/// Every agent with a record or a cgroup.
fn all_ids(ctx: &Ctx) -> Result<Vec<AgentId>> {
    let (views, _) = view::load_all(ctx)?;
    let mut ids: Vec<AgentId> =
        views.into_iter().filter(|v| !v.record.state.is_terminal()).map(|v| v.record.id).collect();
    for name in ctx.fleet.agent_names()? {
        if let Ok(id) = name.parse::<AgentId>()
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// How many agents are stopped at once. A grace period is a wait, so with one, 64 (300
/// agents that ignore SIGTERM take 5 grace periods, not 19 with 16). `--force` waits for
/// nothing but the kernel and the supervisors, and past 32 workers their `rmdir`s only
/// contend for the cgroup tree's locks: 64 cost 10 % more CPU and no less time at 300 agents.
fn workers_for(force: bool) -> usize {
    if force { 32 } else { 64 }
}
