//! The agent's output log, capped: past the size limit the file is rotated to `.1` (one old
//! file kept), so a chatty agent can never fill the disk. [`Log`] is the log through its
//! life: created at its first use, then open, or given up on.

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
        Ok(LogSink { path, file, size, cap: cap.max(4096) })
    }

    /// Appends output, rotating first if it would pass the cap.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.cap {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old)?;
            self.file = OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
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
    /// Not opened yet.
    Unopened {
        path: PathBuf,
        cap: u64,
    },
    Open(LogSink),
    /// Opening failed: output and notes are discarded.
    Discarding,
}

impl Log {
    pub fn new(path: PathBuf, cap: u64) -> Log {
        Log::Unopened { path, cap }
    }

    /// The sink, opened at the first call. The call that fails to open it returns why, once;
    /// later calls return None.
    pub fn sink(&mut self) -> Result<Option<&mut LogSink>, String> {
        if let Log::Unopened { path, cap } = self {
            let opened = LogSink::open(path.clone(), *cap)
                .map_err(|e| format!("cannot open the log {}: {e}; the agent's output is discarded", path.display()));
            match opened {
                Ok(sink) => *self = Log::Open(sink),
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
