//! The admission ledger: the spawns admitted in the last few seconds and what each of their
//! agents is expected to take, so that concurrent spawns count each other's agents before
//! those have grown.
//!
//! One small file in the state dir, `admission.lock`, is both the fleet-wide lock and the
//! ledger. A spawn holds its `flock(2)` while it measures, decides and adds its own line, and
//! nothing longer. Every reader holds the lock, so the file is rewritten in place (one
//! `pwrite` and a truncate) rather than through a temp file and a rename, which would swap
//! the inode under the lock. A spawn killed between the two calls leaves a torn tail at
//! worst: lines are checked one by one and a bad one is skipped.
//!
//! Each entry names its owner, a process (pid and start time): the spawn while it makes the
//! agent, then the agent's supervisor. An entry whose owner is gone counts for nothing, and
//! [`Ledger::drop_gone`] takes it out.
//!
//! What changes no other line is appended, not rewritten: a spawn admitted while nothing
//! expired adds its line at the end ([`Ledger::append`]); the hand-over of a line from spawn
//! to supervisor (`> FROM TO ID`, [`Ledger::hand_over`]) and a supervisor's release of its
//! lines at the end (`- OWNER`, [`Ledger::release`]) are lines of their own, which readers
//! apply to the entries above them and the next rewrite folds in. In a burst of hundreds of
//! spawns every one of them rewrote the whole ledger twice, and every supervisor once more
//! as `kill --all` ended them, under the lock all of them wait for. (A fleetctl from before
//! skips these lines as ones it cannot read: a handed-over entry then counts for as long as
//! its spawn lives, as a spawn's own line does, and a released one until its 10 s are over
//! or its owner is checked.)

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
    /// `> FROM TO ID`: the entries of agent `id` owned by `from` are owned by `to` from here
    /// on.
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
            Change::HandOver { from, to, id } => {
                for e in entries.iter_mut().filter(|e| e.id == *id && e.owner() == Some(*from)) {
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
        let entries = entries_of(&String::from_utf8_lossy(&bytes));
        let torn = bytes.last().is_some_and(|b| *b != b'\n');
        Ok(Ledger { file, path: path.to_path_buf(), len: bytes.len() as u64, torn, entries })
    }

    /// Adds `entry` by writing its line after the others: for a caller that changed no other
    /// entry (one that did pushes it and calls [`Ledger::save`], which writes them all).
    pub fn append(&mut self, entry: Entry) -> Result<()> {
        let line = entry.line();
        self.write_at_end(&line)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Hands the entries of agent `id` that `from` owns to `to`, in the ledger at `path`,
    /// under its lock: one line appended, nothing read.
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
        let mut ledger = Ledger { file, path: path.to_path_buf(), len, torn: last[0] != b'\n', entries: Vec::new() };
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
        (self.len, self.torn) = (len, false);
        Ok(())
    }
}

/// The entries a ledger's text holds, its hand-over and release lines applied. Lines are checked one by
/// one: a torn or garbled one costs that line only.
pub fn entries_of(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        match Change::parse(line) {
            Some(change) => change.apply(&mut entries),
            None => entries.extend(Entry::parse(line)),
        }
    }
    entries
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
mod tests {
    use super::*;

    fn entry(ms: u64, id: &str) -> Entry {
        Entry {
            at: Duration::from_millis(ms),
            reserve: 32 << 20,
            pid: 42,
            start_ticks: Some(7),
            id: id.parse().expect("id"),
            lasting: false,
        }
    }

    #[test]
    fn round_trips_and_skips_torn_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("state/admission.lock");
        let mut ledger = Ledger::lock(&path).expect("lock");
        assert!(ledger.entries.is_empty());
        ledger.entries = vec![entry(1000, "a")];
        ledger.save().expect("save");
        // A longer ledger overwrites a shorter one without a truncate.
        ledger.entries = vec![entry(1000, "a"), entry(2000, "b")];
        ledger.save().expect("save");
        drop(ledger);
        // A torn tail, as a spawn killed mid-rewrite leaves it.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(b"3000 335544\xff\xfe");
        std::fs::write(&path, bytes).expect("write");
        let mut ledger = Ledger::lock(&path).expect("lock");
        assert_eq!(ledger.entries, vec![entry(1000, "a"), entry(2000, "b")]);
        // Shorter content replaces longer, torn tail and all.
        ledger.entries.truncate(1);
        ledger.save().expect("save");
        drop(ledger);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), entry(1000, "a").line());
    }

    #[test]
    fn a_lasting_reservation_round_trips() {
        let lasting = Entry { lasting: true, ..entry(2500, "r") };
        assert_eq!(lasting.line(), format!("2500 {} 42:7 r R\n", 32 << 20));
        assert_eq!(Entry::parse(lasting.line().trim_end()), Some(lasting));
        assert_eq!(Entry::parse(entry(1, "a").line().trim_end()), Some(entry(1, "a")));
    }

    #[test]
    fn refuses_lines_that_are_not_entries() {
        for bad in
            ["", "1 2 3", "1 2 3 ../x", "x 2 3 a", "1 2 3 a extra", "1 -2 3 a", "1 2 3 a R x", "1 2 3: a", "1 2 :4 a"]
        {
            assert_eq!(Entry::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_line_of_an_older_fleetctl_loads_without_an_owner_start() {
        let old = Entry::parse("2500 1048576 42 r R").expect("an old lasting line");
        assert_eq!((old.pid, old.start_ticks, old.owner(), old.lasting), (42, None, None, true));
        // Written back as it was read until it is adopted or dropped.
        assert_eq!(old.line(), "2500 1048576 42 r R\n");
    }

    #[test]
    fn entries_whose_owner_is_gone_are_dropped_and_old_ones_adopted_or_dropped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let proc_root = Path::new("/proc");
        let me = ProcessRef::of(proc_root, std::process::id() as i32).expect("this process");
        let mine = |id: &str| Entry { pid: me.pid, start_ticks: Some(me.start_ticks), ..entry(1, id) };
        let mut ledger = Ledger::lock(&tmp.path().join("admission.lock")).expect("lock");
        let entries = vec![
            mine("live"),
            // This pid with another start time: a dead owner whose pid was reused.
            Entry { start_ticks: Some(me.start_ticks + 1), ..mine("reused") },
            // An old line that is adopted, and one that is not.
            Entry { pid: 1, start_ticks: None, lasting: true, ..entry(1, "adopted") },
            Entry { pid: 1, start_ticks: None, ..entry(1, "orphan") },
        ];
        let adopt = |e: &Entry| (e.id.as_str() == "adopted").then_some(me);
        let ids = |l: &Ledger| l.entries.iter().map(|e| e.id.to_string()).collect::<Vec<_>>();
        ledger.entries = entries.clone();
        assert!(ledger.drop_gone(proc_root, |_| true, adopt));
        assert_eq!(ids(&ledger), ["live", "adopted"]);
        assert_eq!(ledger.entries[1].owner(), Some(me), "adopted");
        assert!(!ledger.drop_gone(proc_root, |_| true, adopt), "nothing more to drop");
        ledger.entries = entries;
        assert!(ledger.drop_gone(proc_root, |e| e.id.as_str() != "orphan", adopt));
        assert_eq!(ids(&ledger), ["live", "adopted", "orphan"], "only the entries checked");
    }

    #[test]
    fn an_owner_releases_its_own_lines_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("admission.lock");
        let owner = ProcessRef { pid: 42, start_ticks: 7 };
        let mut ledger = Ledger::lock(&path).expect("lock");
        ledger.entries = vec![
            entry(1, "mine"),
            Entry { lasting: true, ..entry(2, "mine-too") },
            // Its pid, another start time: another process.
            Entry { start_ticks: Some(8), ..entry(3, "reused") },
            Entry { start_ticks: None, ..entry(4, "old") },
            Entry { pid: 43, ..entry(5, "other") },
        ];
        ledger.save().expect("save");
        drop(ledger);
        Ledger::release(&path, owner).expect("release");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with("- 42:7\n") && text.lines().count() == 6, "appended, not rewritten: {text}");
        let ids: Vec<String> = Ledger::lock(&path).expect("lock").entries.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["reused", "old", "other"]);
        Ledger::release(&path, owner).expect("nothing left to release is no error");
        // A release applies to the lines above it only.
        let mut ledger = Ledger::lock(&path).expect("lock");
        ledger.append(entry(6, "after")).expect("append");
        drop(ledger);
        let ids: Vec<String> = Ledger::lock(&path).expect("lock").entries.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["reused", "old", "other", "after"]);
    }

    #[test]
    fn a_hand_over_line_moves_its_agents_lines_to_the_new_owner_until_a_rewrite_folds_it_in() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("admission.lock");
        let (spawn, supervisor) = (ProcessRef { pid: 42, start_ticks: 7 }, ProcessRef { pid: 43, start_ticks: 9 });
        let mut ledger = Ledger::lock(&path).expect("lock");
        ledger.append(entry(1, "a")).expect("append");
        // Another agent's line of the same spawn pid and start, and a's line under another owner.
        ledger.append(entry(2, "b")).expect("append");
        ledger.append(Entry { pid: 44, ..entry(3, "a") }).expect("append");
        drop(ledger);
        Ledger::hand_over(&path, &"a".parse().expect("id"), spawn, supervisor).expect("hand over");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 4, "appended, not rewritten: {text}");
        let mut ledger = Ledger::lock(&path).expect("lock");
        let owners: Vec<(String, i32)> = ledger.entries.iter().map(|e| (e.id.to_string(), e.pid)).collect();
        assert_eq!(owners, [("a".into(), 43), ("b".into(), 42), ("a".into(), 44)]);
        ledger.save().expect("save");
        drop(ledger);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains('>') && text.lines().count() == 3, "folded in: {text}");
        assert_eq!(Ledger::lock(&path).expect("lock").entries[0].owner(), Some(supervisor));
    }

    #[test]
    fn a_line_appended_after_a_torn_tail_starts_on_a_line_of_its_own() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("admission.lock");
        let (spawn, supervisor) = (ProcessRef { pid: 42, start_ticks: 7 }, ProcessRef { pid: 43, start_ticks: 9 });
        // A hand-over after a torn tail.
        std::fs::write(&path, format!("{}3000 3355", entry(1, "a").line())).expect("seed");
        Ledger::hand_over(&path, &"a".parse().expect("id"), spawn, supervisor).expect("hand over");
        let ledger = Ledger::lock(&path).expect("lock");
        assert_eq!(ledger.entries.len(), 1);
        assert_eq!(ledger.entries[0].owner(), Some(supervisor));
        drop(ledger);
        // An entry appended after a torn tail.
        std::fs::write(&path, "3000 3355").expect("seed");
        let mut ledger = Ledger::lock(&path).expect("lock");
        ledger.append(entry(2, "b")).expect("append");
        drop(ledger);
        let ids: Vec<String> = Ledger::lock(&path).expect("lock").entries.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["b"]);
    }

    #[test]
    fn change_lines_parse_strictly() {
        let (a, b) = (ProcessRef { pid: 1, start_ticks: 2 }, ProcessRef { pid: 3, start_ticks: 4 });
        let hand_over = Change::HandOver { from: a, to: b, id: "x".parse().expect("id") };
        assert_eq!(hand_over.line(), "> 1:2 3:4 x\n");
        assert_eq!(Change::parse(hand_over.line().trim_end()), Some(hand_over));
        let release = Change::Release { owner: a };
        assert_eq!(release.line(), "- 1:2\n");
        assert_eq!(Change::parse(release.line().trim_end()), Some(release));
        let bad = [
            "> 1:2 3:4",
            "> 1 3:4 x",
            "> 1:2 3:4 x y",
            ">1:2 3:4 x",
            "1:2 3:4 x",
            "> 1:2 3:4 ../x",
            "- 1",
            "- 1:2 x",
            "-1:2",
            "- ",
        ];
        for bad in bad {
            assert_eq!(Change::parse(bad), None, "{bad}");
            assert_eq!(Entry::parse(bad), None, "{bad}: not an entry either");
        }
    }

    #[test]
    fn young_means_recent_and_not_from_the_future() {
        let s = Duration::from_secs;
        assert!(young(s(95), s(100), s(10)));
        assert!(young(s(90), s(100), s(10)));
        assert!(!young(s(89), s(100), s(10)));
        assert!(!young(s(101), s(100), s(10)));
    }
}
