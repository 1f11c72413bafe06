//! What a cgroup is using: memory, its events, and tasks.

use super::{Cgroup, Layout, files};
use crate::{Result, size::Limit};
use serde::{Deserialize, Serialize};

/// Counters from `memory.events` (v2) or their v1 equivalents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEvents {
    /// Times usage went over `memory.high` (v2 only; 0 on v1).
    pub high: u64,
    /// Times usage hit `memory.max` (v1: `memory.failcnt`).
    pub max: u64,
    /// Times the cgroup ran out of memory.
    pub oom: u64,
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kill: u64,
}

/// A snapshot of a cgroup's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Bytes charged now.
    pub current: u64,
    /// Most bytes ever charged, where the kernel tracks it.
    pub peak: Option<u64>,
    /// The hard limit.
    pub max: Limit,
    /// Page cache that can be dropped without I/O: usage minus this is what really counts.
    pub inactive_file: u64,
}

impl Cgroup {
    /// Current memory, peak, limit and reclaimable cache.
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        let dir = self.memory_dir();
        match self.layout {
            Layout::Unified => {
                let stat = files::read_keyed(&dir.join("memory.stat"))?;
                Ok(MemoryStats {
                    current: files::read_u64(&dir.join("memory.current"))?,
                    peak: files::read_u64(&dir.join("memory.peak")).ok(),
                    max: Limit::from_v2(&files::read(&dir.join("memory.max"))?).unwrap_or(Limit::Max),
                    inactive_file: files::keyed(&stat, "inactive_file").unwrap_or(0),
                })
            }
            Layout::Hybrid => {
                let stat = files::read_keyed(&dir.join("memory.stat"))?;
                let max = files::read_u64(&dir.join("memory.limit_in_bytes"))?;
                Ok(MemoryStats {
                    current: files::read_u64(&dir.join("memory.usage_in_bytes"))?,
                    peak: files::read_u64(&dir.join("memory.max_usage_in_bytes")).ok(),
                    max: if max >= crate::size::V1_UNLIMITED_FLOOR { Limit::Max } else { Limit::Bytes(max) },
                    inactive_file: files::keyed(&stat, "total_inactive_file").unwrap_or(0),
                })
            }
        }
    }

    /// The memory event counters.
    pub fn memory_events(&self) -> Result<MemoryEvents> {
        let dir = self.memory_dir();
        match self.layout {
            Layout::Unified => {
                let ev = files::read_keyed(&dir.join("memory.events"))?;
                let get = |k| files::keyed(&ev, k).unwrap_or(0);
                Ok(MemoryEvents { high: get("high"), max: get("max"), oom: get("oom"), oom_kill: get("oom_kill") })
            }
            Layout::Hybrid => {
                let oom = files::read_keyed(&dir.join("memory.oom_control"))?;
                let kills = files::keyed(&oom, "oom_kill").unwrap_or(0);
                Ok(MemoryEvents {
                    high: 0,
                    max: files::read_u64(&dir.join("memory.failcnt")).unwrap_or(0),
                    oom: kills,
                    oom_kill: kills,
                })
            }
        }
    }

    /// Number of tasks charged to the cgroup.
    pub fn pids_current(&self) -> Result<u64> {
        files::read_u64(&self.pids_dir().join("pids.current"))
    }

    /// Whether any process is in the cgroup or below it (`cgroup.events`).
    pub fn populated(&self) -> Result<bool> {
        let ev = files::read_keyed(&self.unified.join("cgroup.events"))?;
        Ok(files::keyed(&ev, "populated").unwrap_or(0) != 0)
    }
}
