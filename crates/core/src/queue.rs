//! The spawn queue: a line of waiting `spawn --queue` callers with no daemon behind it.
//!
//! Each waiter holds a ticket: a file `<state>/queue/<seq>.<id>` it keeps open with its
//! `flock(2)` held for as long as it waits. The sequence number is taken under the admission
//! ledger's lock (one more than the highest on file), so tickets are ordered by arrival. A
//! ticket whose lock is free belongs to a waiter that died (Ctrl-C, SIGKILL): the kernel
//! dropped its lock, readers skip it, and whoever sees it first removes it. The head of the
//! line is the lowest live ticket.
//!
//! Only the head can be admitted (the line is first come first served), so only the head
//! sleeps on inotify on the queue dir ([`Alarm`]), for [`wake`], which whatever frees memory
//! or a slot calls (a supervisor as it exits, a failed spawn giving back its admission), and
//! its own cancel mark. Its watch is not filtered: every ticket joining or leaving anywhere
//! in the line wakes it too, for one more admission check. A waiter behind others waits only
//! for the ticket directly ahead of it to go ([`Gone`]: a shared lock on that ticket), so an
//! event wakes one waiter, not all of them, and a line of hundreds holds one inotify
//! instance, not hundreds (`fs.inotify.max_user_instances` is 128 per user by default).

mod ahead;
mod card;

pub use ahead::{Bell, Gone};

use crate::{Error, Result, admission::Ledger, id::AgentId, labels::Labels};
use std::{
    fs::{File, OpenOptions},
    io::Read,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// What a waiter waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The fleet's memory would reach the spawn threshold.
    Memory,
    /// A workspace slot or port block pool is exhausted.
    Pool,
    /// The fleet has its maximum number of agents.
    Cap,
    /// Others wait ahead of it.
    Turn,
}

impl Reason {
    /// The word in `fleetctl queue` and its JSON.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Memory => "memory",
            Reason::Pool => "pool",
            Reason::Cap => "cap",
            Reason::Turn => "turn",
        }
    }

    fn parse(word: &str) -> Option<Reason> {
        [Reason::Memory, Reason::Pool, Reason::Cap, Reason::Turn].into_iter().find(|r| r.name() == word)
    }
}

/// One live waiter, as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    /// Its place in arrival order (not its position: earlier waiters may have left).
    pub seq: u64,
    /// The agent it would spawn.
    pub id: AgentId,
    /// The waiting `spawn` process.
    pub pid: i32,
    /// When it joined the line.
    pub since: SystemTime,
    /// What it waits for, as it last found.
    pub reason: Reason,
    /// The labels of the agent it would spawn (`spawn --label`), for `kill -l`.
    pub labels: Labels,
    /// The name of its bell, which `kill` rings; None: it has none.
    pub bell: Option<String>,
}

/// The queue dir of the state dir `state`.
pub fn dir(state: &Path) -> PathBuf {
    state.join("queue")
}

/// The file [`wake`] touches.
fn wake_path(dir: &Path) -> PathBuf {
    dir.join("wake")
}

/// The ticket file of waiter `seq` for agent `id`.
fn ticket_path(dir: &Path, seq: u64, id: &AgentId) -> PathBuf {
    dir.join(format!("{seq:012}.{id}"))
}

/// The mark `kill` leaves for the waiter with ticket `seq`.
fn cancel_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("cancel.{seq}"))
}

/// Wakes every waiter in `dir`: open for writing and close, which inotify reports. Cheap
/// when nobody waits (no queue dir: nothing is done).
pub fn wake(dir: &Path) {
    if dir.is_dir() {
        let _ = OpenOptions::new().create(true).truncate(false).write(true).open(wake_path(dir));
    }
}

/// A waiter's own ticket: its place in line for as long as it lives.
#[derive(Debug)]
pub struct Ticket {
    /// Its bell until its waiter takes it ([`Ticket::take_bell`]).
    bell: Option<Bell>,
    file: File,
    path: PathBuf,
    dir: PathBuf,
    /// Its sequence number.
    pub seq: u64,
    since: SystemTime,
}

impl Ticket {
    /// Joins the line in `dir` for agent `id` with `labels`. The caller holds the admission
    /// lock, which makes the sequence number one more than every ticket before it.
    pub fn join(dir: &Path, id: &AgentId, reason: Reason, labels: &Labels) -> Result<Ticket> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let seq = tickets(dir)?.iter().map(|(seq, _, _)| *seq).max().unwrap_or(0) + 1;
        // Made and locked under a temporary name, then renamed into place: a reader never
        // sees the ticket unlocked and takes it for a dead waiter's.
        let temp = dir.join(format!(".join.{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| Error::io("create", &temp, e))?;
        file.lock().map_err(|e| Error::io("lock", &temp, e))?;
        // A mark `kill` left for an earlier ticket of this number, which left before it saw
        // the mark, is not this waiter's (numbers restart once the line empties).
        let _ = std::fs::remove_file(cancel_path(dir, seq));
        let path = ticket_path(dir, seq, id);
        // Bound before its name is written, so nobody can take the name first. Without one
        // (a bind that failed) the waiter still waits; `kill` reaches it at its next check.
        let bell = Bell::hang().ok();
        let name = bell.as_ref().map(|b| b.name().to_string());
        let ticket = Ticket { bell, file, path, dir: dir.to_path_buf(), seq, since: SystemTime::now() };
        let text = card::write(reason, std::process::id(), ticket.since, name.as_deref(), labels);
        ticket.file.write_all_at(text.as_bytes(), 0).map_err(|e| Error::io("write", &temp, e))?;
        std::fs::rename(&temp, &ticket.path).map_err(|e| Error::io("rename", &temp, e))?;
        Ok(ticket)
    }

    /// Writes what it waits for now, in place (the lock is on this inode).
    pub fn set_reason(&self, reason: Reason) -> Result<()> {
        let field = card::reason_field(reason);
        self.file.write_all_at(field.as_bytes(), card::REASON_AT).map_err(|e| Error::io("write", &self.path, e))
    }

    /// Whether `kill` has taken this waiter out of line.
    pub fn cancelled(&self) -> bool {
        cancel_path(&self.dir, self.seq).exists()
    }

    /// The live waiters ahead of this one (dead ones are removed on the way).
    pub fn ahead(&self) -> Result<usize> {
        Ok(line(&self.dir)?.iter().filter(|w| w.seq < self.seq).count())
    }

    /// The live waiter directly ahead of this one, found with one listing of the dir and a
    /// look at tickets from this one backwards (dead ones are removed on the way); None: it
    /// is the head of the line.
    pub fn directly_ahead(&self) -> Result<Option<Waiter>> {
        for (seq, id, path) in tickets(&self.dir)?.into_iter().rev().filter(|(seq, _, _)| *seq < self.seq) {
            if let Some(waiter) = live(&self.dir, seq, id, &path)? {
                return Ok(Some(waiter));
            }
        }
        Ok(None)
    }

    /// Its bell, which [`Gone`] and [`cancel`] ring, for its waiter to keep; None when it
    /// has none or it was taken already.
    pub fn take_bell(&mut self) -> Option<Bell> {
        self.bell.take()
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When it joined.
    pub fn since(&self) -> SystemTime {
        self.since
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Removed before the lock goes with the descriptor; the close wakes the next waiter.
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(cancel_path(&self.dir, self.seq));
    }
}

/// Every ticket file in `dir`: (seq, id, path), in arrival order.
fn tickets(dir: &Path) -> Result<Vec<(u64, AgentId, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    let mut found: Vec<_> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (seq, id) = name.split_once('.')?;
            Some((seq.parse().ok()?, id.parse().ok()?, e.path()))
        })
        .collect();
    found.sort_by_key(|(seq, _, _)| *seq);
    Ok(found)
}

/// The live waiters in `dir`, in arrival order. A ticket whose lock is free is a dead
/// waiter's: it is removed (under its lock, so a live one is never taken for dead). One
/// `kill` has marked is out of line already, while its waiter wakes and leaves.
pub fn line(dir: &Path) -> Result<Vec<Waiter>> {
    let mut waiting = Vec::new();
    for (seq, id, path) in tickets(dir)? {
        waiting.extend(live(dir, seq, id, &path)?);
    }
    Ok(waiting)
}

/// The waiter of ticket `seq` if it lives and is still in line; a dead one's ticket is
/// removed (see [`line`]).
fn live(dir: &Path, seq: u64, id: AgentId, path: &Path) -> Result<Option<Waiter>> {
    let Ok(mut file) = File::open(path) else { return Ok(None) };
    match file.try_lock() {
        Ok(()) => {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(cancel_path(dir, seq));
            return Ok(None);
        }
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
    }
    if cancel_path(dir, seq).exists() {
        return Ok(None);
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let (pid, since, reason, labels) = card::read(&text);
    Ok(Some(Waiter { seq, id, pid, since, reason, labels, bell: card::bell(&text) }))
}

/// What [`cancel`] found of a waiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// Taken out of line: it will start nothing.
    Withdrawn(Waiter),
    /// Admitted already (the ledger has its spawn's entry): it still holds its ticket while
    /// it takes its id and leases, and then starts its agent, or gives its admission back
    /// and waits again.
    Admitted(Waiter),
}

/// Takes the live waiter for agent `id` out of line: leaves the mark its waiter looks for,
/// which wakes it. `None` when no live one waits for `id`. The admission `ledger`'s lock,
/// held, is what makes this safe: a waiter checks its mark under it before it decides, so
/// a waiter is either told in time or found admitted, never both.
pub fn cancel(dir: &Path, id: &AgentId, ledger: &Ledger) -> Result<Option<Cancel>> {
    let Some(waiter) = line(dir)?.into_iter().find(|w| &w.id == id) else { return Ok(None) };
    if ledger.entries.iter().any(|e| &e.id == id && e.pid == waiter.pid) {
        return Ok(Some(Cancel::Admitted(waiter)));
    }
    let mark = cancel_path(dir, waiter.seq);
    std::fs::write(&mark, b"").map_err(|e| Error::io("write", &mark, e))?;
    // The head sees the mark through inotify; one behind others sleeps on its bell.
    if let Some(bell) = &waiter.bell {
        ahead::ring(bell);
    }
    Ok(Some(Cancel::Withdrawn(waiter)))
}

/// An inotify watch on the queue dir: what a waiter sleeps on.
pub struct Alarm {
    fd: nix::sys::inotify::Inotify,
}

impl Alarm {
    /// Watches `dir` (made if missing).
    pub fn watch(dir: &Path) -> Result<Alarm> {
        use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let fd = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| Error::io("inotify_init", dir, e.into()))?;
        fd.add_watch(dir, F::IN_CLOSE_WRITE | F::IN_CREATE | F::IN_DELETE | F::IN_MOVED_TO)
            .map_err(|e| Error::io("inotify_add_watch", dir, e.into()))?;
        Ok(Alarm { fd })
    }

    /// Sleeps until something changes in the queue dir or `timeout` passes; true when woken.
    pub fn sleep(&self, timeout: Duration) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        let woken = matches!(poll(&mut fds, ms), Ok(n) if n > 0);
        // Drain: one look at the line answers every event that came together.
        while self.fd.read_events().is_ok_and(|events| !events.is_empty()) {}
        woken
    }
}

#[cfg(test)]
mod tests;
