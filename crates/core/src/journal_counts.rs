//! Fleet-level counts from the event journal, for `fleetctl metrics`: there is no daemon to
//! count as things happen, so the journal, which every killer and supervisor appends to, is
//! the record.
//!
//! A scrape must not read a journal of many megabytes every 15 s, so the counts are cached
//! with the byte offset they cover (`<log-dir>/events.counts.json`, beside the journal, so
//! both survive a reboot) and each scrape reads only what was appended since. The cache
//! names the file it covers by device and inode, with its first line; after a rotation
//! ([`crate::journal`]) that file is a generation, and the count goes on from the cached
//! offset through it and every newer generation to the journal, so counters keep counting
//! across rotations. A cached file no generation is any more (rotated out between two
//! counts, truncated, replaced) counts every generation from the start again, as a
//! Prometheus counter reset. A count reads 64 KiB at a time and holds at most one line
//! besides, so even a full count of a large journal stays small in the memory-locked
//! watcher (`watch --metrics-file`).

use crate::{Error, Result, event::Kind};
use serde::{Deserialize, Serialize};
use std::{
    borrow::Cow,
    collections::BTreeMap,
    fs::File,
    io::{ErrorKind, Read, Seek, SeekFrom},
    os::unix::fs::{FileExt, MetadataExt},
    path::Path,
};

/// What the journal says happened, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalCounts {
    /// `ts` of the journal's first line: when counting started.
    pub first_ts: Option<String>,
    /// Lines by `event` (`oom_kill`, `supervisor_died`, `spawn`, ...).
    pub events: BTreeMap<String, u64>,
    /// `exit` lines by `state`.
    pub exits_by_state: BTreeMap<String, u64>,
    /// `exit` lines by `killed_by` (`relief`, `watch`, `user`, `timeout`, ...), where set.
    pub exits_by_killer: BTreeMap<String, u64>,
    /// `spawn_refused` lines by `reason`.
    pub refusals_by_reason: BTreeMap<String, u64>,
    /// Lines that are not a JSON object with an `event`.
    pub unreadable_lines: u64,
}

/// The fields counting needs; the rest of a line is skipped unparsed.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    state: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    killed_by: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

impl JournalCounts {
    /// Counts complete lines of `text` (the caller passes text ending at a newline).
    pub fn add_lines(&mut self, text: &[u8]) {
        for raw in text.split(|b| *b == b'\n') {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(line) = serde_json::from_slice::<Line>(raw) else {
                self.unreadable_lines += 1;
                continue;
            };
            if self.first_ts.is_none() {
                self.first_ts = line.ts.map(Cow::into_owned);
            }
            bump(&mut self.events, &line.event);
            match Kind::from_name(&line.event) {
                Some(Kind::Exit) => {
                    if let Some(state) = &line.state {
                        bump(&mut self.exits_by_state, state);
                    }
                    if let Some(by) = &line.killed_by {
                        bump(&mut self.exits_by_killer, by);
                    }
                }
                Some(Kind::SpawnRefused) => {
                    bump(&mut self.refusals_by_reason, line.reason.as_deref().unwrap_or("unknown"))
                }
                _ => {}
            }
        }
    }

    /// Lines of one event kind.
    pub fn event(&self, kind: Kind) -> u64 {
        self.events.get(kind.name()).copied().unwrap_or(0)
    }
}

/// The cache: counts up to `offset` of the journal file `dev`/`ino` whose first line is
/// `first_line`.
#[derive(Debug, Serialize, Deserialize)]
struct Cache {
    dev: u64,
    ino: u64,
    offset: u64,
    first_line: String,
    counts: JournalCounts,
}

/// The first line is the fingerprint; this much of it is enough (it starts with a time).
const FINGERPRINT_MAX: usize = 256;

/// Bytes read from the journal at a time.
const CHUNK: usize = 64 * 1024;

/// A journal line is a few hundred bytes. A longer one is damage (a crash can leave a run of
/// NUL bytes with no newline): it is one unreadable line, skipped without being held.
const MAX_LINE: usize = 1 << 20;

/// Counts a journal fed in pieces of any size, holding only the line a piece ends inside.
#[derive(Debug, Default)]
struct ChunkCounter {
    counts: JournalCounts,
    /// The start of a line that is not complete yet.
    carry: Vec<u8>,
    /// The incomplete line is past [`MAX_LINE`]: its bytes are dropped until its newline.
    overlong: bool,
    /// Bytes fed so far.
    fed: u64,
    /// Bytes fed up to the end of the last complete line.
    complete: u64,
}

impl ChunkCounter {
    /// Goes on counting from `counts`.
    fn new(counts: JournalCounts) -> ChunkCounter {
        ChunkCounter { counts, ..ChunkCounter::default() }
    }

    /// Counts the lines `piece` completes; the rest waits for the next piece.
    fn feed(&mut self, piece: &[u8]) {
        let start_of_piece = self.fed;
        self.fed += piece.len() as u64;
        let Some(last) = piece.iter().rposition(|b| *b == b'\n') else {
            self.hold(piece);
            return;
        };
        let mut rest = 0;
        if self.overlong || !self.carry.is_empty() {
            // The line begun in an earlier piece ends at this piece's first newline.
            let first = piece.iter().position(|b| *b == b'\n').unwrap_or(last);
            self.hold(&piece[..=first]);
            if self.overlong {
                self.counts.unreadable_lines += 1;
            } else {
                self.counts.add_lines(&self.carry);
            }
            self.carry.clear();
            self.overlong = false;
            rest = first + 1;
        }
        self.counts.add_lines(&piece[rest..=last]);
        self.complete = start_of_piece + last as u64 + 1;
        self.hold(&piece[last + 1..]);
    }

    fn hold(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.carry.len() + bytes.len() > MAX_LINE {
            self.overlong = true;
            self.carry = Vec::new();
        } else {
            self.carry.extend_from_slice(bytes);
        }
    }

    /// Begins a new file: a line the last one ended inside is dropped, and the byte counts
    /// start again.
    fn restart_file(&mut self) {
        self.carry.clear();
        self.overlong = false;
        self.fed = 0;
        self.complete = 0;
    }

    /// The counts of the complete lines fed, and how many bytes those lines were: a line
    /// still being appended is counted next time.
    fn finish(self) -> (JournalCounts, u64) {
        (self.counts, self.complete)
    }
}

/// Counts the journal at `journal` (all its generations), reading only what was appended
/// since the counts cached at `cache` (updated when writable; a cache that cannot be
/// written costs a full count per call, not an error). A missing journal is zero counts.
pub fn count(journal: &Path, cache: &Path) -> Result<JournalCounts> {
    let files = crate::journal::generations(journal);
    let mut opened = Vec::with_capacity(files.len());
    for path in &files {
        match File::open(path) {
            Ok(f) => {
                let meta = f.metadata().map_err(|e| Error::io("stat", path, e))?;
                opened.push((path.as_path(), f, meta));
            }
            // Rotated away since it was listed: the next count sees the new layout.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("open", path, e)),
        }
    }
    let Some(last) = opened.len().checked_sub(1) else { return Ok(JournalCounts::default()) };
    let cached = std::fs::read(cache).ok().and_then(|b| serde_json::from_slice::<Cache>(&b).ok());
    // Where the cache left off: the file it names, if one of the generations still is it.
    let resume = cached.and_then(|c| {
        let at = opened.iter().position(|(_, file, meta)| {
            c.dev == meta.dev()
                && c.ino == meta.ino()
                && c.offset <= meta.len()
                && first_line(file).ok().is_some_and(|l| l == c.first_line)
        })?;
        Some((at, c))
    });
    if let Some((at, c)) = &resume
        && *at == last
        && c.offset == opened[last].2.len()
    {
        return Ok(resume.map(|(_, c)| c.counts).unwrap_or_default());
    }
    let (first, mut offset, counts) =
        resume.map_or((0, 0, JournalCounts::default()), |(at, c)| (at, c.offset, c.counts));
    let mut counter = ChunkCounter::new(counts);
    for (path, file, meta) in &opened[first..] {
        let complete = count_file(&mut counter, path, file, offset, meta.len())?;
        offset += complete;
        if path != &opened[last].0 {
            offset = 0;
        }
    }
    let (counts, _) = counter.finish();
    let (_, file, meta) = &opened[last];
    let new =
        Cache { dev: meta.dev(), ino: meta.ino(), offset, first_line: first_line(file).unwrap_or_default(), counts };
    if let Ok(text) = serde_json::to_vec(&new) {
        // Another scrape may write it at the same time; either result is right.
        let _ = crate::paths::write_atomic(cache, &text);
    }
    Ok(new.counts)
}

/// Counts one file from `offset` up to `len` (the size seen when it was opened: lines
/// appended meanwhile are the next count's) into `counter`; returns the bytes of the
/// complete lines counted. A line the file ends inside is dropped, not carried into the
/// next file: in the journal only its last file can end inside a line.
fn count_file(counter: &mut ChunkCounter, path: &Path, file: &File, offset: u64, len: u64) -> Result<u64> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek in", path, e))?;
    let mut unread = file.take(len.saturating_sub(offset));
    counter.restart_file();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        match unread.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => counter.feed(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    Ok(counter.complete)
}

/// The start of the first line, at most [`FINGERPRINT_MAX`] bytes.
fn first_line(file: &File) -> std::io::Result<String> {
    let mut buf = [0u8; FINGERPRINT_MAX];
    let n = file.read_at(&mut buf, 0)?;
    let end = buf[..n].iter().position(|b| *b == b'\n').unwrap_or(n);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(test)]
#[path = "journal_counts_tests.rs"]
mod tests;
