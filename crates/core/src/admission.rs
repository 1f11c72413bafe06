//! The admission ledger: the spawns admitted in the last few seconds and what each of their
//! agents is expected to take, so that concurrent spawns count each other's agents before
//! those have grown.
//!
//! One small file in the state dir, `admission.lock`, is both the fleet-wide lock and the
//! ledger. A spawn holds its `flock(2)` while it measures, decides and adds its own line, and
//! nothing longer. Every reader holds the lock, so the file is written in place (a `pwrite`,
//! and a truncate when a rewrite shrinks it) rather than through a temp file and a rename,
//! which would swap the inode under the lock. A writer killed mid-write leaves a torn tail at
//! worst: lines are checked one by one and a bad one is skipped.
//!
//! Each entry names its owner, a process (pid and start time): the spawn while it makes the
//! agent, then the agent's supervisor. An entry whose owner is gone counts for nothing, and
//! [`Ledger::drop_gone`] takes it out.
//!
//! What changes no other line is appended, not rewritten: a spawn admitted while nothing
//! expired adds its line at the end ([`Ledger::append`]); the hand-over of a start line from
//! spawn to supervisor (`> FROM TO ID`, [`Ledger::hand_over`]) and a supervisor's release of
//! its lines at the end (`- OWNER`, [`Ledger::release`]) are lines of their own, which readers
//! apply to the entries above them. In a burst of hundreds of spawns every one of them rewrote
//! the whole ledger twice, and every supervisor once more as `kill --all` ended them, under
//! the lock all of them wait for. A rewrite folds the change lines in: any admission that
//! drops a line, and an append once there are more than 32 change lines, so
//! the file stays about as long as what it holds.
//!
//! A fleetctl from before these lines skips them as lines it cannot read, and its rewrites
//! drop them (a supervisor of the old build, still running after an upgrade, rewrites at its
//! end). So a lasting reservation is handed over by a rewrite, as before: the entry itself
//! names the supervisor, whatever reads it. A start line whose hand-over is lost reverts to
//! its spawn, which has exited, and counts no longer (for at most the rest of its 10 s); a
//! released line that comes back names a supervisor that is gone, and the next admission
//! that checks it drops it.

use crate::{Error, Result, id::AgentId, procs::ProcessRef};
use std::{
    fs::File,
    io::Read,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::Duration,
};

/// One admitted spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was admitted, on the boot-time clock ([`now`]).
    pub at: Duration,
    /// Bytes its agent is expected to take.
    pub reserve: u64,
    /// The owner's pid: the admitted `spawn` process while it makes the agent, then the
    /// agent's supervisor.
    pub pid: i32,
    /// The owner's start time ([`ProcessRef::start_ticks`]), so a reused pid is not taken
    /// for it. None in a line written by a fleetctl before owners had one.
    pub start_ticks: Option<u64>,
    /// The agent.
    pub id: AgentId,
    /// A reservation the agent asked for (`--memory-reserve`): it lasts as long as the
    /// agent, not only while it starts.
    pub lasting: bool,
}

impl Entry {
    /// The owner, when its start time is known.
    pub fn owner(&self) -> Option<ProcessRef> {
        self.start_ticks.map(|start_ticks| ProcessRef { pid: self.pid, start_ticks })
    }

    /// `AT RESERVE PID:START ID`, then ` R` when lasting; an old entry (no start time) keeps
    /// its old `PID` field until it is adopted or dropped.
    fn line(&self) -> String {
        let lasting = if self.lasting { " R" } else { "" };
        let owner = match self.start_ticks {
            Some(start) => format!("{}:{start}", self.pid),
            None => self.pid.to_string(),
        };
        format!("{} {} {owner} {}{lasting}\n", self.at.as_millis(), self.reserve, self.id)
    }

    fn parse(line: &str) -> Option<Entry> {
        let mut f = line.split(' ');
        let at = Duration::from_millis(f.next()?.parse().ok()?);
        let reserve = f.next()?.parse().ok()?;
        let owner = f.next()?;
        let (pid, start_ticks) = match owner.split_once(':') {
            Some((pid, start)) => (pid.parse().ok()?, Some(start.parse().ok()?)),
            None => (owner.parse().ok()?, None),
        };
        let entry = Entry { at, reserve, pid, start_ticks, id: f.next()?.parse().ok()?, lasting: false };
        match (f.next(), f.next()) {
            (None, _) => Some(entry),
            (Some("R"), None) => Some(Entry { lasting: true, ..entry }),
            _ => None,
        }
    }
}

/// A line that changes the entries above it rather than adding one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// `> FROM TO ID`: the entry of agent `id` owned by `from` is owned by `to` from here on.
    HandOver { from: ProcessRef, to: ProcessRef, id: AgentId },
    /// `- OWNER`: the entries `owner` owns are gone.
    Release { owner: ProcessRef },
}

impl Change {
    fn line(&self) -> String {
        let owner = |p: &ProcessRef| format!("{}:{}", p.pid, p.start_ticks);
        match self {
            Change::HandOver { from, to, id } => format!("> {} {} {id}\n", owner(from), owner(to)),
            Change::Release { owner: o } => format!("- {}\n", owner(o)),
        }
    }

    fn parse(line: &str) -> Option<Change> {
        let owner = |field: &str| -> Option<ProcessRef> {
            let (pid, start) = field.split_once(':')?;
            Some(ProcessRef { pid: pid.parse().ok()?, start_ticks: start.parse().ok()? })
        };
        let (change, mut f) = match line.split_once(' ')? {
            (">", rest) => {
                let mut f = rest.split(' ');
                (Change::HandOver { from: owner(f.next()?)?, to: owner(f.next()?)?, id: f.next()?.parse().ok()? }, f)
            }
            ("-", rest) => {
                let mut f = rest.split(' ');
                (Change::Release { owner: owner(f.next()?)? }, f)
            }
            _ => return None,
        };
        f.next().is_none().then_some(change)
    }

    fn apply(&self, entries: &mut Vec<Entry>) {
        match self {
            // A spawn owns one line of its agent, and hands it over soon after adding it:
            // looked for from the end, owner first. (Every line compared by id made reading
            // a burst's ledger quadratic: 300 hand-overs over 300 lines at each admission.)
            Change::HandOver { from, to, id } => {
                if let Some(e) = entries.iter_mut().rev().find(|e| e.owner() == Some(*from) && e.id == *id) {
                    (e.pid, e.start_ticks) = (to.pid, Some(to.start_ticks));
                }
            }
            Change::Release { owner } => entries.retain(|e| e.owner() != Some(*owner)),
        }
    }
}

/// The ledger, locked for as long as it lives.
#[derive(Debug)]
pub struct Ledger {
    file: File,
    path: PathBuf,
    /// Bytes on file, so a save that does not shrink it needs no truncate, and where an
    /// appended line goes.
    len: u64,
    /// The file ends in the middle of a line (a writer killed mid-write): an appended line
    /// starts on a new one.
    torn: bool,
    /// Change lines on file: past [`FOLD_AFTER`], the next [`Ledger::append`] rewrites the
    /// ledger instead.
    changes: usize,
    /// The admitted spawns on file; [`Ledger::save`] writes them back.
    pub entries: Vec<Entry>,
}

impl Ledger {
    /// Opens the ledger at `path` (creating it), waits for its lock and reads it.
    pub fn lock(path: &Path) -> Result<Ledger> {
        let mut file = crate::lock::open_lock_file(path)?;
        file.lock().map_err(|e| Error::io("lock", path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| Error::io("read", path, e))?;
        let (entries, changes) = read_entries(&String::from_utf8_lossy(&bytes));
        let torn = bytes.last().is_some_and(|b| *b != b'\n');
        Ok(Ledger { file, path: path.to_path_buf(), len: bytes.len() as u64, torn, changes, entries })
    }

    /// Adds `entry` by writing its line after the others: for a caller that changed no other
    /// entry (one that did pushes it and calls [`Ledger::save`], which writes them all).
    pub fn append(&mut self, entry: Entry) -> Result<()> {
        if self.changes > FOLD_AFTER {
            self.entries.push(entry);
            return self.save();
        }
        let line = entry.line();
        self.write_at_end(&line)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Hands the entry of agent `id` that `from` owns (its last, should there be more) to
    /// `to`, in the ledger at `path`, under its lock: one line appended, nothing read.
    pub fn hand_over(path: &Path, id: &AgentId, from: ProcessRef, to: ProcessRef) -> Result<()> {
        Ledger::change(path, &Change::HandOver { from, to, id: id.clone() })
    }

    /// Takes out of the ledger at `path` every entry `owner` owns, under its lock: a
    /// supervisor whose agent's run is over gives its reservations up before it wakes the
    /// spawns in line, which would otherwise still count them for as long as it lives. One
    /// line appended, nothing read: when relief or `kill --all` ends hundreds of agents at
    /// once, each of their supervisors rewrote the whole ledger in turn.
    pub fn release(path: &Path, owner: ProcessRef) -> Result<()> {
        Ledger::change(path, &Change::Release { owner })
    }

    fn change(path: &Path, change: &Change) -> Result<()> {
        let file = crate::lock::open_lock_file(path)?;
        file.lock().map_err(|e| Error::io("lock", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("read", path, e))?.len();
        let mut last = [b'\n'];
        if len > 0 {
            file.read_exact_at(&mut last, len - 1).map_err(|e| Error::io("read", path, e))?;
        }
        let torn = last[0] != b'\n';
        let mut ledger = Ledger { file, path: path.to_path_buf(), len, torn, changes: 0, entries: Vec::new() };
        ledger.write_at_end(&change.line())
    }

    fn write_at_end(&mut self, line: &str) -> Result<()> {
        let text = if self.torn { format!("\n{line}") } else { line.to_string() };
        self.file.write_all_at(text.as_bytes(), self.len).map_err(|e| Error::io("write", &self.path, e))?;
        self.len += text.len() as u64;
        self.torn = false;
        Ok(())
    }

    /// Takes out the entries `checked` picks whose owner is gone: its pid does not exist,
    /// has exited, or belongs to another process (another start time). One read of
    /// `/proc/<pid>/stat` per entry checked (about 9 µs on this 2-core host). An entry
    /// without a start time, from an older fleetctl, is first given the owner `adopt` names
    /// for it, or dropped when it names none. True when anything changed, for the caller to
    /// save.
    pub fn drop_gone(
        &mut self,
        proc_root: &Path,
        checked: impl Fn(&Entry) -> bool,
        adopt: impl Fn(&Entry) -> Option<ProcessRef>,
    ) -> bool {
        let mut changed = false;
        self.entries.retain_mut(|e| {
            if !checked(e) {
                return true;
            }
            let owner = match e.owner() {
                Some(owner) => owner,
                None => {
                    changed = true;
                    let Some(owner) = adopt(e) else { return false };
                    (e.pid, e.start_ticks) = (owner.pid, Some(owner.start_ticks));
                    owner
                }
            };
            let alive = owner.is_alive(proc_root);
            changed |= !alive;
            alive
        });
        changed
    }

    /// Writes the entries back; the lock stays held until the ledger is dropped.
    pub fn save(&mut self) -> Result<()> {
        let text: String = self.entries.iter().map(Entry::line).collect();
        let len = text.len() as u64;
        let write = || -> std::io::Result<()> {
            self.file.write_all_at(text.as_bytes(), 0)?;
            // Most saves add a line; only a pruned ledger has an old tail to cut.
            if len < self.len { self.file.set_len(len) } else { Ok(()) }
        };
        write().map_err(|e| Error::io("write", &self.path, e))?;
        (self.len, self.torn, self.changes) = (len, false, 0);
        Ok(())
    }
}

/// Change lines a ledger holds before an append rewrites it instead. Every admission reads
/// them all: a burst of 300 spawns left up to 300 hand-overs on file while they were let
/// grow as long as the entries, and a rewrite of 300 lines costs less than one spawn's
/// reading of them.
const FOLD_AFTER: usize = 32;

/// The entries a ledger's text holds, its hand-over and release lines applied. Lines are
/// checked one by one: a torn or garbled one costs that line only.
pub fn entries_of(text: &str) -> Vec<Entry> {
    read_entries(text).0
}

/// [`entries_of`], and how many change lines it applied.
fn read_entries(text: &str) -> (Vec<Entry>, usize) {
    let (mut entries, mut changes) = (Vec::new(), 0);
    for line in text.lines() {
        // An entry starts with its time, a change with its sign.
        let change = matches!(line.as_bytes().first(), Some(b'>' | b'-')).then(|| Change::parse(line)).flatten();
        match change {
            Some(change) => {
                change.apply(&mut entries);
                changes += 1;
            }
            None => entries.extend(Entry::parse(line)),
        }
    }
    (entries, changes)
}

/// Now on the boot-time clock: the same for every process, never set back, and counting
/// suspended time. (An entry from a boot before, in a state dir that survived it, lies in
/// the future or far in the past; both are dropped.)
pub fn now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map(Duration::from).unwrap_or_default()
}

/// Whether an entry made at `at` is still young at `now`: at most `window` old, and not from
/// the future.
pub fn young(at: Duration, now: Duration, window: Duration) -> bool {
    at <= now && now - at <= window
}

#[cfg(test)]
mod tests;
