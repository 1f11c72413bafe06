//! Putting a new process into its agent's cgroup before its first instruction: the key safety
//! step, in one place. Nothing of an agent runs outside its cgroup, so nothing of it runs
//! unlimited.
//!
//! [`Placement::open`] opens what placing needs while the caller can still allocate and fail
//! politely, and [`Entry::for_layout`] chooses how the process gets in:
//!
//! - **born in it** on pure cgroup v2: clone3(2) with `CLONE_INTO_CGROUP` and the cgroup's
//!   directory ([`Placement::birth_dir`]). No `cgroup.procs` write, so no write lock on the
//!   kernel's migration lock, which without `favordynmods` waits for an RCU grace period while
//!   holding `cgroup_mutex`.
//! - **joining it** on hybrid hosts, whose v1 hierarchies have no such clone: the child writes
//!   itself into each hierarchy's `cgroup.procs` between fork and exec ([`Placement::enter`]),
//!   and does not exec if any write fails. This is also the way in where the kernel refuses
//!   the clone (before Linux 5.7), so a born-in placement holds the `cgroup.procs` files too.
//!
//! The launcher only forks and execs with what this hands out. The child's side,
//! [`Placement::enter`], makes only async-signal-safe calls and allocates nothing: a child of
//! `CLONE_VM` shares its parent's heap, and a forked child of a threaded parent may find the
//! allocator's lock held by a thread that no longer exists.
//!
//! On request the child also gives up the OOM protection it inherits: supervisors protect
//! themselves with `oom_score_adj` -1000, and an agent with -1000 can never be chosen by the
//! OOM killer, so at its memory limit the kernel would retry reclaim forever instead of
//! ending it.

use super::{Cgroup, Layout};
use crate::{Error, Result};
use std::{
    ffi::CString,
    fs::{File, OpenOptions},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

/// How a new process gets into its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Born in it by clone3(2) with `CLONE_INTO_CGROUP`: the cgroup is one directory in one
    /// hierarchy.
    BornIn,
    /// Started outside, it writes itself into each hierarchy's `cgroup.procs` before exec.
    JoinBeforeExec,
}

impl Entry {
    /// The way in a host's layout allows: only the cgroup2 tree can take a process at birth,
    /// so only where it carries every controller (pure v2) is that the whole way in.
    pub fn for_layout(layout: Layout) -> Entry {
        match layout {
            Layout::Unified => Entry::BornIn,
            Layout::Hybrid => Entry::JoinBeforeExec,
        }
    }
}

/// How the process calling [`Placement::enter`] was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Born {
    /// By clone3(2) into [`Placement::birth_dir`]: already in the cgroup.
    InCgroup,
    /// Any other way (fork, a `CLONE_VM` child, a clone3 the kernel refused): still in its
    /// parent's cgroup.
    Outside,
}

/// A step of [`Placement::enter`], to name the one the kernel refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Writing itself into each hierarchy's `cgroup.procs`.
    Join,
}

impl Step {
    /// Every step, in the order [`Placement::enter`] takes them; a step's index here is its
    /// number, for a launcher that reports the failed step through shared memory.
    pub const ALL: [Step; 1] = [Step::Join];

    /// The step in a few words, to follow "cannot".
    pub fn what(self) -> &'static str {
        match self {
            Step::Join => "join its cgroup",
        }
    }
}

/// A step of [`Placement::enter`] that failed, with its errno. The process must not exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The step.
    pub step: Step,
    /// The kernel's answer.
    pub errno: i32,
}

/// An agent's cgroup opened for placing processes in it: everything the child needs between
/// fork and exec, opened beforehand.
#[derive(Debug)]
pub struct Placement {
    /// The cgroup's directory in the cgroup2 tree, where the entry is [`Entry::BornIn`].
    dir: Option<File>,
    /// The `cgroup.procs` file of every hierarchy, open for writing.
    procs: Vec<File>,
    /// `<proc root>/self/oom_score_adj`, for the child to open(2) itself.
    oom_score_adj: CString,
    /// Whether the child sets its `oom_score_adj` back to 0.
    reset_oom_score: bool,
}

impl Placement {
    /// Opens `cgroup` (which must exist) for placing processes in it, the way its layout
    /// allows. `proc_root` is where the child finds its own files.
    pub fn open(cgroup: &Cgroup, proc_root: &Path) -> Result<Placement> {
        let dir = match Entry::for_layout(cgroup.layout) {
            Entry::BornIn => Some(File::open(&cgroup.unified).map_err(|e| Error::io("open", &cgroup.unified, e))?),
            Entry::JoinBeforeExec => None,
        };
        let procs = cgroup
            .procs_files()
            .into_iter()
            .map(|path| OpenOptions::new().write(true).open(&path).map_err(|e| Error::io("open", path, e)))
            .collect::<Result<_>>()?;
        let path = proc_root.join("self/oom_score_adj");
        let oom_score_adj = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            Error::io("open", &path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the path"))
        })?;
        Ok(Placement { dir, procs, oom_score_adj, reset_oom_score: false })
    }

    /// How a process gets in: [`Entry::BornIn`] when [`Placement::birth_dir`] is there.
    pub fn entry(&self) -> Entry {
        match self.dir {
            Some(_) => Entry::BornIn,
            None => Entry::JoinBeforeExec,
        }
    }

    /// The directory to give clone3(2) with `CLONE_INTO_CGROUP`, where the layout lets a
    /// process be born in its cgroup. Without it (or when the clone is refused), start the
    /// process any way and [`enter`](Placement::enter) with [`Born::Outside`].
    pub fn birth_dir(&self) -> Option<BorrowedFd<'_>> {
        self.dir.as_ref().map(AsFd::as_fd)
    }

    /// Whether [`Placement::enter`] sets the process's `oom_score_adj` back to 0, giving up
    /// the protection it inherited (the default is to keep the inherited score).
    pub fn set_oom_score_reset(&mut self, reset: bool) {
        self.reset_oom_score = reset;
    }

    /// The child's side, between fork and exec: the OOM score (if asked; best-effort, since
    /// raising it needs no privilege, so a failure is nothing it could act on), then, unless
    /// it was born there, the cgroup in every hierarchy, writing `0` ("myself") into each
    /// `cgroup.procs`. On `Err` the process must not exec.
    ///
    /// Async-signal-safe: open(2), write(2) and close(2) on what [`Placement::open`]
    /// prepared, and no allocation.
    pub fn enter(&self, born: Born) -> std::result::Result<(), Refused> {
        if self.reset_oom_score {
            // SAFETY: open(2) of a NUL-terminated path, a one-byte write from a static buffer
            // to the descriptor it returned, close(2) of it.
            unsafe {
                let fd = libc::open(self.oom_score_adj.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                }
            }
        }
        if born == Born::Outside {
            for file in &self.procs {
                // SAFETY: a one-byte write from a static buffer to a descriptor we own.
                if unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
                    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                    return Err(Refused { step: Step::Join, errno });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::allocations;
    use std::path::PathBuf;

    /// A fake cgroup in every hierarchy of `layout` (empty regular `cgroup.procs` files) and a
    /// fake proc root with `self/oom_score_adj`.
    fn fake(tmp: &Path, layout: Layout) -> (Cgroup, PathBuf) {
        let dir = |h: &str| {
            let d = tmp.join(h).join("agent");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup.procs"), "").unwrap();
            d
        };
        let cgroup = match layout {
            Layout::Unified => Cgroup { layout, unified: dir("unified"), memory_v1: None, pids_v1: None },
            Layout::Hybrid => {
                Cgroup { layout, unified: dir("unified"), memory_v1: Some(dir("memory")), pids_v1: Some(dir("pids")) }
            }
        };
        let proc_root = tmp.join("proc");
        std::fs::create_dir_all(proc_root.join("self")).unwrap();
        // Empty, so a write shows (a regular file does not replace its text as procfs does).
        std::fs::write(proc_root.join("self/oom_score_adj"), "").unwrap();
        (cgroup, proc_root)
    }

    fn procs_written(cgroup: &Cgroup) -> Vec<String> {
        cgroup.procs_files().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    #[test]
    fn the_layout_chooses_the_way_in() {
        assert_eq!(Entry::for_layout(Layout::Unified), Entry::BornIn);
        assert_eq!(Entry::for_layout(Layout::Hybrid), Entry::JoinBeforeExec);
        for layout in [Layout::Unified, Layout::Hybrid] {
            let tmp = tempfile::tempdir().unwrap();
            let (cgroup, proc_root) = fake(tmp.path(), layout);
            let placement = Placement::open(&cgroup, &proc_root).unwrap();
            assert_eq!(placement.entry(), Entry::for_layout(layout));
            assert_eq!(placement.birth_dir().is_some(), layout == Layout::Unified);
        }
    }

    #[test]
    fn a_process_started_outside_joins_every_hierarchy_without_allocating() {
        let tmp = tempfile::tempdir().unwrap();
        let (cgroup, proc_root) = fake(tmp.path(), Layout::Hybrid);
        let mut placement = Placement::open(&cgroup, &proc_root).unwrap();
        placement.set_oom_score_reset(true);
        let before = allocations();
        let entered = placement.enter(Born::Outside);
        let made = allocations() - before;
        assert_eq!(entered, Ok(()));
        assert_eq!(made, 0, "the child's side allocated {made} times");
        assert_eq!(procs_written(&cgroup), ["0", "0", "0"]);
        assert_eq!(std::fs::read_to_string(proc_root.join("self/oom_score_adj")).unwrap(), "0");
    }

    #[test]
    fn a_process_born_in_its_cgroup_writes_no_cgroup_procs_and_keeps_its_score_unless_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let (cgroup, proc_root) = fake(tmp.path(), Layout::Unified);
        let placement = Placement::open(&cgroup, &proc_root).unwrap();
        assert_eq!(placement.enter(Born::InCgroup), Ok(()));
        assert_eq!(procs_written(&cgroup), [""]);
        assert_eq!(std::fs::read_to_string(proc_root.join("self/oom_score_adj")).unwrap(), "");
    }

    #[test]
    fn a_refused_join_names_its_step_and_errno() {
        let tmp = tempfile::tempdir().unwrap();
        let (cgroup, proc_root) = fake(tmp.path(), Layout::Hybrid);
        // A write the kernel refuses (a cgroup removed meanwhile answers ENODEV); /dev/full
        // answers every write with ENOSPC.
        let pids = cgroup.pids_v1.clone().unwrap().join("cgroup.procs");
        std::fs::remove_file(&pids).unwrap();
        std::os::unix::fs::symlink("/dev/full", &pids).unwrap();
        let placement = Placement::open(&cgroup, &proc_root).unwrap();
        assert_eq!(placement.enter(Born::Outside), Err(Refused { step: Step::Join, errno: libc::ENOSPC }));
        assert_eq!(Step::Join.what(), "join its cgroup");
    }

    #[test]
    fn a_missing_cgroup_cannot_be_opened_for_placement() {
        let tmp = tempfile::tempdir().unwrap();
        let (cgroup, proc_root) = fake(tmp.path(), Layout::Hybrid);
        std::fs::remove_file(cgroup.memory_dir().join("cgroup.procs")).unwrap();
        let err = Placement::open(&cgroup, &proc_root).unwrap_err().to_string();
        assert_eq!(err, format!("cannot open {}", cgroup.memory_dir().join("cgroup.procs").display()));
    }
}
