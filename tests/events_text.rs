//! `fleetctl events` as text: one line an event, whatever the command; times in local time
//! with their offset, as `TZ` says.

use crate::util::TestFleet;
use std::time::Duration;

#[test]
fn events_keep_one_line_each_and_mark_their_zone() {
    let Some(f) = TestFleet::new("evtext") else { return };
    let script = "echo one\necho 'two three'\nexit 0";
    f.run(&["spawn", "ml", "ws-001", "--wait", "--", "sh", "-c", script]).code(0);
    let json = f.events("ml");
    // POSIX TZ strings need no zone database: "XYZ-2" is two hours east of UTC.
    for (tz, offset) in [("XYZ-2", "+02:00"), ("UTC0", "+00:00"), ("ABC+5", "-05:00")] {
        let run = f.cmd(&["events", "ml"]).env("TZ", tz).output().expect("events");
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(run.status.success(), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), json.len(), "one line an event:\n{text}");
        for (line, e) in lines.iter().zip(&json) {
            let ts = e["ts"].as_str().expect("ts");
            let (date, rest) = ts.split_once('T').expect("rfc3339");
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.get(2), Some(&offset), "TZ={tz}: {line}");
            // The same instant: the minutes, seconds and millis do not move with these zones.
            assert_eq!(fields[1][2..], rest.trim_end_matches('Z')[2..], "{line} vs {ts}");
            if tz == "UTC0" {
                assert_eq!(fields[0], date, "{line}");
            }
        }
        let spawn = lines.iter().find(|l| l.contains(" spawn ")).expect("spawn line");
        assert!(spawn.ends_with(r"sh -c $'echo one\necho \'two three\'\nexit 0'"), "{spawn}");
    }
    f.wait_state("ml", &["exited"], Duration::from_secs(10));
    f.finish();
}
