//! What the soak did, shared by its actors and read by the checks: every agent it tried to
//! spawn and what it is, which ones it killed or orphaned, the counts for the totals, the
//! commands that answered other than documented, and the fleet's use over time.

use std::{
    collections::BTreeMap,
    sync::{Mutex, RwLock, atomic::AtomicBool},
    time::{Duration, Instant},
};

/// What an agent does, which decides how it may end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Sleeps, then exits 0.
    Exits,
    /// Sleeps, then exits 3.
    Fails,
    /// `sleep 30 & sleep 30 & wait`: a process tree.
    Tree,
    /// Ignores SIGTERM, says so, sleeps.
    Stubborn,
    /// Prints a line every 300 ms (an orphan's writes meet a closed pipe).
    Chatty,
    /// A short hard timeout over a long sleep.
    TimesOut,
    /// Holds tens of MiB and sleeps: a relief candidate (or, protected, a bystander).
    Holder,
    /// Grows 4 MiB every 100 ms past the budget: the guard's to stop.
    SlowHog,
    /// Grows 32 MiB every 50 ms past the budget: often faster than the guard.
    FastHog,
    /// Asks for 1 GiB at once (perl, in Debian's essential set): past the budget faster
    /// than any guard, so the kernel's OOM killer acts at the fleet root.
    BurstHog,
    /// Grows past its own small memory limit.
    LimitHog,
}

impl Kind {
    pub fn is_hog(self) -> bool {
        matches!(self, Kind::SlowHog | Kind::FastHog | Kind::BurstHog | Kind::LimitHog)
    }
}

/// One id the soak spawned (or tried to).
#[derive(Clone, Debug)]
pub struct Agent {
    pub kind: Kind,
    pub protected: bool,
    /// `spawn` answered 0 (or died at `spawn-after-go`, after the agent started).
    pub admitted: bool,
    /// An operator `kill` was sent to it.
    pub user_killed: bool,
    /// Its supervisor was SIGKILLed.
    pub orphaned: bool,
    /// `spawn` was SIGKILLed before the agent started (`spawn-after-cgroup`).
    pub half: bool,
}

/// An agent as the last `status --json` showed it alive.
#[derive(Clone, Debug)]
pub struct Live {
    pub id: String,
    pub state: String,
    pub supervisor_pid: Option<i32>,
}

/// The fleet's use, sampled every 100 ms.
#[derive(Default, Debug)]
pub struct Usage {
    pub samples: u64,
    pub max_percent: f64,
    pub above_since: Option<Instant>,
    pub longest_above: Duration,
}

/// A race of several callers spawning one id.
#[derive(Debug)]
pub struct Race {
    pub id: String,
    pub codes: Vec<i32>,
}

#[derive(Default)]
pub struct Book {
    pub agents: BTreeMap<String, Agent>,
    pub live: Vec<Live>,
    pub counts: BTreeMap<&'static str, u64>,
    /// Commands run, and the ones that answered other than documented.
    pub commands: u64,
    pub odd_answers: Vec<String>,
    pub races: Vec<Race>,
    /// When the state disk was full: (start, end once freed).
    pub disk_full: Vec<(Instant, Option<Instant>)>,
    pub usage: Usage,
    next_id: u64,
}

impl Book {
    pub fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    /// A fresh id: ids are never reused, so each id's journal is one run's.
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:05}", self.next_id)
    }

    /// Whether the state disk was full at any moment since `since` (a command that ran then
    /// may fail for it, as documented: exit 1 and one line).
    pub fn disk_was_full(&self, since: Instant) -> bool {
        self.disk_full.iter().any(|(_, end)| end.is_none_or(|e| e + Duration::from_secs(1) >= since))
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

pub struct Shared {
    pub stop: AtomicBool,
    /// Actors hold it for reading around each action; a checkpoint takes it for writing to
    /// quiesce them.
    pub pause: RwLock<()>,
    /// Agents the spawners keep alive.
    pub target: usize,
    pub book: Mutex<Book>,
    started: Instant,
}

impl Shared {
    pub fn new(target: usize) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            pause: RwLock::new(()),
            target,
            book: Mutex::new(Book::default()),
            started: Instant::now(),
        }
    }

    pub fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A line on the run's timeline (faults, with the id they hit), with the journal's
    /// clock, so a violation can be matched to what happened just before it.
    pub fn note(&self, what: &str) {
        let at = std::time::SystemTime::now();
        println!("soak: +{:.1}s ({}) {what}", self.started.elapsed().as_secs_f64(), fleet_core::timefmt::rfc3339(at));
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }
}
