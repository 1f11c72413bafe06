//! The agent's output log, capped: past the size limit the file is rotated to `.1` (one old
//! file kept), so a chatty agent can never fill the disk: neither file ever holds more than
//! the cap, however large one write is. Each run begins with a line of fleetctl's own that
//! says so, so the runs of a restarted or reused id are told apart. [`Log`] is the log
//! through its life: created at its first use, then open, or given up on.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// An agent's log is its owner's and the operator group's: never world-readable, since
/// agents running as other users must not read each other's output.
const LOG_MODE: u32 = 0o640;

/// Where an agent's output goes.
pub struct LogSink {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
}

impl LogSink {
    /// Makes sure the log at `path` can be created: its directory exists and is writable.
    /// (Checked before the agent starts; the file itself is created at its first use, after
    /// `spawn` has returned.)
    pub fn check_dir(path: &Path) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(io::Error::from)
    }

    /// Opens (appending to) the log at `path`, [`LOG_MODE`] or narrower.
    pub fn open(path: PathBuf, cap: u64) -> io::Result<LogSink> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(&path)?;
        // A log an older fleetctl made (0644) is narrowed too.
        fleet_core::paths::narrow_mode(&file, LOG_MODE)?;
        let size = file.metadata()?.len();
        // The flag and the config refuse less (`fleet_cli::MIN_LOG_SIZE`); a plan made
        // otherwise (a test) gets at least that.
        Ok(LogSink { path, file, size, cap: cap.max(fleet_cli::MIN_LOG_SIZE) })
    }

    /// Appends output. A write that would pass the cap rotates first, so what one write
    /// holds stays in one file; a write larger than the cap itself is split, at its last
    /// line end that fits (else at the cap), the file rotated between the pieces, so only
    /// its last part is kept, as for many writes.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.cap {
            self.rotate()?;
        }
        loop {
            let room = (self.cap - self.size.min(self.cap)) as usize;
            let mut take = room.min(data.len());
            if take < data.len()
                && let Some(end) = data[..take].iter().rposition(|b| *b == b'\n')
            {
                take = end + 1;
            }
            let (now, rest) = data.split_at(take);
            self.file.write_all(now)?;
            self.size += now.len() as u64;
            if rest.is_empty() {
                return Ok(());
            }
            self.rotate()?;
            data = rest;
        }
    }

    /// `a.log` becomes `a.log.1` (replacing the old one), and a new `a.log` is begun.
    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Adds a line of fleetctl's own ("fleetctl: soft timeout, sent SIGUSR1").
    pub fn note(&mut self, message: &str) {
        // Losing a note must never stop supervision.
        let _ = self.write(format!("fleetctl: {message}\n").as_bytes());
    }
}

/// The agent's log, opened (created, for a new id) at the first output, note or
/// housekeeping, whichever comes first. Not before: created while `spawn` has yet to return,
/// it kept `spawn` from a CPU. Until then the output waits in the pipe (64 KiB). That the log
/// can be created is checked before the agent starts ([`LogSink::check_dir`]); if it still
/// fails, the output is discarded and the journal says why, and the agent runs on.
pub enum Log {
    /// Not opened yet; the run's first line waits with it, to be its first.
    Unopened {
        path: PathBuf,
        cap: u64,
        run_line: Option<String>,
    },
    Open(LogSink),
    /// Opening failed: output and notes are discarded.
    Discarding,
}

impl Log {
    pub fn new(path: PathBuf, cap: u64) -> Log {
        Log::Unopened { path, cap, run_line: None }
    }

    /// Marks the start of a run with a line of fleetctl's own: now in an open log, else
    /// first when the log is opened (not earlier: see [`Log`]).
    pub fn mark_run(&mut self, message: String) {
        match self {
            Log::Unopened { run_line, .. } => *run_line = Some(message),
            Log::Open(sink) => sink.note(&message),
            Log::Discarding => {}
        }
    }

    /// The sink, opened at the first call. The call that fails to open it returns why, once;
    /// later calls return None.
    pub fn sink(&mut self) -> Result<Option<&mut LogSink>, String> {
        if let Log::Unopened { path, cap, run_line } = self {
            let opened = LogSink::open(path.clone(), *cap)
                .map_err(|e| format!("cannot open the log {}: {e}; the agent's output is discarded", path.display()));
            match opened {
                Ok(mut sink) => {
                    if let Some(line) = run_line.take() {
                        sink.note(&line);
                    }
                    *self = Log::Open(sink)
                }
                Err(why) => {
                    *self = Log::Discarding;
                    return Err(why);
                }
            }
        }
        match self {
            Log::Open(sink) => Ok(Some(sink)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_the_cap_keeping_one_old_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a.log");
        let mut sink = LogSink::open(path.clone(), 4096).expect("open");
        let chunk = vec![b'x'; 3000];
        sink.write(&chunk).expect("w1");
        sink.write(&chunk).expect("w2 rotates");
        sink.write(&chunk).expect("w3 rotates again");
        assert_eq!(std::fs::metadata(&path).expect("log").len(), 3000);
        assert_eq!(std::fs::metadata(tmp.path().join("a.log.1")).expect("old").len(), 3000);
        assert!(!tmp.path().join("a.log.2").exists());
    }

    #[test]
    fn one_write_larger_than_the_cap_leaves_no_file_past_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a.log");
        let mut sink = LogSink::open(path.clone(), 8192).expect("open");
        sink.write(b"before\n").expect("w0");
        // No line ends: split at the cap.
        let big: Vec<u8> = (0..28_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        sink.write(&big).expect("one large write");
        let (log, old) = (std::fs::read(&path).expect("log"), std::fs::read(tmp.path().join("a.log.1")).expect("old"));
        assert!(log.len() <= 8192 && old.len() <= 8192, "{} and {} bytes", log.len(), old.len());
        // What is kept is the write's end, in order.
        assert_eq!([old, log].concat(), big[big.len() - (28_000 - 3 * 8192 + 8192)..].to_vec());
    }

    #[test]
    fn a_large_write_of_lines_is_split_between_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a.log");
        let mut sink = LogSink::open(path.clone(), 4096).expect("open");
        let lines: String = (0..1000).map(|i| format!("line {i:04}\n")).collect();
        sink.write(lines.as_bytes()).expect("one write of 10000 bytes");
        for file in [path.clone(), tmp.path().join("a.log.1")] {
            let text = std::fs::read_to_string(&file).expect("read");
            assert!(text.len() <= 4096 && text.ends_with('\n') && text.starts_with("line "), "{text}");
        }
    }

    #[test]
    fn a_run_line_comes_first_in_a_new_log_and_next_in_an_open_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a.log");
        let mut log = Log::new(path.clone(), 4096);
        log.mark_run("run 1 started".into());
        assert!(!path.exists(), "marking a run does not open the log");
        log.sink().expect("opens").expect("open").write(b"out\n").expect("write");
        log.mark_run("run 2 started".into());
        let text = std::fs::read_to_string(&path).expect("log");
        assert_eq!(text, "fleetctl: run 1 started\nout\nfleetctl: run 2 started\n");
    }

    #[test]
    fn the_log_opens_at_first_use_and_a_failure_is_told_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a.log");
        let mut log = Log::new(path.clone(), 4096);
        assert!(!path.exists(), "not created before its first use");
        log.sink().expect("opens").expect("open").note("hello");
        assert_eq!(std::fs::read_to_string(&path).expect("log"), "fleetctl: hello\n");
        // A log under a regular file cannot be created.
        std::fs::write(tmp.path().join("file"), "").expect("file");
        let mut broken = Log::new(tmp.path().join("file/b.log"), 4096);
        let why = broken.sink().err().expect("fails");
        assert!(why.contains("file/b.log") && why.contains("discarded"), "{why}");
        assert!(matches!(broken.sink(), Ok(None)), "said once, then discarding");
    }
}
