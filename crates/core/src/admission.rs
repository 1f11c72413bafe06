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

use crate::{Error, Result, id::AgentId};
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
    /// The admitted `spawn` process, which makes the agent's cgroup.
    pub pid: i32,
    /// The agent.
    pub id: AgentId,
    /// A reservation the agent asked for (`--memory-reserve`): it lasts as long as the
    /// agent, not only while it starts.
    pub lasting: bool,
}

impl Entry {
    fn line(&self) -> String {
        let lasting = if self.lasting { " R" } else { "" };
        format!("{} {} {} {}{lasting}\n", self.at.as_millis(), self.reserve, self.pid, self.id)
    }

    fn parse(line: &str) -> Option<Entry> {
        let mut f = line.split(' ');
        let entry = Entry {
            at: Duration::from_millis(f.next()?.parse().ok()?),
            reserve: f.next()?.parse().ok()?,
            pid: f.next()?.parse().ok()?,
            id: f.next()?.parse().ok()?,
            lasting: false,
        };
        match (f.next(), f.next()) {
            (None, _) => Some(entry),
            (Some("R"), None) => Some(Entry { lasting: true, ..entry }),
            _ => None,
        }
    }
}

/// The ledger, locked for as long as it lives.
#[derive(Debug)]
pub struct Ledger {
    file: File,
    path: PathBuf,
    /// Bytes on file, so a save that does not shrink it needs no truncate.
    len: u64,
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
        // Lines are checked one by one: a torn or garbled one costs that line only.
        let entries = String::from_utf8_lossy(&bytes).lines().filter_map(Entry::parse).collect();
        Ok(Ledger { file, path: path.to_path_buf(), len: bytes.len() as u64, entries })
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
        self.len = len;
        Ok(())
    }
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
        Entry { at: Duration::from_millis(ms), reserve: 32 << 20, pid: 42, id: id.parse().expect("id"), lasting: false }
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
        assert_eq!(lasting.line(), format!("2500 {} 42 r R\n", 32 << 20));
        assert_eq!(Entry::parse(lasting.line().trim_end()), Some(lasting));
        assert_eq!(Entry::parse(entry(1, "a").line().trim_end()), Some(entry(1, "a")));
    }

    #[test]
    fn refuses_lines_that_are_not_entries() {
        for bad in ["", "1 2 3", "1 2 3 ../x", "x 2 3 a", "1 2 3 a extra", "1 -2 3 a", "1 2 3 a R x"] {
            assert_eq!(Entry::parse(bad), None, "{bad}");
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
