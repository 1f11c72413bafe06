//! An agent as commands see it: its record, reconciled with what the kernel says now.
//! The record is what the supervisor last wrote; whether the supervisor is still alive (its
//! process, or the agent's lock held) decides if a "running" record is true or the agent is
//! orphaned, and for an orphan its cgroup decides whether it still runs. An agent whose
//! record cannot be read is seen through its cgroup (`agent::unreadable`): the cgroup is the
//! truth for killing and measuring.

use crate::{agent::unreadable, context::Ctx};
use fleet_core::{
    id::AgentId,
    liveness::{Listed, Vouched},
    lock::HeldLocks,
    state::{AgentRecord, AgentState, KillRequest},
};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// One agent, reconciled.
#[derive(Debug, Clone)]
pub struct AgentView {
    /// The record on disk (for an agent without a readable one, what its cgroup tells).
    /// Boxed: a view is moved several times on its way to a report, and a record is
    /// about 3/4 KiB (over 1,000 agents, copying records and the page faults of the
    /// vectors holding them were a fifth of `status`'s time in user space).
    pub record: Box<AgentRecord>,
    /// The state to show: the record's; `orphaned` when nobody supervises a run that has not
    /// ended and processes remain; `failed` when none remain (it ended unobserved).
    pub state: AgentState,
    /// Whether its supervisor (or a spawn in progress) holds the lock.
    pub supervised: bool,
    /// Why `record` stands in for the agent's own: its record cannot be read, or it has none.
    pub record_error: Option<String>,
}

impl AgentView {
    /// Whether its record says alive and nobody supervises it: an orphan, running or ended
    /// unobserved, whose end is for `kill` or `gc` to record.
    pub fn unsettled(&self) -> bool {
        self.record_error.is_none() && !self.supervised && !self.record.state.is_terminal()
    }
}

/// A record that could not be read, named for the operator.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Whose.
    pub id: AgentId,
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// Whether agent `record` has a live supervisor: the supervisor process it names is alive
/// (vouched for by one read of the fleet's `supervisors/` cgroup, else its pid and start
/// time in `/proc`: `fleet_core::liveness`), or, for a run that has not ended, the agent's
/// lock is held (a spawn in progress, before the record names its supervisor).
/// `/proc/locks` alone is not enough: the kernel renders it a page per read(2) and resumes
/// by position, so while other locks are being released (a `kill --all`) a held lock can be
/// skipped. It is also costly, so it is asked last and never for an ended run, whose lock,
/// if held at all, belongs to a new run of the id starting; `gc` tries that lock itself
/// before it removes anything. (Asked first, it cost `status` less CPU over 1,000 agents but
/// more time: the kernel renders `/proc/locks` anew from the start for each page read, and
/// every thread of the sampler waited for the one reading it.)
pub fn is_supervised(ctx: &Ctx, witnesses: &Witnesses, record: &AgentRecord) -> bool {
    record.supervisor.is_some_and(|s| witnesses.supervisors.is_alive(&s, &ctx.proc_root))
        || (!record.state.is_terminal() && witnesses.held().contains(&ctx.dirs.lock_path(&record.id)))
}

/// What tells whether agents are supervised, for many records at once: the supervisors one
/// read of their cgroup vouched for, and `/proc/locks`, read at most once, and only when a
/// record's supervisor process cannot answer alone. Each read of `/proc/locks` can wait for
/// an RCU grace period on a host that has not just had one: the kernel write-locks its
/// global list of file locks to render it.
pub struct Witnesses<'a> {
    proc_root: &'a Path,
    supervisors: Vouched,
    held: std::sync::OnceLock<HeldLocks>,
}

impl<'a> Witnesses<'a> {
    /// Nothing vouched for: every supervisor is asked of `/proc`, and nothing is read until
    /// a record needs it.
    pub fn new(proc_root: &'a Path) -> Witnesses<'a> {
        Witnesses::vouching(proc_root, Vouched::none())
    }

    /// With the supervisors a read of their cgroup vouched for.
    pub fn vouching(proc_root: &'a Path, supervisors: Vouched) -> Witnesses<'a> {
        Witnesses { proc_root, supervisors, held: std::sync::OnceLock::new() }
    }

    /// The held locks, read now if not yet.
    pub fn held(&self) -> &HeldLocks {
        self.held.get_or_init(|| HeldLocks::read(self.proc_root))
    }
}

/// Derives the state to show from a record and whether its lock is held.
pub fn reconcile(record: Box<AgentRecord>, supervised: bool) -> AgentView {
    let state = if !record.state.is_terminal() && !supervised { AgentState::Orphaned } else { record.state };
    AgentView { record, state, supervised, record_error: None }
}

/// Reconciles a record, and notices a supervisor that died: the record names a supervisor
/// that is gone, and says the run has not ended. A supervisor records the end before it
/// exits, so the record is read once more after its death is seen: only if it still says
/// alive did the supervisor die without recording. The death is journaled once
/// (`agent::deaths`), and the cgroup tells whether the agent still runs.
fn reconciled(ctx: &Ctx, witnesses: &Witnesses, record: Box<AgentRecord>) -> AgentView {
    reconciled_again(ctx, witnesses, record).0
}

/// [`reconciled`], and whether the view holds a record other than `record` (read again).
fn reconciled_again(ctx: &Ctx, witnesses: &Witnesses, mut record: Box<AgentRecord>) -> (AgentView, bool) {
    let mut read_again = true;
    let mut replaced = false;
    loop {
        let supervised = is_supervised(ctx, witnesses, &record);
        let Some(supervisor) = record.supervisor.filter(|_| !supervised && !record.state.is_terminal()) else {
            return (reconcile(record, supervised), replaced);
        };
        if read_again {
            read_again = false;
            if let Ok(Some(again)) = AgentRecord::load(&ctx.dirs.state_path(&record.id))
                && again != *record
            {
                *record = again;
                replaced = true;
                continue;
            }
        }
        // A cgroup that cannot be read is not called empty: nothing is claimed ended on doubt.
        let agent_alive = ctx.fleet.agent(&record.id).populated().unwrap_or(true);
        crate::agent::deaths::note(ctx, &record, supervisor, agent_alive);
        // Its end, once its processes are gone, unless a kill is at work on it (which
        // records the end it causes; a killer that died no longer will).
        let killing = KillRequest::load(&ctx.dirs.kill_request_path(&record.id))
            .is_some_and(|r| r.killer.is_none_or(|k| k.is_alive(&ctx.proc_root)));
        if !agent_alive && record.started_at.is_some() && !killing {
            let detail =
                fleet_core::event::Exit::unsupervised(AgentState::Failed, None, crate::agent::stop::UNOBSERVED);
            let _ = crate::agent::deaths::journal_end(ctx, &record, supervisor, detail);
        }
        let state = if agent_alive { AgentState::Orphaned } else { AgentState::Failed };
        return (AgentView { record, state, supervised: false, record_error: None }, replaced);
    }
}

/// Loads agent `id`: from its record, or, when that cannot be read, from its cgroup. `None`
/// when it has no record at all.
pub fn load_one(ctx: &Ctx, id: &AgentId) -> anyhow::Result<Option<AgentView>> {
    // One agent: its supervisor is asked of `/proc`, cheaper than listing them all.
    let witnesses = Witnesses::new(&ctx.proc_root);
    let path = ctx.dirs.state_path(id);
    Ok(match AgentRecord::load(&path) {
        Ok(Some(record)) => Some(reconciled(ctx, &witnesses, Box::new(record))),
        Ok(None) => None,
        Err(e) => Some(unreadable::from_cgroup(ctx, &witnesses, id, unreadable::describe(&path, &e)).0),
    })
}

/// Loads every agent, sorted by id, and the records that could not be read. Agents whose
/// record cannot be read, or who have none, are in the list too while their cgroup has
/// processes or their lock is held, seen through the cgroup.
pub fn load_all(ctx: &Ctx) -> anyhow::Result<(Vec<AgentView>, Vec<BadRecord>)> {
    let (loaded, bad) = load_all_then(ctx, |_| None::<()>)?;
    Ok((loaded.into_iter().map(|(view, _)| view).collect(), bad))
}

/// A view, and what [`load_all_then`]'s `then` answered for its record (`None` for an agent
/// seen through its cgroup).
pub type Then<S> = (AgentView, Option<S>);

/// One record as its thread read it: with `then`'s answer, or why it could not be read
/// (`None`: there is none).
type RecordRead<S> = Option<Result<(Box<AgentRecord>, Option<S>), (PathBuf, String)>>;

/// [`load_all`], with `then` run on each record by the thread that has just read it, its
/// answer beside the view: a sampler reads an agent's cgroup there, in the same pass over
/// the agents, instead of in a second one after every record is in (over 1,000 agents, the
/// cores waited at that turn). `then` sees the record as read, before it is reconciled.
pub fn load_all_then<S: Send>(
    ctx: &Ctx,
    then: impl Fn(&AgentRecord) -> Option<S> + Sync,
) -> anyhow::Result<(Vec<Then<S>>, Vec<BadRecord>)> {
    // The supervisors' cgroup is read before the records it answers for
    // (`fleet_core::liveness`), beside the listing of the records.
    let (listed, ids) = std::thread::scope(|s| {
        let listed = s.spawn(|| Listed::read(&ctx.fleet.supervisors()));
        let ids = record_ids(ctx);
        (listed.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), ids)
    });
    let ids = ids?;
    let (mut views, mut bad) = (Vec::new(), Vec::new());
    let mut recorded = BTreeSet::new();
    // Each record read on its own: spread over a few threads, as the cgroups are (with 1,000
    // agents this was a third of `status`'s time, in one thread).
    let records = crate::agent::par_map(&ids, |id| {
        let path = ctx.dirs.state_path(id);
        match AgentRecord::load(&path) {
            Ok(Some(record)) => {
                let then = then(&record);
                Some(Ok((Box::new(record), then)))
            }
            // A directory with a lock but no record yet: a spawn in progress, or one that
            // was killed before writing; only its cgroup can say more (below).
            Ok(None) => None,
            Err(e) => Some(Err((path.clone(), unreadable::describe(&path, &e)))),
        }
    });
    let read = || records.iter().flatten().flatten().map(|(r, _)| r);
    let supervisors = listed.vouch(read().filter_map(|r| r.supervisor), read().filter_map(|r| r.pid));
    let witnesses = Witnesses::vouching(&ctx.proc_root, supervisors);
    // A supervisor the read did not vouch for is asked of `/proc`: those records are
    // reconciled on the threads; the others, a set lookup each, here (over 1,000 agents,
    // starting the threads cost more than that).
    let asks_proc = |loaded: &RecordRead<S>| matches!(loaded, Some(Ok((r, _))) if r.supervisor.is_none_or(|s| !witnesses.supervisors.vouches_for(&s)));
    let reconcile_one = |loaded: RecordRead<S>| {
        // A sample `then` took went by the record read first: not kept for another one.
        loaded.map(|loaded| {
            loaded.map(|(record, then)| {
                let (view, replaced) = reconciled_again(ctx, &witnesses, record);
                (view, then.filter(|_| !replaced))
            })
        })
    };
    let asking = records.iter().filter(|l| asks_proc(l)).count();
    let loaded: Vec<_> = if asking < crate::agent::parallel::READS.inline_below {
        records.into_iter().map(reconcile_one).collect()
    } else {
        crate::agent::par_map_owned(records, reconcile_one)
    };
    for (id, loaded) in ids.into_iter().zip(loaded) {
        match loaded {
            Some(Ok(view)) => {
                recorded.insert(id);
                views.push(view);
            }
            None => {}
            Some(Err((path, error))) => {
                recorded.insert(id.clone());
                if let (view, true) = unreadable::from_cgroup(ctx, &witnesses, &id, error.clone()) {
                    views.push((view, None));
                }
                bad.push(BadRecord { id, path, error });
            }
        }
    }
    for name in ctx.fleet.agent_names()? {
        let Ok(id) = name.parse::<AgentId>() else { continue };
        if !recorded.contains(&id) && ctx.fleet.agent(&id).populated().unwrap_or(false) {
            views.push((unreadable::from_cgroup(ctx, &witnesses, &id, unreadable::NO_RECORD.into()).0, None));
        }
    }
    views.sort_by(|(a, _), (b, _)| a.record.id.cmp(&b.record.id));
    Ok((views, bad))
}

/// The ids of the records in the state directory, sorted: here, where an id is a short
/// string, so the views come out in order and their sort (for the ones seen through their
/// cgroup) moves next to nothing.
fn record_ids(ctx: &Ctx) -> anyhow::Result<Vec<AgentId>> {
    let dir = ctx.dirs.agents_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => Some(e),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot list {}", dir.display())));
        }
    };
    let mut ids: Vec<AgentId> = entries
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.parse::<AgentId>().ok()))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}
