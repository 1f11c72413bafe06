//! The append-only event journal: one JSON object per line, so `grep`, `jq` and
//! `fleetctl events` all read it, and a torn last line costs one event, not the file.
//! What a line may say is [`crate::event::Event`].
//!
//! Past [`MAX_SIZE`] the journal is rotated like a log: `events.jsonl` becomes
//! `events.jsonl.1`, the older ones move up to [`GENERATIONS`], the oldest is dropped.
//! Readers read the generations oldest first ([`generations`]), so they are one journal.

use crate::{Error, Result, event::Event, id::AgentId, timefmt::rfc3339};
use serde_json::{Value, json};
use std::{
    fs::File,
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::SystemTime,
};

/// The size past which the journal is rotated. A constant, not a setting: every writer
/// (supervisors started under an older config among them) must rotate at the same size.
/// An event is a few hundred bytes: 16 MiB is tens of thousands of events.
pub const MAX_SIZE: u64 = 16 << 20;

/// Rotated generations kept besides the journal (`.1`, newest, to `.3`): with it, at most
/// 64 MiB of history.
pub const GENERATIONS: usize = 3;

/// Generation `n` of the journal at `path` (`events.jsonl.n`; 0 is the journal itself).
pub fn generation(path: &Path, n: usize) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The journal's files that exist, oldest first, the journal itself last.
pub fn generations(path: &Path) -> Vec<PathBuf> {
    (0..=GENERATIONS).rev().map(|n| generation(path, n)).filter(|p| p.exists()).collect()
}

/// Appends `event` of agent `id`. Each line goes out in a single `write(2)` on an `O_APPEND`
/// file, so concurrent writers (supervisors, kill, relief) never interleave within a line.
/// Its keys are in sorted order (`serde_json`'s map), `ts`, `event` and `id` among them.
pub fn append(path: &Path, id: &AgentId, event: &Event) -> Result<()> {
    let mut line = event.to_fields();
    line.insert("ts".into(), json!(rfc3339(SystemTime::now())));
    line.insert("id".into(), json!(id.as_str()));
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    // Not world-readable: agents run as other users and must not read each other's ends.
    let open = || std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path);
    // The directory exists for every append but a fresh host's first: open first, and make
    // the directory only when it is missing.
    let opened = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
            }
            open()
        }
        other => other,
    };
    let mut file = opened.map_err(|e| Error::io("open journal", path, e))?;
    crate::paths::narrow_mode(&file, 0o640).map_err(|e| Error::io("chmod", path, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A journal that cannot be rotated (a read-only dir) still takes the event.
    if size + text.len() as u64 > MAX_SIZE
        && size > 0
        && rotate(path, &file).is_ok()
        && let Ok(fresh) = open()
    {
        file = fresh;
    }
    file.write_all(text.as_bytes()).map_err(|e| Error::io("append to", path, e))
}

/// Moves the journal `file`, opened at `path`, to generation 1, unless another writer has
/// already: the first to take the file's lock rotates, the others then find `path` naming
/// a new file. (A writer that opened the old file just before still appends its line
/// there, in generation 1, where readers find it.)
fn rotate(path: &Path, file: &File) -> std::io::Result<()> {
    file.lock()?;
    let still_ours = std::fs::metadata(path)
        .ok()
        .zip(file.metadata().ok())
        .is_some_and(|(at_path, opened)| at_path.dev() == opened.dev() && at_path.ino() == opened.ino());
    if still_ours {
        for n in (1..GENERATIONS).rev() {
            match std::fs::rename(generation(path, n), generation(path, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(path, generation(path, 1))?;
    }
    file.unlock()
}

/// One line of the journal, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The line as written (a JSON object), for output that passes it on (`events --json`).
    pub line: Value,
    /// What it says; `None` for an event this version does not know (a newer or older
    /// fleetctl's) or whose fields do not fit: such a line is kept, and shown as it is.
    pub event: Option<Event>,
}

impl Entry {
    /// Reads one line; `None` when it is not a JSON object (torn, damaged).
    pub fn parse(text: &str) -> Option<Entry> {
        let line = serde_json::from_str::<Value>(text).ok().filter(Value::is_object)?;
        Some(Entry { event: Event::from_line(&line), line })
    }

    /// The line's text field `key` (`ts`, `id`, `event`), or "" when it has none.
    pub fn text(&self, key: &str) -> &str {
        self.line.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

/// Reads every parseable line; bad lines are returned separately with their line numbers so
/// callers can name them instead of failing.
pub fn read(path: &Path) -> Result<(Vec<Entry>, Vec<usize>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        match Entry::parse(line) {
            Some(entry) => good.push(entry),
            None if line.trim().is_empty() => {}
            None => bad.push(n + 1),
        }
    }
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_and_skips_torn_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("log/events.jsonl");
        let id: AgentId = "a1".parse().expect("id");
        append(&path, &id, &Event::SoftTimeout { pid: 7 }).expect("append");
        std::fs::OpenOptions::new().append(true).open(&path).expect("open").write_all(b"{\"torn\n").expect("w");
        append(&path, &id, &Event::RestartFailed { error: "no room".into() }).expect("append");
        let (good, bad) = read(&path).expect("read");
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].event, Some(Event::SoftTimeout { pid: 7 }));
        assert_eq!(good[1].text("error"), "no room");
        assert_eq!(good[1].text("id"), "a1");
        assert_eq!(bad, vec![2]);
    }

    #[test]
    fn past_its_size_the_journal_rotates_keeping_its_generations() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("events.jsonl");
        let id: AgentId = "a1".parse().expect("id");
        let full = |n: u8| {
            let line = format!("{{\"event\":\"filler\",\"n\":{n}}}\n");
            std::fs::write(&path, line.repeat(MAX_SIZE as usize / line.len())).expect("fill");
        };
        for n in 1..=(GENERATIONS as u8 + 1) {
            full(n);
            append(&path, &id, &Event::SoftTimeout { pid: i32::from(n) }).expect("append rotates");
            let (good, _) = read(&path).expect("read");
            assert_eq!(good.len(), 1, "a new journal holds the new line");
        }
        // Each generation is a filler file of its round, the newest at .1; the oldest fell off.
        let files = generations(&path);
        assert_eq!(files.len(), GENERATIONS + 1);
        assert_eq!(files.last(), Some(&path));
        for (n, file) in files[..GENERATIONS].iter().enumerate() {
            let first = std::fs::read_to_string(file).expect("read").lines().next().unwrap_or_default().to_string();
            // Oldest first: rounds 2, 3, 4 filled, then each was rotated away by the append.
            assert!(first.contains(&format!("\"n\":{}", n + 2)), "{}: {first}", file.display());
        }
        assert!(!generation(&path, GENERATIONS + 1).exists());
    }

    #[test]
    fn a_line_has_sorted_keys_with_ts_event_and_id() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("events.jsonl");
        let id: AgentId = "a1".parse().expect("id");
        append(&path, &id, &Event::HardTimeout { signalled: 3, grace_ms: 500 }).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        let ts = read(&path).expect("read").0[0].text("ts").to_string();
        assert_eq!(
            text,
            format!("{{\"event\":\"hard_timeout\",\"grace_ms\":500,\"id\":\"a1\",\"signalled\":3,\"ts\":\"{ts}\"}}\n")
        );
    }

    #[test]
    fn an_unknown_event_is_kept_as_written() {
        let raw = r#"{"event":"swap_storm","id":"a1","swapped":9,"ts":"2026-01-01T00:00:00Z"}"#;
        let entry = Entry::parse(raw).expect("an object");
        assert_eq!(entry.event, None);
        assert_eq!(entry.text("event"), "swap_storm");
        assert_eq!(entry.line.to_string(), raw);
    }
}
