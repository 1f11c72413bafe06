//! Whether many supervisors are alive, from one read. Every supervisor moves itself into the
//! fleet's `supervisors/` cgroup (cgroup2 tree) soon after its agent starts, so that cgroup's
//! `cgroup.procs`, read once, answers for all of them where `/proc/<pid>/stat` costs an open
//! per supervisor (a procfs lookup that revalidates the pid, then a read and a close).
//!
//! The kernel lists only live processes there: a group leader that exited (a zombie) is left
//! out even before it is reaped. A listed pid is the record's supervisor unless that one died
//! and its pid was taken by another process in `supervisors/`: the only processes there are
//! supervisors (each named by its own record) and, for the moment before they join their
//! agent's cgroup, the agents they start (named by their record once running). So a listed
//! pid is trusted only when no other record names it, as supervisor or agent; every other
//! supervisor (not yet moved, started after the read, or a fleet without the cgroup) is asked
//! of `/proc` as before, pid and start time.

use crate::{cgroup::Cgroup, procs::ProcessRef};
use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

/// The pids a cgroup's `cgroup.procs` listed at one read. Read it before the records it
/// will answer for: a supervisor listed then was alive then, and one started later is not
/// listed (so it is asked of `/proc`).
#[derive(Debug, Clone, Default)]
pub struct Listed {
    pids: HashSet<i32>,
}

impl Listed {
    /// Reads `cgroup`'s processes now; none when it cannot be read (a fleet without the
    /// cgroup), which leaves every question to `/proc`.
    pub fn read(cgroup: &Cgroup) -> Listed {
        let text = crate::cgroup::files::read(&cgroup.unified.join("cgroup.procs")).unwrap_or_default();
        Listed::parse(&text)
    }

    /// Parses a `cgroup.procs` text: one pid a line.
    pub fn parse(text: &str) -> Listed {
        Listed { pids: text.lines().filter_map(|l| l.trim().parse().ok()).collect() }
    }

    /// Whether `pid` was listed: for a caller that only tidies up, a hint that the process
    /// lives (almost always the supervisor it is taken for; see the module's opener), not
    /// proof.
    pub fn lists(&self, pid: i32) -> bool {
        self.pids.contains(&pid)
    }

    /// The supervisors among `supervisors` this read vouches for: listed, and their pid named
    /// by no other record, as supervisor or as agent (`agents`: every record's main process).
    pub fn vouch(
        &self,
        supervisors: impl IntoIterator<Item = ProcessRef>,
        agents: impl IntoIterator<Item = i32>,
    ) -> Vouched {
        let supervisors: Vec<ProcessRef> = supervisors.into_iter().collect();
        let mut named: HashMap<i32, u32> = HashMap::with_capacity(supervisors.len() * 2);
        for pid in supervisors.iter().map(|s| s.pid).chain(agents) {
            *named.entry(pid).or_insert(0) += 1;
        }
        let alive =
            supervisors.into_iter().filter(|s| self.pids.contains(&s.pid) && named.get(&s.pid) == Some(&1)).collect();
        Vouched { alive }
    }
}

/// Supervisors known alive from one read of their cgroup ([`Listed::vouch`]); any other is
/// asked of `/proc`.
#[derive(Debug, Clone, Default)]
pub struct Vouched {
    alive: HashSet<ProcessRef>,
}

impl Vouched {
    /// Vouches for nobody: every question goes to `/proc`.
    pub fn none() -> Vouched {
        Vouched::default()
    }

    /// Whether supervisor `s` is alive: vouched for, or, if not, its pid and start time in
    /// `/proc` ([`ProcessRef::is_alive`]).
    pub fn is_alive(&self, s: &ProcessRef, proc_root: &Path) -> bool {
        self.alive.contains(s) || s.is_alive(proc_root)
    }

    /// Whether `s` was vouched for by the read alone.
    pub fn vouches_for(&self, s: &ProcessRef) -> bool {
        self.alive.contains(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sup(pid: i32, start_ticks: u64) -> ProcessRef {
        ProcessRef { pid, start_ticks }
    }

    #[test]
    fn procs_text_parses_one_pid_a_line() {
        let listed = Listed::parse("41\n42\n\nnot-a-pid\n 43 \n");
        assert_eq!(listed.pids, HashSet::from([41, 42, 43]));
        assert!(Listed::parse("").pids.is_empty());
        assert!(listed.lists(42) && !listed.lists(44));
    }

    #[test]
    fn a_listed_pid_named_once_is_vouched_for_and_nothing_else_is() {
        let listed = Listed::parse("100\n200\n300\n400\n");
        let (one, twice, gone, shared) = (sup(100, 7), sup(200, 8), sup(999, 9), sup(300, 10));
        let impostor = sup(200, 1);
        // 300 is also some record's agent: a process that is not this supervisor may hold it.
        let vouched = listed.vouch([one, twice, gone, impostor, shared], [5000, 300, 5001]);
        assert!(vouched.vouches_for(&one));
        assert!(!vouched.vouches_for(&twice), "a pid two records name is asked of /proc");
        assert!(!vouched.vouches_for(&impostor));
        assert!(!vouched.vouches_for(&gone), "not listed");
        assert!(!vouched.vouches_for(&shared), "named as an agent too");
        assert!(
            !vouched.vouches_for(&sup(100, 8)),
            "the listed pid with another start time is not the one vouched for"
        );
        assert!(!Listed::default().vouch([one], []).vouches_for(&one), "an unreadable cgroup vouches for nobody");
    }

    #[test]
    fn what_is_not_vouched_for_is_asked_of_proc() {
        // A fake /proc without the pid: only the read vouches for it.
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = sup(4242, 17);
        assert!(Listed::parse("4242\n").vouch([s], []).is_alive(&s, tmp.path()));
        assert!(!Vouched::none().is_alive(&s, tmp.path()), "not in /proc, not vouched for: dead");
        // Ourselves, not listed: /proc says alive.
        let me = ProcessRef::of(Path::new("/proc"), std::process::id() as i32).expect("our own stat");
        assert!(Vouched::none().is_alive(&me, Path::new("/proc")));
    }

    #[test]
    fn a_cgroup_that_is_not_there_lists_nobody() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cg = Cgroup {
            layout: crate::cgroup::Layout::Unified,
            unified: tmp.path().join("gone"),
            memory_v1: None,
            pids_v1: None,
        };
        assert!(Listed::read(&cg).pids.is_empty());
        let here = Cgroup { unified: tmp.path().into(), ..cg };
        std::fs::write(tmp.path().join("cgroup.procs"), "7\n8\n").expect("seed");
        assert_eq!(Listed::read(&here).pids, HashSet::from([7, 8]));
    }
}
