//! Reading many sibling cgroups (every agent, for `status`, `memory` and relief) through
//! their parent directories held open: each file is opened relative to its parent, so the
//! kernel walks two path components instead of the whole path, and kernfs revalidates and
//! permission-checks each one it walks.

use super::{
    Cgroup, Limits, MemoryDetail, MemoryEvents, MemoryStats, MemoryUse, Pressure, files::Dir, parse_pressure,
    stats::cpu_usage_usec_in,
};
use crate::{Error, Result, size::Limit};
use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

/// One cgroup's directories, one per hierarchy, held open (`O_PATH`).
pub struct HeldParent {
    dirs: Vec<(PathBuf, OwnedFd)>,
}

impl HeldParent {
    /// Opens `parent`'s directories.
    pub fn open(parent: &Cgroup) -> Result<HeldParent> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dirs = parent
            .dirs()
            .into_iter()
            .map(|dir| {
                nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty())
                    .map(|fd| (dir.to_path_buf(), fd))
                    .map_err(|e| Error::io("open", dir, io::Error::from(e)))
            })
            .collect::<Result<_>>()?;
        Ok(HeldParent { dirs })
    }

    /// `dir` to read from: under its parent when that is held here, else by its path.
    fn dir<'a>(&'a self, dir: &'a Path) -> Dir<'a> {
        // Compared as bytes: both paths are joined from the same fleet root, and `Path`'s
        // own equality walks their components, which cost `status` more than it saved.
        let parent = dir.parent().map(Path::as_os_str);
        match self.dirs.iter().find(|(held, _)| Some(held.as_os_str()) == parent) {
            Some((_, fd)) => Dir::under(fd.as_fd(), dir),
            None => Dir::at(dir),
        }
    }
}

/// A cgroup read through its parent held open, when there is one ([`Cgroup::read_with`]).
pub struct Reader<'a> {
    cgroup: &'a Cgroup,
    parent: Option<&'a HeldParent>,
}

impl Cgroup {
    /// This cgroup's files read through `parent` (this cgroup's parent, held open), or by
    /// path when it is None or not this cgroup's parent.
    pub fn read_with<'a>(&'a self, parent: Option<&'a HeldParent>) -> Reader<'a> {
        Reader { cgroup: self, parent }
    }
}

impl<'a> Reader<'a> {
    fn dir(&self, dir: &'a Path) -> Dir<'a> {
        match self.parent {
            Some(parent) => parent.dir(dir),
            None => Dir::at(dir),
        }
    }

    /// [`Cgroup::memory_stats`].
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        self.cgroup.memory_stats_in(&self.dir(self.cgroup.memory_dir()))
    }

    /// [`Cgroup::memory_detail`].
    pub fn memory_detail(&self) -> Result<MemoryDetail> {
        self.cgroup.memory_detail_in(&self.dir(self.cgroup.memory_dir()))
    }

    /// Memory charged now and the peak: [`Cgroup::memory_stats`] without the limit.
    pub fn memory_use(&self) -> Result<MemoryUse> {
        self.cgroup.memory_use_in(&self.dir(self.cgroup.memory_dir()))
    }

    /// The memory directory, for several of its files through one [`Dir`].
    fn memory(&self) -> Dir<'a> {
        self.dir(self.cgroup.memory_dir())
    }

    /// [`Cgroup::memory_max`].
    pub fn memory_max(&self) -> Result<Limit> {
        self.cgroup.memory_max_in(&self.memory())
    }

    /// [`Cgroup::memory_high`].
    pub fn memory_high(&self) -> Result<Limit> {
        self.cgroup.memory_high_in(&self.memory())
    }

    /// [`Cgroup::memory_events`]; with the `limits` it was given (the agent's record), the
    /// v1 failure counters that cannot count are not read ([`Limits::v1_failure_counters`]).
    pub fn memory_events(&self, limits: Option<&Limits>) -> Result<MemoryEvents> {
        self.cgroup.memory_events_in(&self.memory(), limits)
    }

    /// [`Cgroup::memory_current`].
    pub fn memory_current(&self) -> Result<u64> {
        self.cgroup.memory_current_in(&self.dir(self.cgroup.memory_dir()))
    }

    /// [`Cgroup::inactive_file`].
    pub fn inactive_file(&self) -> Result<u64> {
        self.cgroup.inactive_file_in(&self.dir(self.cgroup.memory_dir()))
    }

    /// [`Cgroup::memory_pressure`].
    pub fn memory_pressure(&self) -> Result<Pressure> {
        Ok(parse_pressure(&self.dir(&self.cgroup.unified).read("memory.pressure")?))
    }

    /// [`Cgroup::cpu_usage_usec`].
    pub fn cpu_usage_usec(&self) -> Result<u64> {
        cpu_usage_usec_in(&self.dir(&self.cgroup.unified))
    }

    /// [`Cgroup::pids_current`].
    pub fn pids_current(&self) -> Result<u64> {
        self.dir(self.cgroup.pids_dir()).read_u64("pids.current")
    }
}
