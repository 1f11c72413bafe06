//! The agent's output log, capped: past the size limit the file is rotated to `.1` (one old
//! file kept), so a chatty agent can never fill the disk.

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

    /// Opens (appending to) the log at `path`, created [`LOG_MODE`].
    pub fn open(path: PathBuf, cap: u64) -> io::Result<LogSink> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(&path)?;
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
}
