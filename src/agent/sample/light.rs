//! The watcher's refresh, the lightest sample: one directory listing and one small read per
//! agent, plus the limit of the largest shown, without records.

use crate::agent::growth::GrowthTracker;
use anyhow::Result;
use fleet_core::cgroup::{Fleet, HeldCounter};
use std::{collections::HashMap, time::Instant};

/// One agent's memory as the watcher's every refresh reads it: its cgroup name, usage and
/// (for the agents shown) its limit, without its state record.
#[derive(Debug, Clone)]
pub struct Light {
    /// The cgroup's (agent's) name.
    pub id: String,
    /// Memory charged now.
    pub current: u64,
    /// Its limit, if any (read only for the largest `top`).
    pub max: Option<u64>,
}

/// The watcher's sampler, taken on every refresh. It also remembers recent lows, so the
/// guard knows who is growing ([`GrowthTracker`]). Each agent's usage file stays open
/// between samples ([`HeldCounter`]): one `pread` per agent instead of a path walk, an open,
/// two reads and a close, which is most of the watcher's own CPU (docs/benchmarks.md). It
/// holds at most half the descriptors the process may open, so relief, which the watcher
/// may have to run at any moment, never runs short of them; agents past that are read by
/// path.
pub struct LightSampler {
    held: HashMap<String, HeldCounter>,
    cap: usize,
    growth: GrowthTracker,
}

impl LightSampler {
    /// A sampler that tells growth over about `growth_window`.
    pub fn new(growth_window: std::time::Duration) -> LightSampler {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |l| l.0);
        LightSampler {
            held: HashMap::new(),
            cap: usize::try_from(soft / 2).unwrap_or(usize::MAX),
            growth: GrowthTracker::new(growth_window, Instant::now()),
        }
    }

    /// Each agent's growth over the window, as of the last sample.
    pub fn growth(&self) -> HashMap<String, u64> {
        self.growth.growth(Instant::now())
    }

    /// Every agent of `fleet` with a cgroup, largest first.
    pub fn sample(&mut self, fleet: &Fleet, top: usize) -> Result<Vec<Light>> {
        let names = fleet.agent_names()?;
        // Agents that are gone let go of their files (names are sorted).
        self.held.retain(|name, _| names.binary_search(name).is_ok());
        let mut currents = Vec::with_capacity(names.len());
        let now = Instant::now();
        for name in &names {
            let current = self.current(fleet, name);
            if let Some((bytes, fresh)) = current {
                self.growth.record(name, bytes, fresh, now);
            }
            currents.push(current.map(|(bytes, _)| bytes));
        }
        self.growth.end_sample(&names);
        // The listing's names become the sample's: no copy of each name on every refresh.
        let mut out: Vec<Light> = names
            .into_iter()
            .zip(currents)
            .filter_map(|(id, current)| Some(Light { id, current: current?, max: None }))
            .collect();
        out.sort_by_key(|l| std::cmp::Reverse(l.current));
        for l in out.iter_mut().take(top) {
            if let Ok(id) = l.id.parse() {
                l.max = fleet.agent(&id).memory_max().ok().and_then(|m| m.bytes());
            }
        }
        Ok(out)
    }

    /// One agent's usage through its held file, opened (again) when there is none or it
    /// went stale: the cgroup was removed, and perhaps made again under the same name (then
    /// the second value is true: a new run, whose growth starts from nothing).
    fn current(&mut self, fleet: &Fleet, name: &str) -> Option<(u64, bool)> {
        if let Some(value) = self.held.get(name).and_then(|h| h.read().ok()) {
            return Some((value, false));
        }
        let fresh = self.held.remove(name).is_some();
        // Only now: a cgroup's paths are a few allocations, which the held path does without.
        let cgroup = fleet.agent(&name.parse().ok()?);
        if self.held.len() >= self.cap {
            return cgroup.memory_current().ok().map(|v| (v, fresh));
        }
        let held = cgroup.hold_memory_current().ok()?;
        let value = held.read().ok()?;
        self.held.insert(name.to_string(), held);
        Some((value, fresh))
    }
}
