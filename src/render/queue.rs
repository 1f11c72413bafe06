//! The `queue` listing: who waits in line to spawn, for what, since when, at which position.

use serde::Serialize;
use std::time::{Duration, SystemTime};

/// The schema of `queue --json` (`docs/usage.md`).
pub const QUEUE_SCHEMA: u32 = 1;

/// `fleetctl queue --json`.
#[derive(Debug, Serialize)]
pub struct QueueReport {
    /// [`QUEUE_SCHEMA`].
    pub schema: u32,
    /// The live waiters, first in line first.
    pub waiting: Vec<WaiterRow>,
}

/// One waiting spawn.
#[derive(Debug, Serialize)]
pub struct WaiterRow {
    /// 1 for the head of the line.
    pub position: usize,
    /// The agent it would spawn.
    pub id: String,
    /// `memory`, `pool`, `cap`, or `turn` (others ahead of it).
    pub reason: &'static str,
    /// When it joined the line, RFC 3339.
    pub since: String,
    /// How long it has waited, in seconds.
    pub waited_seconds: f64,
    /// The waiting `spawn` process.
    pub pid: i32,
    /// The labels of the agent it would spawn (`spawn --label`), which `kill -l` matches.
    pub labels: fleet_core::labels::Labels,
}

impl QueueReport {
    /// The report of `waiters` (in line order) at `now`.
    pub fn new(waiters: &[fleet_core::queue::Waiter], now: SystemTime) -> QueueReport {
        let waiting = waiters
            .iter()
            .enumerate()
            .map(|(i, w)| WaiterRow {
                position: i + 1,
                id: w.id.to_string(),
                reason: w.reason.name(),
                since: fleet_core::timefmt::rfc3339(w.since),
                waited_seconds: now.duration_since(w.since).unwrap_or_default().as_millis() as f64 / 1000.0,
                pid: w.pid,
                labels: w.labels.clone(),
            })
            .collect();
        QueueReport { schema: QUEUE_SCHEMA, waiting }
    }
}

/// The human rendering.
pub fn render_table(r: &QueueReport) -> String {
    if r.waiting.is_empty() {
        return "nobody waits in line\n".into();
    }
    let mut t = super::table(&["POS", "ID", "WAITS FOR", "SINCE", "WAITED", "PID", "LABELS"]);
    for w in &r.waiting {
        let waited = Duration::from_millis((w.waited_seconds * 1000.0) as u64);
        t.add_row(vec![
            w.position.to_string(),
            w.id.clone(),
            w.reason.to_string(),
            w.since.clone(),
            fleet_core::timefmt::human_duration(waited),
            w.pid.to_string(),
            w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        ]);
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::queue::{Reason, Waiter};
    use std::time::UNIX_EPOCH;

    #[test]
    fn positions_follow_the_line_and_waits_are_measured_from_joining() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s);
        let waiter = |seq, id: &str, reason, since| Waiter {
            seq,
            id: id.parse().expect("id"),
            pid: 40 + seq as i32,
            since,
            reason,
            labels: [("batch".to_string(), format!("b{seq}"))].into(),
            bell: None,
        };
        let waiters = [waiter(3, "a1", Reason::Memory, at(0)), waiter(7, "b2", Reason::Turn, at(30))];
        let report = QueueReport::new(&waiters, at(90));
        assert_eq!(
            report.waiting.iter().map(|w| (w.position, w.id.as_str())).collect::<Vec<_>>(),
            [(1, "a1"), (2, "b2")]
        );
        assert_eq!((report.waiting[0].waited_seconds, report.waiting[1].waited_seconds), (90.0, 60.0));
        let text = render_table(&report);
        assert!(text.contains("a1") && text.contains("memory") && text.contains("1m 30s"), "{text}");
        assert!(text.contains("batch=b7"), "{text}");
        assert_eq!(serde_json::to_value(&report).expect("json")["waiting"][1]["labels"]["batch"], "b7");
        assert_eq!(render_table(&QueueReport::new(&[], at(0))), "nobody waits in line\n");
    }
}
