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
}

/// Pressure stall information for one resource (the `avg10` figures, percent of time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// Share of the last 10 s in which some task waited on memory.
    pub some_avg10: f64,
    /// Share of the last 10 s in which every task waited on memory.
    pub full_avg10: f64,
}

/// Parses a PSI file (`some avg10=0.12 avg60=... total=...` / `full ...`).
pub fn parse_pressure(text: &str) -> Pressure {
    let avg10 = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Pressure { some_avg10: avg10("some"), full_avg10: avg10("full") }
}

impl Cgroup {
    /// Memory pressure of this cgroup. PSI lives in the unified tree on both layouts.
    pub fn memory_pressure(&self) -> Result<Pressure> {
        Ok(parse_pressure(&files::read(&self.unified.join("memory.pressure"))?))
    }

    /// Current memory, peak and limit: three small reads, cheap enough for every agent on
    /// every refresh.
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        let dir = self.memory_dir();
        match self.layout {
            Layout::Unified => Ok(MemoryStats {
                current: self.memory_current()?,
                peak: files::read_u64(&dir.join("memory.peak")).ok(),
                max: Limit::from_v2(&files::read(&dir.join("memory.max"))?).unwrap_or(Limit::Max),
            }),
            Layout::Hybrid => {
                let max = files::read_u64(&dir.join("memory.limit_in_bytes"))?;
                Ok(MemoryStats {
                    current: self.memory_current()?,
                    peak: files::read_u64(&dir.join("memory.max_usage_in_bytes")).ok(),
                    max: if max >= crate::size::V1_UNLIMITED_FLOOR { Limit::Max } else { Limit::Bytes(max) },
                })
            }
        }
    }

    /// The memory.high limit (v1: the soft limit), one read.
    pub fn memory_high(&self) -> Result<Limit> {
        let dir = self.memory_dir();
        match self.layout {
            Layout::Unified => {
                let path = dir.join("memory.high");
                let text = files::read(&path)?;
                Limit::from_v2(&text)
                    .ok_or_else(|| crate::Error::Parse { path, detail: format!("not a limit: '{}'", text.trim()) })
            }
            Layout::Hybrid => {
                let n = files::read_u64(&dir.join("memory.soft_limit_in_bytes"))?;
                Ok(if n >= crate::size::V1_UNLIMITED_FLOOR { Limit::Max } else { Limit::Bytes(n) })
            }
        }
    }

    /// Memory charged now (one read).
    pub fn memory_current(&self) -> Result<u64> {
        let dir = self.memory_dir();
        match self.layout {
            Layout::Unified => files::read_u64(&dir.join("memory.current")),
            Layout::Hybrid => files::read_u64(&dir.join("memory.usage_in_bytes")),
        }
    }

    /// Page cache the kernel can drop without I/O (`inactive_file`): usage minus this is what
    /// really counts, and what killing the cgroup's processes would free. Parses `memory.stat`,
    /// so callers on hot paths do without it.
    pub fn inactive_file(&self) -> Result<u64> {
        let stat = files::read_keyed(&self.memory_dir().join("memory.stat"))?;
        let key = if self.layout == Layout::Hybrid { "total_inactive_file" } else { "inactive_file" };
        Ok(files::keyed(&stat, key).unwrap_or(0))
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

    /// CPU time used by the cgroup's processes, in microseconds (`cpu.stat` `usage_usec`,
    /// which cgroup2 keeps even where the cpu controller is not enabled).
    pub fn cpu_usage_usec(&self) -> Result<u64> {
        let stat = files::read_keyed(&self.unified.join("cpu.stat"))?;
        files::keyed(&stat, "usage_usec")
            .ok_or_else(|| crate::Error::Parse { path: self.unified.join("cpu.stat"), detail: "no usage_usec".into() })
    }

    /// Number of tasks charged to the cgroup.
    pub fn pids_current(&self) -> Result<u64> {
        files::read_u64(&self.pids_dir().join("pids.current"))
    }

    /// Whether any process is in the cgroup or below it (`cgroup.events`).
    /// A cgroup that is gone, or being removed this instant (ENODEV), holds nobody.
    pub fn populated(&self) -> Result<bool> {
        let ev = match files::read_keyed(&self.unified.join("cgroup.events")) {
            Ok(ev) => ev,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::ENODEV) => {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        Ok(files::keyed(&ev, "populated").unwrap_or(0) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_parses() {
        let p = parse_pressure(
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=3966\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=3304\n",
        );
        assert_eq!(p, Pressure { some_avg10: 1.5, full_avg10: 0.25 });
        assert_eq!(parse_pressure(""), Pressure::default());
    }
}
