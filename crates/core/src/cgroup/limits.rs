//! An agent's limits and how each layout expresses them.
//!
//! | limit            | cgroup v2             | hybrid (cgroup v1)                                  |
//! |------------------|-----------------------|-----------------------------------------------------|
//! | memory max       | `memory.max`          | `memory.limit_in_bytes`                             |
//! | memory high      | `memory.high`         | `memory.soft_limit_in_bytes` (reclaim target only)  |
//! | swap max         | `memory.swap.max`     | `memory.memsw.limit_in_bytes` = max + swap          |
//! | pids max         | `pids.max`            | `pids.max` (pids hierarchy)                         |
//! | OOM kills group  | `memory.oom.group`    | the supervisor kills the cgroup on the OOM event    |

use super::{Cgroup, Layout, files};
use crate::{Result, size::Limit};
use serde::{Deserialize, Serialize};

/// What a cgroup allows its processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Hard memory limit: the OOM killer acts beyond it.
    pub memory_max: Limit,
    /// Where the kernel starts reclaiming and throttling.
    pub memory_high: Limit,
    /// Swap the cgroup may use; 0 by default because swap across hundreds of agents turns
    /// a memory problem into a host-wide slowdown.
    pub swap_max: Limit,
    /// Maximum number of tasks: stops fork bombs.
    pub pids_max: Limit,
}

impl Default for Limits {
    /// The seed's defaults: 4G max, 3G high, no swap, 512 tasks.
    fn default() -> Limits {
        Limits {
            memory_max: Limit::Bytes(4 << 30),
            memory_high: Limit::Bytes(3 << 30),
            swap_max: Limit::Bytes(0),
            pids_max: Limit::Bytes(512),
        }
    }
}

/// `memory.high` as a share of `memory.max` where only one of them is given: the seed's
/// 3G of 4G. Throttling starts with a quarter of the limit left, so an agent slows (and its
/// PSI shows it) before the OOM killer ends it.
pub const HIGH_PER_MAX: (u64, u64) = (3, 4);

/// The `memory.high` that goes with a `memory.max` given alone ([`HIGH_PER_MAX`]).
pub fn high_for(max: Limit) -> Limit {
    let (num, den) = HIGH_PER_MAX;
    match max {
        Limit::Max => Limit::Max,
        Limit::Bytes(b) => Limit::Bytes((u128::from(b) * u128::from(num) / u128::from(den)) as u64),
    }
}

/// The `memory.max` that goes with a `memory.high` given alone, above the max it would
/// otherwise get ([`HIGH_PER_MAX`] the other way).
pub fn max_for(high: Limit) -> Limit {
    let (num, den) = HIGH_PER_MAX;
    match high {
        Limit::Max => Limit::Max,
        Limit::Bytes(b) => {
            Limit::Bytes(u64::try_from(u128::from(b) * u128::from(den) / u128::from(num)).unwrap_or(u64::MAX))
        }
    }
}

impl Limits {
    /// These limits with the memory pair of a more specific source (flags over the config
    /// file, the file over the defaults): what it gives wins, and the one of the pair it
    /// leaves out follows the one it gives (`high_for`, at `HIGH_PER_MAX`). A high given
    /// alone keeps this max when it fits below it, or when the max is `max_explicit` (then
    /// [`validate`](Self::validate) refuses the pair); above a default max, the max follows.
    pub fn with_memory(self, max: Option<Limit>, high: Option<Limit>, max_explicit: bool) -> Limits {
        let above = |high: Limit, max: Limit| match (high, max) {
            (Limit::Bytes(h), Limit::Bytes(m)) => h > m,
            (Limit::Max, Limit::Bytes(_)) => true,
            (_, Limit::Max) => false,
        };
        let (memory_max, memory_high) = match (max, high) {
            (Some(max), Some(high)) => (max, high),
            (Some(max), None) => (max, high_for(max)),
            (None, Some(high)) if above(high, self.memory_max) && !max_explicit => (max_for(high), high),
            (None, Some(high)) => (self.memory_max, high),
            (None, None) => (self.memory_max, self.memory_high),
        };
        Limits { memory_max, memory_high, ..self }
    }

    /// Checks combinations the kernel would accept but an operator would not mean.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let (Limit::Bytes(high), Limit::Bytes(max)) = (self.memory_high, self.memory_max)
            && high > max
        {
            return Err(format!(
                "memory high ({}) is above memory max ({}): high must not exceed max",
                Limit::Bytes(high),
                Limit::Bytes(max)
            ));
        }
        if self.pids_max == Limit::Bytes(0) {
            return Err("pids max of 0 would forbid the agent's own process: use at least 1".into());
        }
        Ok(())
    }
}

impl Limits {
    /// Which of cgroup v1's charge-failure counters can count, `(memory.failcnt,
    /// memory.memsw.failcnt)`, in a cgroup given these limits by [`Cgroup::apply_limits`]:
    /// a counter whose limit is unlimited never fails a charge, and every page charged to
    /// memory is charged to memory+swap too, so with no swap allowed (both limits equal)
    /// memory+swap is always the one that fails and `memory.failcnt` stays 0. Unlimited
    /// memory leaves memory+swap unlimited too (v1 cannot cap swap alone).
    pub fn v1_failure_counters(&self) -> (bool, bool) {
        match (self.memory_max, self.swap_max) {
            (Limit::Max, _) => (false, false),
            (Limit::Bytes(_), Limit::Max) => (true, false),
            (Limit::Bytes(_), Limit::Bytes(0)) => (false, true),
            (Limit::Bytes(_), Limit::Bytes(_)) => (true, true),
        }
    }
}

/// Cgroup v1 spells "no limit" as -1 when written.
fn v1(limit: Limit) -> String {
    match limit {
        Limit::Max => "-1".into(),
        Limit::Bytes(b) => b.to_string(),
    }
}

impl Cgroup {
    /// Writes `limits` into this (existing) cgroup, and on v2 makes an OOM kill take the
    /// whole group (`memory.oom.group`), so an agent is never left half-killed.
    pub fn apply_limits(&self, limits: &Limits) -> Result<()> {
        match self.layout {
            Layout::Unified => {
                let dir = &self.unified;
                files::write(&dir.join("memory.max"), &limits.memory_max.to_v2(), "memory")?;
                files::write(&dir.join("memory.high"), &limits.memory_high.to_v2(), "memory")?;
                files::write(&dir.join("memory.swap.max"), &limits.swap_max.to_v2(), "memory (swap accounting)")?;
                files::write(&dir.join("pids.max"), &limits.pids_max.to_v2(), "pids")?;
                files::write(&dir.join("memory.oom.group"), "1", "memory")?;
            }
            Layout::Hybrid => {
                let mem = self.memory_dir();
                let memsw = mem.join("memory.memsw.limit_in_bytes");
                let has_memsw = memsw.exists();
                // memsw must stay >= limit at every step: lift it first, then set both.
                if has_memsw {
                    files::write(&memsw, "-1", "memory (swap accounting)")?;
                }
                files::write(&mem.join("memory.limit_in_bytes"), &v1(limits.memory_max), "memory")?;
                match (limits.memory_max, limits.swap_max) {
                    (Limit::Bytes(max), Limit::Bytes(swap)) if has_memsw => {
                        files::write(&memsw, &max.saturating_add(swap).to_string(), "memory (swap accounting)")?;
                    }
                    (_, Limit::Max) => {}
                    (Limit::Bytes(_), Limit::Bytes(_)) => {
                        return Err(files::missing(&memsw, "memory (swap accounting)"));
                    }
                    // Unlimited memory with no swap: v1 cannot cap swap alone, so ask the
                    // kernel not to swap this cgroup at all.
                    (Limit::Max, Limit::Bytes(_)) => files::write(&mem.join("memory.swappiness"), "0", "memory")?,
                }
                files::write(&mem.join("memory.soft_limit_in_bytes"), &v1(limits.memory_high), "memory")?;
                files::write(&self.pids_dir().join("pids.max"), &limits.pids_max.to_v2(), "pids")?;
            }
        }
        Ok(())
    }

    /// Reads the limits back from the kernel.
    pub fn read_limits(&self) -> Result<Limits> {
        let read_limit = |path: std::path::PathBuf| -> Result<Limit> {
            let text = files::read(&path)?;
            Limit::from_v2(&text)
                .ok_or_else(|| crate::Error::Parse { path, detail: format!("not a limit: '{}'", text.trim()) })
        };
        let v1_limit = |path: std::path::PathBuf| -> Result<Limit> {
            let n = files::read_u64(&path)?;
            Ok(if n >= crate::size::V1_UNLIMITED_FLOOR { Limit::Max } else { Limit::Bytes(n) })
        };
        match self.layout {
            Layout::Unified => Ok(Limits {
                memory_max: read_limit(self.unified.join("memory.max"))?,
                memory_high: read_limit(self.unified.join("memory.high"))?,
                swap_max: read_limit(self.unified.join("memory.swap.max"))?,
                pids_max: read_limit(self.unified.join("pids.max"))?,
            }),
            Layout::Hybrid => {
                let mem = self.memory_dir();
                let memory_max = v1_limit(mem.join("memory.limit_in_bytes"))?;
                let memsw = v1_limit(mem.join("memory.memsw.limit_in_bytes")).unwrap_or(Limit::Max);
                let swap_max = match (memory_max, memsw) {
                    (Limit::Bytes(m), Limit::Bytes(s)) => Limit::Bytes(s.saturating_sub(m)),
                    _ => Limit::Max,
                };
                Ok(Limits {
                    memory_max,
                    memory_high: v1_limit(mem.join("memory.soft_limit_in_bytes"))?,
                    swap_max,
                    pids_max: read_limit(self.pids_dir().join("pids.max"))?,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_v1_failure_counters_a_limit_can_trip_are_read() {
        let limits = |memory_max, swap_max| Limits { memory_max, swap_max, ..Limits::default() };
        let gib = Limit::Bytes(1 << 30);
        assert_eq!(limits(gib, Limit::Bytes(0)).v1_failure_counters(), (false, true), "memory+swap fails first");
        assert_eq!(limits(gib, Limit::Max).v1_failure_counters(), (true, false), "memory+swap is unlimited");
        assert_eq!(limits(gib, gib).v1_failure_counters(), (true, true));
        assert_eq!(limits(Limit::Max, Limit::Bytes(0)).v1_failure_counters(), (false, false), "nothing is limited");
    }

    #[test]
    fn the_memory_pair_follows_the_one_given() {
        let (g, m) = (|n: u64| Limit::Bytes(n << 30), |n: u64| Limit::Bytes(n << 20));
        let defaults = Limits::default();
        assert_eq!(high_for(g(4)), defaults.memory_high, "the seed's ratio");
        let only_max = defaults.with_memory(Some(m(300)), None, false);
        assert_eq!((only_max.memory_max, only_max.memory_high), (m(300), m(225)));
        assert!(only_max.validate().is_ok());
        let unlimited = defaults.with_memory(Some(Limit::Max), None, false);
        assert_eq!(unlimited.memory_high, Limit::Max);
        let low_high = defaults.with_memory(None, Some(m(512)), false);
        assert_eq!((low_high.memory_max, low_high.memory_high), (g(4), m(512)));
        let high_above_default = defaults.with_memory(None, Some(g(6)), false);
        assert_eq!((high_above_default.memory_max, high_above_default.memory_high), (g(8), g(6)));
        let high_above_explicit = defaults.with_memory(None, Some(g(6)), true);
        assert!(high_above_explicit.validate().unwrap_err().contains("must not exceed"));
        let both = defaults.with_memory(Some(g(1)), Some(g(2)), false);
        assert!(both.validate().is_err(), "an explicit high above an explicit max is refused");
        assert_eq!(defaults.with_memory(None, None, false), defaults);
    }
    use std::{fs, path::Path};

    fn seed(dir: &Path, files: &[&str]) {
        fs::create_dir_all(dir).expect("mkdir");
        for f in files {
            fs::write(dir.join(f), "max\n").expect("seed");
        }
    }

    #[test]
    fn v2_writes_every_limit_and_oom_group() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a");
        seed(&dir, &["memory.max", "memory.high", "memory.swap.max", "pids.max", "memory.oom.group"]);
        let cg = Cgroup { layout: Layout::Unified, unified: dir.clone(), memory_v1: None, pids_v1: None };
        cg.apply_limits(&Limits::default()).expect("apply");
        let read = |f: &str| fs::read_to_string(dir.join(f)).expect("read");
        assert_eq!(read("memory.max"), (4u64 << 30).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("pids.max"), "512");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(cg.read_limits().expect("read back"), Limits::default());
    }

    #[test]
    fn v2_without_swap_accounting_names_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a");
        seed(&dir, &["memory.max", "memory.high", "pids.max", "memory.oom.group"]);
        let cg = Cgroup { layout: Layout::Unified, unified: dir, memory_v1: None, pids_v1: None };
        let err = cg.apply_limits(&Limits::default()).unwrap_err().to_string();
        assert!(err.contains("memory.swap.max is missing") && err.contains("swapaccount=1"), "{err}");
    }

    #[test]
    fn hybrid_expresses_swap_through_memsw() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mem, pids) = (tmp.path().join("m"), tmp.path().join("p"));
        seed(&mem, &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes"]);
        seed(&pids, &["pids.max"]);
        let cg = Cgroup {
            layout: Layout::Hybrid,
            unified: tmp.path().join("u"),
            memory_v1: Some(mem.clone()),
            pids_v1: Some(pids.clone()),
        };
        cg.apply_limits(&Limits::default()).expect("apply");
        assert_eq!(
            fs::read_to_string(mem.join("memory.memsw.limit_in_bytes")).expect("read"),
            (4u64 << 30).to_string()
        );
        assert_eq!(fs::read_to_string(pids.join("pids.max")).expect("read"), "512");
        assert_eq!(cg.read_limits().expect("read back"), Limits::default());
    }

    #[test]
    fn high_above_max_is_refused() {
        let l = Limits { memory_high: Limit::Bytes(5 << 30), ..Limits::default() };
        assert!(l.validate().unwrap_err().contains("must not exceed"));
    }
}
