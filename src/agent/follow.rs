//! Following an agent's growing log across its rotation: `logs -f` and `spawn --wait`.

use anyhow::{Context, Result};
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::Path,
    time::Duration,
};

/// How often a follower looks for new output.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);

/// Reads a growing log from an offset, and starts over when it is rotated.
pub struct Follower {
    path: std::path::PathBuf,
    file: File,
    inode: u64,
}

impl Follower {
    /// Opens the log at `path` and reads on from `offset`.
    pub fn open(path: &Path, offset: u64) -> Result<Follower> {
        let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        file.seek(SeekFrom::Start(offset))?;
        let inode = file.metadata()?.ino();
        Ok(Follower { path: path.to_path_buf(), file, inode })
    }

    /// The inode of the file it reads now.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Copies what was written since the last call to `out`, across a rotation.
    pub fn copy_new(&mut self, out: &mut impl Write) -> Result<()> {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf)?;
        out.write_all(&buf)?;
        // Rotated: the path now names a new file; the rest of the old one was read above.
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() != self.inode) {
            *self = Follower::open(&self.path.clone(), 0)?;
            self.copy_new(out)?;
        }
        out.flush()?;
        Ok(())
    }
}
