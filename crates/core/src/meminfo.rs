//! The fleet's memory budget: what the thresholds are percentages of.
//!
//! The budget is the fleet root's `memory.max` when the operator set one, otherwise the
//! host's MemTotal. Used memory excludes page cache the kernel can drop without I/O, so a
//! fleet that merely read many files is not mistaken for one about to run out.

use crate::{Error, Result, cgroup::Fleet, size::Limit};
use procfs::{FromRead, Meminfo};
use serde::Serialize;
use std::path::Path;

/// Where the budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetSource {
    /// The host's MemTotal.
    Host,
    /// The fleet root's memory limit.
    FleetRoot,
}

/// The fleet's memory budget and how much of it is used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    /// Bytes the fleet may use.
    pub total: u64,
    /// Bytes in use (budget minus available).
    pub used: u64,
    /// Where `total` came from.
    pub source: BudgetSource,
    /// Host swap configured, in bytes.
    pub swap_total: u64,
    /// Host swap in use, in bytes.
    pub swap_used: u64,
}

/// The host's memory pressure (`/proc/pressure/memory`), if the kernel has PSI.
pub fn host_pressure(proc_root: &Path) -> Option<crate::cgroup::Pressure> {
    std::fs::read_to_string(proc_root.join("pressure/memory")).ok().map(|t| crate::cgroup::parse_pressure(&t))
}

/// The host's memory stall totals (`/proc/pressure/memory` `total=`), if the kernel has PSI.
pub fn host_pressure_totals(proc_root: &Path) -> Option<crate::cgroup::PressureTotals> {
    std::fs::read_to_string(proc_root.join("pressure/memory"))
        .ok()
        .and_then(|t| crate::cgroup::parse_pressure_totals(&t))
}

impl Budget {
    /// Measures the budget for `fleet` (whose root may not exist yet).
    pub fn measure(fleet: &Fleet, proc_root: &Path) -> Result<Budget> {
        let path = proc_root.join("meminfo");
        let info = Meminfo::from_file(&path).map_err(|e| Error::io("read", &path, std::io::Error::other(e)))?;
        let host_available = info.mem_available.unwrap_or(info.mem_free + info.cached);
        let mut budget = Budget {
            total: info.mem_total,
            used: info.mem_total.saturating_sub(host_available),
            source: BudgetSource::Host,
            swap_total: info.swap_total,
            swap_used: info.swap_total.saturating_sub(info.swap_free),
        };
        // The limit first: a fleet without one (or without a root yet) has the host's budget,
        // and its use is not read. Every spawn measures this under the admission lock.
        let not_found = |e: &Error| e.io_kind() == Some(std::io::ErrorKind::NotFound);
        let max = match fleet.root.memory_max() {
            Ok(Limit::Bytes(max)) if max < info.mem_total => max,
            Ok(_) => return Ok(budget),
            // Not made yet, or removed under us: no fleet budget to speak of.
            Err(e) if not_found(&e) => return Ok(budget),
            Err(e) => return Err(e),
        };
        let current = match fleet.root.memory_current() {
            Ok(current) => current,
            Err(e) if not_found(&e) => return Ok(budget),
            Err(e) => return Err(e),
        };
        budget.total = max;
        budget.used = current.saturating_sub(fleet.root.inactive_file().unwrap_or(0)).min(max);
        budget.source = BudgetSource::FleetRoot;
        Ok(budget)
    }

    /// Bytes still available.
    pub fn available(&self) -> u64 {
        self.total.saturating_sub(self.used)
    }

    /// Used as a percentage of the budget.
    pub fn percent(&self) -> f64 {
        if self.total == 0 { 100.0 } else { self.used as f64 * 100.0 / self.total as f64 }
    }

    /// [`Budget::percent`] to one decimal, as reports print it.
    pub fn percent_1dp(&self) -> f64 {
        percent_1dp(self.used, self.total)
    }
}

/// `part` as a percentage of `whole`, to one decimal (`whole` 0 counts as 1).
pub fn percent_1dp(part: u64, whole: u64) -> f64 {
    (part as f64 * 1000.0 / whole.max(1) as f64).round() / 10.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_to_one_decimal() {
        assert_eq!(super::percent_1dp(1, 3), 33.3);
        assert_eq!(super::percent_1dp(5, 0), 500.0);
    }
}
