//! How much each agent grew over a recent window, from the watcher's samples: what
//! `--order growth` ranks by. Pure (the caller passes the time), so the rule is unit-tested.
//!
//! Growth is the usage now minus the lowest usage seen in the window. Each agent keeps the
//! lowest value of each of [`SLICES`] slices of the window, not every sample: the watcher
//! samples every 20 ms near the threshold, and at 300 agents a full history would be
//! megabytes in a process that locks its memory.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Slices a window is kept in; growth looks back between `SLICES - 1` and `SLICES` of them.
const SLICES: usize = 8;

/// The lowest usage of one agent in each recent slice, and its latest usage.
#[derive(Debug, Clone)]
struct Lows {
    /// (slice number, lowest bytes in it), indexed by slice number modulo [`SLICES`].
    slots: [(u64, u64); SLICES],
    latest: u64,
}

/// Recent usage lows per agent.
#[derive(Debug)]
pub struct GrowthTracker {
    epoch: Instant,
    slice: Duration,
    agents: HashMap<String, Lows>,
    /// Whether a sample was taken before: an agent first seen after that did not exist at
    /// the last sample, so it grew from nothing; one present at the first sample did not.
    sampled: bool,
}

impl GrowthTracker {
    /// Tracks growth over about `window`.
    pub fn new(window: Duration, now: Instant) -> GrowthTracker {
        let slice = (window / SLICES as u32).max(Duration::from_millis(1));
        GrowthTracker { epoch: now, slice, agents: HashMap::new(), sampled: false }
    }

    fn slice_at(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_nanos() / self.slice.as_nanos()) as u64
    }

    /// Records one agent's usage. `fresh` says its cgroup is new since the last sample
    /// (made again under the same name): its earlier lows belong to another run.
    pub fn record(&mut self, id: &str, bytes: u64, fresh: bool, now: Instant) {
        let slice = self.slice_at(now);
        let slot = (slice % SLICES as u64) as usize;
        let known = self.agents.contains_key(id);
        let born_since_last_sample = self.sampled && (fresh || !known);
        // The id is copied once, when the agent is first seen, not on every sample: the
        // watcher records every agent every 20 ms near the threshold.
        if !known {
            self.agents.insert(id.to_string(), Lows { slots: [(u64::MAX, 0); SLICES], latest: bytes });
        }
        let Some(lows) = self.agents.get_mut(id) else { return };
        if born_since_last_sample {
            lows.slots = [(u64::MAX, 0); SLICES];
        }
        lows.latest = bytes;
        let start = if born_since_last_sample { 0 } else { bytes };
        match &mut lows.slots[slot] {
            (s, low) if *s == slice => *low = (*low).min(start),
            other => *other = (slice, start),
        }
    }

    /// Ends a sample: forgets agents not in `present` (sorted).
    pub fn end_sample(&mut self, present: &[String]) {
        self.agents.retain(|id, _| present.binary_search(id).is_ok());
        self.sampled = true;
    }

    /// Each agent's growth: its latest usage minus its lowest in the window.
    pub fn growth(&self, now: Instant) -> HashMap<String, u64> {
        let current = self.slice_at(now);
        self.agents
            .iter()
            .map(|(id, lows)| {
                let low = lows
                    .slots
                    .iter()
                    .filter(|(s, _)| *s != u64::MAX && *s + SLICES as u64 > current)
                    .map(|(_, low)| *low)
                    .min()
                    .unwrap_or(lows.latest);
                (id.clone(), lows.latest.saturating_sub(low))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn sample(t: &mut GrowthTracker, now: Instant, agents: &[(&str, u64)]) {
        for (id, bytes) in agents {
            t.record(id, bytes * MIB, false, now);
        }
        let mut names: Vec<String> = agents.iter().map(|(id, _)| id.to_string()).collect();
        names.sort();
        t.end_sample(&names);
    }

    #[test]
    fn a_newcomer_grows_from_nothing_and_a_steady_agent_does_not_grow() {
        let t0 = Instant::now();
        let mut t = GrowthTracker::new(Duration::from_secs(8), t0);
        sample(&mut t, t0, &[("steady", 380)]);
        let s = |secs| t0 + Duration::from_secs(secs);
        sample(&mut t, s(1), &[("steady", 380), ("new", 40)]);
        sample(&mut t, s(2), &[("steady", 381), ("new", 120)]);
        let g = t.growth(s(2));
        assert_eq!(g["new"], 120 * MIB, "from nothing: it was not there a sample ago");
        assert_eq!(g["steady"], MIB);
    }

    #[test]
    fn recording_a_known_agent_allocates_nothing() {
        let t0 = Instant::now();
        let mut t = GrowthTracker::new(Duration::from_secs(8), t0);
        let names: Vec<String> = (0..300).map(|i| format!("agent-{i:03}")).collect();
        for (i, at) in [t0, t0 + Duration::from_millis(20), t0 + Duration::from_millis(40)].into_iter().enumerate() {
            let before = fleet_core::alloc_count::allocations();
            for name in &names {
                t.record(name, (100 + i as u64) * MIB, false, at);
            }
            let made = fleet_core::alloc_count::allocations() - before;
            t.end_sample(&names);
            if i > 0 {
                assert_eq!(made, 0, "sample {i} of 300 known agents allocated {made} times");
            }
        }
        assert_eq!(t.growth(t0 + Duration::from_millis(40))["agent-007"], 2 * MIB);
    }

    #[test]
    fn agents_present_at_the_first_sample_have_not_grown() {
        let t0 = Instant::now();
        let mut t = GrowthTracker::new(Duration::from_secs(8), t0);
        sample(&mut t, t0, &[("a", 300), ("b", 10)]);
        assert_eq!(t.growth(t0).values().sum::<u64>(), 0);
    }

    #[test]
    fn growth_older_than_the_window_is_forgotten() {
        let t0 = Instant::now();
        let mut t = GrowthTracker::new(Duration::from_secs(8), t0);
        sample(&mut t, t0, &[("a", 10)]);
        sample(&mut t, t0 + Duration::from_secs(1), &[("a", 200)]);
        assert_eq!(t.growth(t0 + Duration::from_secs(1))["a"], 190 * MIB);
        for s in 2..=12 {
            sample(&mut t, t0 + Duration::from_secs(s), &[("a", 200)]);
        }
        assert_eq!(t.growth(t0 + Duration::from_secs(12))["a"], 0);
    }

    #[test]
    fn a_dip_and_rise_counts_the_rise_and_a_new_run_starts_from_nothing() {
        let t0 = Instant::now();
        let mut t = GrowthTracker::new(Duration::from_secs(8), t0);
        sample(&mut t, t0, &[("a", 100)]);
        sample(&mut t, t0 + Duration::from_secs(1), &[("a", 20)]);
        sample(&mut t, t0 + Duration::from_secs(2), &[("a", 90)]);
        assert_eq!(t.growth(t0 + Duration::from_secs(2))["a"], 70 * MIB);
        // Its cgroup was made again: the new run grew from nothing.
        t.record("a", 30 * MIB, true, t0 + Duration::from_secs(3));
        t.end_sample(&["a".to_string()]);
        assert_eq!(t.growth(t0 + Duration::from_secs(3))["a"], 30 * MIB);
        // Gone agents are forgotten.
        t.end_sample(&[]);
        assert!(t.growth(t0 + Duration::from_secs(3)).is_empty());
    }
}
