//! The event journal rotates past its size; `events` and the metrics counters read across
//! the rotation as one journal.

use crate::util::TestFleet;
use std::time::Duration;

#[test]
fn the_journal_rotates_and_is_read_across_rotation() {
    let Some(f) = TestFleet::new("journalrot") else { return };
    let log = f.tmp.path().join("log");
    std::fs::create_dir_all(&log).expect("log dir");
    // A journal at its size limit, of refusals of an agent that is long gone.
    let line =
        r#"{"event":"spawn_refused","id":"old","reason":"memory","ts":"2026-01-01T00:00:00.000Z","used_percent":90.0}"#;
    let lines = (fleet_core::journal::MAX_SIZE as usize) / (line.len() + 1);
    std::fs::write(log.join("events.jsonl"), format!("{line}\n").repeat(lines)).expect("fill the journal");
    let refused = |f: &TestFleet| -> u64 {
        let text = f.run(&["metrics"]).code(0).stdout.clone();
        let sample = text.lines().find(|l| l.starts_with("fleet_spawns_refused_total{reason=\"memory\"}"));
        sample.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    };
    assert_eq!(refused(&f), lines as u64, "counted before the rotation (and cached)");

    // The next event rotates it.
    f.run(&["spawn", "new", "ws-001", "--wait", "--", "true"]).code(0);
    let rotated = log.join("events.jsonl.1");
    assert!(rotated.exists(), "the journal was not rotated");
    let current = std::fs::metadata(log.join("events.jsonl")).expect("journal").len();
    assert!(current < 4096, "the new journal holds only the new events ({current} bytes)");

    // `events` reads both: the old agent's refusals and the new one's events.
    let old = f.run(&["events", "old", "--json"]).code(0).stdout.lines().count();
    assert_eq!(old, lines);
    let new = f.run(&["events", "new"]).code(0).stdout.clone();
    assert!(new.contains(" spawn ") && new.contains(" exit "), "{new}");
    // The counters go on from the cached count through the rotated file: nothing lost,
    // nothing counted twice.
    assert_eq!(refused(&f), lines as u64);
    f.run(&["spawn", "new", "ws-001", "--spawn-threshold", "1", "--", "true"]).code(75);
    assert_eq!(refused(&f), lines as u64 + 1);
    f.wait_state("new", &["exited"], Duration::from_secs(10));
    f.finish();
}
