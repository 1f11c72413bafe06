//! What a cgroup is using: memory, its events, and tasks.

use super::{Cgroup, Layout, files, files::Dir};
use crate::{Result, size::Limit};
use serde::{Deserialize, Serialize};
use std::{fs::File, os::unix::fs::FileExt, path::PathBuf};

/// Counters from `memory.events` (v2) or their v1 equivalents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEvents {
    /// Times usage went over `memory.high` (v2 only; 0 on v1).
    pub high: u64,
    /// Times usage hit `memory.max` (v1: `memory.failcnt` plus `memory.memsw.failcnt`).
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

/// Memory charged now and the peak, without the limit (for views that take it from the
/// agent's record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// Bytes charged now.
    pub current: u64,
    /// Most bytes ever charged, where the kernel tracks it.
    pub peak: Option<u64>,
}

/// What the `memory` view shows of a cgroup, read together ([`Cgroup::memory_detail`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryDetail {
    /// Current memory, peak and limit.
    pub stats: MemoryStats,
    /// `memory.high` (v1: the soft limit), if it could be read.
    pub high: Option<Limit>,
    /// The event counters (zero if they could not be read).
    pub events: MemoryEvents,
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

/// Stall time a PSI file counts since boot (its `total=` fields, microseconds): what a
/// monitor turns into rates, where the `avg10` figures are already averaged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PressureTotals {
    /// Microseconds in which some task waited.
    pub some_us: u64,
    /// Microseconds in which every task waited.
    pub full_us: u64,
}

/// Parses the `total=` fields of a PSI file; `None` when the `some` line has none.
pub fn parse_pressure_totals(text: &str) -> Option<PressureTotals> {
    let total = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
            .and_then(|v| v.parse().ok())
    };
    Some(PressureTotals { some_us: total("some")?, full_us: total("full").unwrap_or(0) })
}

/// `cpu.stat`'s `usage_usec` in `dir`.
pub(super) fn cpu_usage_usec_in(dir: &Dir) -> Result<u64> {
    let stat = dir.read_keyed("cpu.stat")?;
    files::keyed(&stat, "usage_usec")
        .ok_or_else(|| crate::Error::Parse { path: dir.path("cpu.stat"), detail: "no usage_usec".into() })
}

impl Cgroup {
    /// Memory pressure of this cgroup. PSI lives in the unified tree on both layouts.
    pub fn memory_pressure(&self) -> Result<Pressure> {
        Ok(parse_pressure(&Dir::at(&self.unified).read("memory.pressure")?))
    }

    /// Current memory, peak and limit: three small reads, cheap enough for every agent on
    /// every refresh.
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        // Three files: through the directory held open, its path is walked once.
        self.memory_stats_in(&Dir::open(self.memory_dir())?)
    }

    /// The most memory ever charged, one read; None where the kernel keeps no peak
    /// (`memory.peak` came in Linux 5.19).
    pub fn memory_peak(&self) -> Result<Option<u64>> {
        let dir = Dir::at(self.memory_dir());
        let name = match self.layout {
            Layout::Unified => "memory.peak",
            Layout::Hybrid => "memory.max_usage_in_bytes",
        };
        match dir.read_u64(name) {
            Ok(peak) => Ok(Some(peak)),
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The memory.high limit (v1: the soft limit), one read.
    pub fn memory_high(&self) -> Result<Limit> {
        self.memory_high_in(&Dir::at(self.memory_dir()))
    }

    /// Memory charged now (one read).
    pub fn memory_current(&self) -> Result<u64> {
        self.memory_current_in(&Dir::at(self.memory_dir()))
    }

    /// Memory charged now, as a file held open for a loop that samples it ([`HeldCounter`]).
    pub fn hold_memory_current(&self) -> Result<HeldCounter> {
        let name = match self.layout {
            Layout::Unified => "memory.current",
            Layout::Hybrid => "memory.usage_in_bytes",
        };
        HeldCounter::open(self.memory_dir().join(name))
    }

    /// The memory event counters.
    pub fn memory_events(&self) -> Result<MemoryEvents> {
        self.memory_events_in(&Dir::at(self.memory_dir()), None)
    }

    /// [`memory_stats`](Self::memory_stats), [`memory_high`](Self::memory_high) and
    /// [`memory_events`](Self::memory_events) at once, through the memory directory held
    /// open: its path is walked once instead of for each of the six files.
    pub fn memory_detail(&self) -> Result<MemoryDetail> {
        self.memory_detail_in(&Dir::open(self.memory_dir())?)
    }

    pub(super) fn memory_detail_in(&self, dir: &Dir) -> Result<MemoryDetail> {
        Ok(MemoryDetail {
            stats: self.memory_stats_in(dir)?,
            high: self.memory_high_in(dir).ok(),
            events: self.memory_events_in(dir, None).unwrap_or_default(),
        })
    }

    /// The hard limit alone (one read).
    pub fn memory_max(&self) -> Result<Limit> {
        self.memory_max_in(&Dir::at(self.memory_dir()))
    }

    pub(super) fn memory_stats_in(&self, dir: &Dir) -> Result<MemoryStats> {
        let MemoryUse { current, peak } = self.memory_use_in(dir)?;
        Ok(MemoryStats { current, peak, max: self.memory_max_in(dir)? })
    }

    pub(super) fn memory_use_in(&self, dir: &Dir) -> Result<MemoryUse> {
        // Current before peak, so that a growing cgroup never shows more than its peak.
        let current = self.memory_current_in(dir)?;
        let peak = match self.layout {
            Layout::Unified => dir.read_u64("memory.peak").ok(),
            Layout::Hybrid => dir.read_u64("memory.max_usage_in_bytes").ok(),
        };
        Ok(MemoryUse { current, peak })
    }

    pub(super) fn memory_max_in(&self, dir: &Dir) -> Result<Limit> {
        match self.layout {
            Layout::Unified => Ok(Limit::from_v2(&dir.read("memory.max")?).unwrap_or(Limit::Max)),
            Layout::Hybrid => {
                let max = dir.read_u64("memory.limit_in_bytes")?;
                Ok(if max >= crate::size::V1_UNLIMITED_FLOOR { Limit::Max } else { Limit::Bytes(max) })
            }
        }
    }

    pub(super) fn memory_high_in(&self, dir: &Dir) -> Result<Limit> {
        match self.layout {
            Layout::Unified => {
                let text = dir.read("memory.high")?;
                Limit::from_v2(&text).ok_or_else(|| crate::Error::Parse {
                    path: dir.path("memory.high"),
                    detail: format!("not a limit: '{}'", text.trim()),
                })
            }
            Layout::Hybrid => {
                let n = dir.read_u64("memory.soft_limit_in_bytes")?;
                Ok(if n >= crate::size::V1_UNLIMITED_FLOOR { Limit::Max } else { Limit::Bytes(n) })
            }
        }
    }

    pub(super) fn memory_current_in(&self, dir: &Dir) -> Result<u64> {
        match self.layout {
            Layout::Unified => dir.read_u64("memory.current"),
            Layout::Hybrid => dir.read_u64("memory.usage_in_bytes"),
        }
    }

    /// The event counters; with the `limits` the cgroup was given, v1's failure counters
    /// that cannot count are not read ([`Limits::v1_failure_counters`]).
    pub(super) fn memory_events_in(&self, dir: &Dir, limits: Option<&super::Limits>) -> Result<MemoryEvents> {
        match self.layout {
            Layout::Unified => {
                let ev = dir.read_keyed("memory.events")?;
                let get = |k| files::keyed(&ev, k).unwrap_or(0);
                Ok(MemoryEvents { high: get("high"), max: get("max"), oom: get("oom"), oom_kill: get("oom_kill") })
            }
            Layout::Hybrid => {
                let oom = dir.read_keyed("memory.oom_control")?;
                let kills = files::keyed(&oom, "oom_kill").unwrap_or(0);
                // With swap accounting, a charge meets the memory+swap limit first; when it
                // fails there (swap max 0 makes both limits equal), only memsw.failcnt counts it.
                let (memory, memsw) = limits.map_or((true, true), super::Limits::v1_failure_counters);
                let count = |counts: bool, file: &str| if counts { dir.read_u64(file).unwrap_or(0) } else { 0 };
                let max = count(memory, "memory.failcnt") + count(memsw, "memory.memsw.failcnt");
                Ok(MemoryEvents { high: 0, max, oom: kills, oom_kill: kills })
            }
        }
    }

    /// Page cache the kernel can drop without I/O (`inactive_file`): usage minus this is what
    /// really counts, and what killing the cgroup's processes would free. Parses `memory.stat`,
    /// so callers on hot paths do without it.
    pub fn inactive_file(&self) -> Result<u64> {
        self.inactive_file_in(&Dir::at(self.memory_dir()))
    }

    pub(super) fn inactive_file_in(&self, dir: &Dir) -> Result<u64> {
        let stat = dir.read_keyed("memory.stat")?;
        let key = if self.layout == Layout::Hybrid { "total_inactive_file" } else { "inactive_file" };
        Ok(files::keyed(&stat, key).unwrap_or(0))
    }

    /// CPU time used by the cgroup's processes, in microseconds (`cpu.stat` `usage_usec`,
    /// which cgroup2 keeps even where the cpu controller is not enabled).
    pub fn cpu_usage_usec(&self) -> Result<u64> {
        cpu_usage_usec_in(&Dir::at(&self.unified))
    }

    /// Number of tasks charged to the cgroup.
    pub fn pids_current(&self) -> Result<u64> {
        Dir::at(self.pids_dir()).read_u64("pids.current")
    }

    /// Whether any process is in the cgroup or below it (`cgroup.events`).
    /// A cgroup that is gone, or being removed this instant (ENODEV), holds nobody.
    pub fn populated(&self) -> Result<bool> {
        let ev = match files::read_keyed(&self.unified.join("cgroup.events")) {
            Ok(ev) => ev,
            Err(e) if e.cgroup_gone() => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(files::keyed(&ev, "populated").unwrap_or(0) != 0)
    }
}

/// An interface file holding one number, kept open and read again in place: a read at
/// offset 0 makes the kernel render a cgroup file afresh. A loop that samples every agent
/// each second pays one pread(2) per agent instead of an open (a path walk), two reads and
/// a close. Once the cgroup is removed the read fails (ENODEV), also when a cgroup of the
/// same name has been made since: open that one anew.
#[derive(Debug)]
pub struct HeldCounter {
    file: File,
    path: PathBuf,
}

impl HeldCounter {
    fn open(path: PathBuf) -> Result<HeldCounter> {
        let file = File::open(&path).map_err(|e| crate::Error::io("open", &path, e))?;
        Ok(HeldCounter { file, path })
    }

    /// The number now.
    pub fn read(&self) -> Result<u64> {
        // A u64 and its newline fit, so one read returns all of it.
        let mut buf = [0u8; 32];
        let n = self.file.read_at(&mut buf, 0).map_err(|e| crate::Error::io("read", &self.path, e))?;
        files::parse_u64(&String::from_utf8_lossy(&buf[..n]), &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_totals_parse() {
        let text =
            "some avg10=1.00 avg60=0.50 avg300=0.10 total=1234567\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=89\n";
        assert_eq!(parse_pressure_totals(text), Some(PressureTotals { some_us: 1_234_567, full_us: 89 }));
        assert_eq!(parse_pressure_totals(""), None);
    }

    #[test]
    fn pressure_parses() {
        let p = parse_pressure(
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=3966\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=3304\n",
        );
        assert_eq!(p, Pressure { some_avg10: 1.5, full_avg10: 0.25 });
        assert_eq!(parse_pressure(""), Pressure::default());
    }

    /// The parsing the `memory` view shares with the one-file readers, on fake v1 and v2
    /// directories: the same answers through the directory held open as by path.
    #[test]
    fn memory_detail_reads_what_the_single_readers_read() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let seed = |dir: &std::path::Path, files: &[(&str, &str)]| {
            std::fs::create_dir_all(dir).expect("mkdir");
            for (name, text) in files {
                std::fs::write(dir.join(name), text).expect("seed");
            }
        };
        let v1 = tmp.path().join("v1");
        seed(
            &v1,
            &[
                ("memory.usage_in_bytes", "1048576\n"),
                ("memory.max_usage_in_bytes", "2097152\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.soft_limit_in_bytes", "3221225472\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
                ("memory.failcnt", "7\n"),
            ],
        );
        let v2 = tmp.path().join("v2");
        seed(
            &v2,
            &[
                ("memory.current", "4096\n"),
                ("memory.max", "8192\n"),
                ("memory.high", "max\n"),
                ("memory.events", "low 0\nhigh 3\nmax 4\noom 1\noom_kill 1\n"),
            ],
        );
        let hybrid =
            Cgroup { layout: Layout::Hybrid, unified: tmp.path().join("u"), memory_v1: Some(v1), pids_v1: None };
        let unified = Cgroup { layout: Layout::Unified, unified: v2, memory_v1: None, pids_v1: None };
        for cg in [&hybrid, &unified] {
            let detail = cg.memory_detail().expect("detail");
            assert_eq!(detail.stats, cg.memory_stats().expect("stats"));
            assert_eq!(cg.memory_peak().expect("peak"), detail.stats.peak);
            assert_eq!(detail.high, cg.memory_high().ok());
            assert_eq!(detail.events, cg.memory_events().expect("events"));
        }
        let d = hybrid.memory_detail().expect("detail");
        assert_eq!((d.stats.current, d.stats.peak, d.stats.max), (1 << 20, Some(2 << 20), Limit::Max));
        assert_eq!((d.high, d.events.oom_kill, d.events.max), (Some(Limit::Bytes(3 << 30)), 2, 7));
        let d = unified.memory_detail().expect("detail");
        assert_eq!(
            (d.stats.current, d.stats.peak, d.stats.max, d.high),
            (4096, None, Limit::Bytes(8192), Some(Limit::Max))
        );
        assert_eq!((d.events.high, d.events.oom), (3, 1));
        // A cgroup that is gone (an agent between restarts) has no detail.
        let gone = Cgroup { layout: Layout::Unified, unified: tmp.path().join("gone"), memory_v1: None, pids_v1: None };
        assert!(gone.memory_detail().is_err());
    }
}
