//! Fleet-level counts from the event journal, for `fleetctl metrics`: there is no daemon to
//! count as things happen, so the journal, which every killer and supervisor appends to, is
//! the record.
//!
//! A scrape must not read a journal of many megabytes every 15 s, so the counts are cached
//! with the byte offset they cover (`<log-dir>/events.counts.json`, beside the journal, so
//! both survive a reboot) and each scrape reads only what was appended since. The cache is
//! for this journal file only: its device and inode, a size not below the offset and the
//! same first line; anything else (rotation, truncation, a new file) counts from the start
//! again, as a Prometheus counter reset. A count reads 64 KiB at a time and holds at most one
//! line besides, so even a full count of a large journal stays small in the
//! memory-locked watcher (`watch --metrics-file`).

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

    /// The counts of the complete lines fed, and how many bytes those lines were: a line
    /// still being appended is counted next time.
    fn finish(self) -> (JournalCounts, u64) {
        (self.counts, self.complete)
    }
}

/// Counts the journal at `journal`, reading only what was appended since the counts cached
/// at `cache` (updated when writable; a cache that cannot be written costs a full count per
/// call, not an error). A missing journal is zero counts.
pub fn count(journal: &Path, cache: &Path) -> Result<JournalCounts> {
    let mut file = match File::open(journal) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(JournalCounts::default()),
        Err(e) => return Err(Error::io("open", journal, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io("stat", journal, e))?;
    let cached = std::fs::read(cache).ok().and_then(|b| serde_json::from_slice::<Cache>(&b).ok());
    let valid = cached.filter(|c| {
        c.dev == meta.dev()
            && c.ino == meta.ino()
            && c.offset <= meta.len()
            && first_line(&file).ok().is_some_and(|l| l == c.first_line)
    });
    if let Some(c) = &valid
        && c.offset == meta.len()
    {
        return Ok(valid.map(|c| c.counts).unwrap_or_default());
    }
    let (counts, offset) = valid.map_or((JournalCounts::default(), 0), |c| (c.counts, c.offset));
    file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek in", journal, e))?;
    // Up to the size seen above: lines appended while this count runs are the next one's.
    let mut unread = (&file).take(meta.len() - offset);
    let mut counter = ChunkCounter::new(counts);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        match unread.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => counter.feed(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", journal, e)),
        }
    }
    let (counts, complete) = counter.finish();
    let new = Cache {
        dev: meta.dev(),
        ino: meta.ino(),
        offset: offset + complete,
        first_line: first_line(&file).unwrap_or_default(),
        counts,
    };
    if let Ok(text) = serde_json::to_vec(&new) {
        // Another scrape may write it at the same time; either result is right.
        let _ = crate::paths::write_atomic(cache, &text);
    }
    Ok(new.counts)
}

/// The start of the first line, at most [`FINGERPRINT_MAX`] bytes.
fn first_line(file: &File) -> std::io::Result<String> {
    let mut buf = [0u8; FINGERPRINT_MAX];
    let n = file.read_at(&mut buf, 0)?;
    let end = buf[..n].iter().position(|b| *b == b'\n').unwrap_or(n);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, lines: &[&str]) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
        for l in lines {
            writeln!(f, "{l}").expect("write");
        }
    }

    const EXIT_RELIEF: &str =
        r#"{"ts":"2026-01-01T00:00:00Z","event":"exit","id":"a","state":"killed","killed_by":"relief"}"#;
    const EXIT_GUARD: &str = r#"{"ts":"2026-01-01T00:00:01Z","event":"exit","id":"b","state":"killed","killed_by":"watch","cause":"killed by \"watch\""}"#;
    const OOM: &str = r#"{"ts":"2026-01-01T00:00:02Z","event":"oom_kill","id":"c","oom_kills":1}"#;
    const EXIT_OOM: &str =
        r#"{"ts":"2026-01-01T00:00:02Z","event":"exit","id":"c","state":"oom-killed","killed_by":null}"#;
    const REFUSED: &str =
        r#"{"ts":"2026-01-01T00:00:03Z","event":"spawn_refused","id":"d","reason":"memory","used_percent":86.0}"#;
    const DIED: &str = r#"{"ts":"2026-01-01T00:00:04Z","event":"supervisor_died","id":"e","seen_by":"status"}"#;

    #[test]
    fn counts_events_exits_killers_and_refusals() {
        let mut c = JournalCounts::default();
        let text = [EXIT_RELIEF, EXIT_GUARD, OOM, EXIT_OOM, REFUSED, REFUSED, DIED, "{\"torn", ""].join("\n");
        c.add_lines(text.as_bytes());
        assert_eq!(c.first_ts.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(c.event(Kind::Exit), 3);
        assert_eq!(c.event(Kind::OomKill), 1);
        assert_eq!(c.event(Kind::SupervisorDied), 1);
        assert_eq!(c.exits_by_state["killed"], 2);
        assert_eq!(c.exits_by_state["oom-killed"], 1);
        assert_eq!(c.exits_by_killer["relief"], 1);
        assert_eq!(c.exits_by_killer["watch"], 1);
        assert_eq!(c.exits_by_killer.len(), 2, "a null killed_by is no killer");
        assert_eq!(c.refusals_by_reason["memory"], 2);
        assert_eq!(c.unreadable_lines, 1);
    }

    #[test]
    fn the_cache_counts_only_what_was_appended_and_starts_over_for_a_new_journal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("counts.json"));
        assert_eq!(count(&journal, &cache).expect("no journal"), JournalCounts::default());

        append(&journal, &[EXIT_RELIEF, OOM]);
        assert_eq!(count(&journal, &cache).expect("count").event(Kind::Exit), 1);
        // A line being written (no newline yet) waits for the next count.
        std::fs::OpenOptions::new().append(true).open(&journal).expect("open").write_all(b"{\"ts\":").expect("w");
        let c = count(&journal, &cache).expect("count");
        assert_eq!((c.event(Kind::Exit), c.unreadable_lines), (1, 0));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .expect("open")
            .write_all(format!("{}\n", &EXIT_GUARD[6..]).as_bytes())
            .expect("w");
        append(&journal, &[DIED]);
        let c = count(&journal, &cache).expect("count");
        assert_eq!((c.event(Kind::Exit), c.event(Kind::SupervisorDied), c.unreadable_lines), (2, 1, 0));
        assert_eq!(c.exits_by_killer["watch"], 1);

        // The cache is what is read: counts it holds that the journal lacks stay.
        let mut cached: Cache = serde_json::from_slice(&std::fs::read(&cache).expect("cache")).expect("parse");
        cached.counts.events.insert("exit".into(), 100);
        std::fs::write(&cache, serde_json::to_vec(&cached).expect("ser")).expect("write");
        assert_eq!(count(&journal, &cache).expect("count").event(Kind::Exit), 100);

        // Rotated: a new file (another inode) is counted from its start.
        std::fs::remove_file(&journal).expect("rm");
        append(&journal, &[REFUSED]);
        let c = count(&journal, &cache).expect("count");
        assert_eq!((c.event(Kind::Exit), c.event(Kind::SpawnRefused)), (0, 1));
        // Truncated in place and written again past the old offset: the first line differs.
        std::fs::write(&journal, format!("{OOM}\n{OOM}\n{OOM}\n")).expect("rewrite");
        let c = count(&journal, &cache).expect("count");
        assert_eq!((c.event(Kind::SpawnRefused), c.event(Kind::OomKill)), (0, 3));
        // An unwritable cache costs a full count, not an error.
        let c = count(&journal, &tmp.path().join("no/such/dir/counts.json")).expect("count");
        assert_eq!(c.event(Kind::OomKill), 3);
    }

    /// A journal of `lines` lines of every kind counted, with unreadable and blank lines
    /// among them, as the journal's writers and a crash would leave it.
    fn generated_journal(lines: usize) -> String {
        let kinds = [EXIT_RELIEF, EXIT_GUARD, OOM, EXIT_OOM, REFUSED, DIED, "{\"torn", "", "not json"];
        let mut text = String::new();
        for i in 0..lines {
            text.push_str(kinds[i * 7 % kinds.len()]);
            text.push('\n');
        }
        text
    }

    fn whole_buffer_count(text: &str) -> JournalCounts {
        let mut c = JournalCounts::default();
        c.add_lines(text.as_bytes());
        c
    }

    #[test]
    fn a_line_split_across_pieces_is_counted_once_whole() {
        let text = format!("{EXIT_RELIEF}\n{EXIT_GUARD}\n{REFUSED}\n");
        let want = whole_buffer_count(&text);
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            // Two pieces, and three with the middle one inside a line (no newline in it).
            for j in [i, (i + 5).min(bytes.len())] {
                let mut counter = ChunkCounter::default();
                counter.feed(&bytes[..i]);
                counter.feed(&bytes[i..j]);
                counter.feed(&bytes[j..]);
                let (got, complete) = counter.finish();
                assert_eq!(got, want, "split at {i} and {j}");
                assert_eq!(complete, bytes.len() as u64);
            }
        }
    }

    #[test]
    fn a_partial_last_line_is_not_counted_until_complete() {
        let mut counter = ChunkCounter::default();
        counter.feed(format!("{OOM}\n{}", &EXIT_GUARD[..40]).as_bytes());
        counter.feed(&EXIT_GUARD.as_bytes()[40..60]);
        let (c, complete) = counter.finish();
        assert_eq!((c.event(Kind::OomKill), c.event(Kind::Exit), c.unreadable_lines), (1, 0, 0));
        assert_eq!(complete, OOM.len() as u64 + 1, "the next count starts at the partial line");

        // In a file: the partial line straddles a chunk boundary and is left for next time.
        let tmp = tempfile::tempdir().expect("tempdir");
        let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("events.counts.json"));
        let full = generated_journal(CHUNK / 30);
        let cut = full[..CHUNK - 10].rfind('\n').expect("a newline") + 1;
        let long = format!(r#"{{"ts":"2026-01-01T00:00:05Z","event":"exit","id":"p","pad":"{}"}}"#, "x".repeat(400));
        let (head, tail) = long.split_at(300);
        std::fs::write(&journal, format!("{}{head}", &full[..cut])).expect("write");
        assert_eq!(count(&journal, &cache).expect("count"), whole_buffer_count(&full[..cut]));
        let cached: Cache = serde_json::from_slice(&std::fs::read(&cache).expect("cache")).expect("parse");
        assert_eq!(cached.offset, cut as u64, "the next count starts at the partial line");
        // Completed: counted once.
        append(&journal, &[tail]);
        let want = whole_buffer_count(&format!("{}{long}\n", &full[..cut]));
        assert_eq!(count(&journal, &cache).expect("count"), want);
        assert_eq!(want.event(Kind::Exit), whole_buffer_count(&full[..cut]).event(Kind::Exit) + 1);
    }

    #[test]
    fn counting_in_chunks_equals_counting_the_whole_journal_at_once() {
        let text = generated_journal(20_000);
        assert!(text.len() > 10 * CHUNK, "spans many chunks: {} bytes", text.len());
        let want = whole_buffer_count(&text);
        assert!(want.unreadable_lines > 0 && want.event(Kind::Exit) > 0, "{want:?}");
        let tmp = tempfile::tempdir().expect("tempdir");
        let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("events.counts.json"));
        std::fs::write(&journal, &text).expect("write");
        assert_eq!(count(&journal, &cache).expect("count"), want);
        // Any piece size, including ones that split lines everywhere.
        for size in [1, 7, 4093, CHUNK + 1] {
            let mut counter = ChunkCounter::default();
            text.as_bytes().chunks(size).for_each(|piece| counter.feed(piece));
            assert_eq!(counter.finish(), (want.clone(), text.len() as u64), "pieces of {size}");
        }
    }

    #[test]
    fn a_full_count_holds_a_chunk_and_a_line_not_the_journal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (journal, cache) = (tmp.path().join("events.jsonl"), tmp.path().join("events.counts.json"));
        let text = generated_journal(40_000);
        std::fs::write(&journal, &text).expect("write");
        crate::alloc_count::reset_peak();
        let counted = count(&journal, &cache).expect("count");
        let peak = crate::alloc_count::peak();
        assert_eq!(counted, whole_buffer_count(&text));
        assert!(peak < 4 * CHUNK as u64, "a count of a {} byte journal held {peak} bytes at once", text.len());
    }

    #[test]
    fn an_overlong_line_is_one_unreadable_line_and_is_not_held() {
        let mut counter = ChunkCounter::default();
        counter.feed(format!("{OOM}\n").as_bytes());
        let nuls = vec![0u8; CHUNK];
        for _ in 0..(3 * MAX_LINE / CHUNK) {
            counter.feed(&nuls);
            assert!(counter.carry.capacity() <= 2 * MAX_LINE, "held {}", counter.carry.capacity());
        }
        counter.feed(format!("\n{OOM}\n").as_bytes());
        let (c, complete) = counter.finish();
        assert_eq!((c.event(Kind::OomKill), c.unreadable_lines), (2, 1));
        assert_eq!(complete, (2 * OOM.len() + 3 + 3 * MAX_LINE) as u64);
    }
}
