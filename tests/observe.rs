//! status in full, metrics checked by Prometheus's own linter, and the fleet counters.

use crate::util::{TestFleet, hog_script};
use std::{
    process::Command,
    time::{Duration, Instant},
};

/// Generous: not a timed test (the VM tier's emulation is slow).
const T: Duration = Duration::from_secs(180);

#[test]
fn metrics_pass_promtool_and_status_shows_live_agents_first() {
    let Some(f) = TestFleet::new("metrics") else { return };
    f.run(&["spawn", "z-live", "ws-001", "--label", "batch=42", "--label", "team=a.b", "--", "sleep", "60"]).code(0);
    f.run(&["spawn", "a-done", "ws-001", "--wait", "--", "true"]).code(0);
    f.wait_state("z-live", &["running"], Duration::from_secs(10));
    let status = f.status();
    let ids: Vec<&str> = status["agents"].as_array().expect("agents").iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, ["z-live", "a-done"], "live first");
    // A typo among the names: the others are shown, the typo named, exit 3 as for `kill`.
    let some = f.run(&["status", "z-live", "z-lvie"]);
    some.code(3).one_error_line("no such agent: z-lvie");
    assert!(some.stdout.contains("z-live"), "{}", some.stdout);
    let live = &status["agents"][0];
    assert!(live["soft_deadline_in_seconds"].as_i64().unwrap_or(0) > 800, "{live:#}");
    assert!(live["cpu_percent"].as_f64().is_some(), "{live:#}");
    assert!(live["memory_percent_of_max"].as_f64().is_some(), "{live:#}");

    let metrics = f.run(&["metrics"]);
    metrics.code(0);
    // Its labels ride on its series as one escaped label, which promtool checks below.
    let series = "fleet_agent_memory_bytes{id=\"z-live\",labels=\"batch=42,team=a.b\"}";
    assert!(metrics.stdout.contains(series), "{}", metrics.stdout);
    assert!(metrics.stdout.contains("fleet_agent_info{id=\"a-done\",state=\"exited\"} 1"), "{}", metrics.stdout);
    assert!(metrics.stdout.contains("fleet_agents{state=\"running\"} 1"), "{}", metrics.stdout);
    for family in ["fleet_kills_total", "fleet_exits_total", "fleet_oom_kills_total", "fleet_supervisor_deaths_total"] {
        assert!(metrics.stdout.contains(&format!("# TYPE {family} counter")), "{family}:\n{}", metrics.stdout);
    }
    promtool_check(&metrics.stdout);
    f.finish();
}

/// Prometheus's own linter on exposition text, where it is installed.
fn promtool_check(text: &str) {
    match Command::new("promtool").arg("check").arg("metrics").stdin(std::process::Stdio::piped()).spawn() {
        Ok(mut child) => {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
            let out = child.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => crate::util::skip_part(
            "metrics",
            "the promtool check: promtool is not installed (.ci/run installs Debian's prometheus)",
        ),
    }
}

/// One sample's value in exposition text (`name{labels}` exactly as printed).
#[track_caller]
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// The fleet counters an alert reads, moved by exactly what happened: one OOM kill (an agent
/// past its own small limit), one relief kill, one guard kill, and nothing for the bystander.
#[test]
fn fleet_counters_count_each_oom_relief_and_guard_kill_once() {
    let Some(f) = TestFleet::new("counters") else { return };
    f.set_budget(256 << 20);
    f.run(&["spawn", "bystander", "ws-001", "--", "sleep", "600"]).code(0);
    let series = [
        "fleet_oom_kills_total",
        "fleet_kills_total{by=\"relief\"}",
        "fleet_kills_total{by=\"guard\"}",
        "fleet_kills_total{by=\"operator\"}",
        "fleet_exits_total{state=\"killed\"}",
        "fleet_exits_total{state=\"oom-killed\"}",
        "fleet_supervisor_deaths_total",
    ];
    let read = || {
        let text = f.run(&["metrics"]).code(0).stdout.clone();
        series.map(|s| sample(&text, s))
    };
    let before = read();

    // An OOM kill at the agent's own limit (memory.high at max: see limits.rs).
    let hog = hog_script(64, "echo survived");
    f.run(&["spawn", "oomer", "ws-001", "--memory-max", "32M", "--memory-high", "32M", "--", "sh", "-c", &hog]).code(0);
    assert_eq!(f.wait_state("oomer", &["oom-killed", "exited", "failed"], T)["state"], "oom-killed");
    f.wait_event("oomer", "exit", T);

    // A relief kill: the only agent it may take.
    f.run(&["spawn", "victim", "ws-001", "--", "sh", "-c", &hog_script(40, "sleep 600")]).code(0);
    f.wait_log("victim", "ready", T);
    let relief = f.run(&["relief", "5", "--protect", "bystander", "--grace", "0s"]);
    assert!(relief.code == 0 || relief.code == 3, "{relief:?}");
    f.wait_event("victim", "exit", T);

    // A guard kill, seen in the file the guard itself writes.
    let metrics = f.tmp.path().join("fleet.prom");
    let watcher = crate::watch::start_guard(&f, &[], &metrics);
    // Slow enough for a guard on a loaded, emulated host (the VM tier) to act before the
    // kernel does: this test counts kills, it does not time them.
    let grower = crate::watch::stepped_grower(400, "sleep 0.3", "echo done; sleep 600");
    f.run(&["spawn", "grower", "ws-001", "--", "sh", "-c", &grower]).code(0);
    let ended = f.wait_state("grower", &["killed", "oom-killed", "exited", "failed"], T);
    if ended["killed_by"] != "watch" {
        crate::watch::interrupt(&watcher);
        let out = watcher.wait_with_output().expect("watch exits");
        panic!(
            "the guard did not kill the grower: {ended:#}\n--- the guard's stdout\n{}--- stderr\n{}--- events\n{}",
            crate::watch::guard_output(&metrics),
            String::from_utf8_lossy(&out.stderr),
            f.run(&["events", "grower"]).stdout
        );
    }
    // Its text says who, as its JSON's `by` does.
    let text = f.run(&["events", "grower"]).code(0).stdout.clone();
    let kill = text.lines().find(|l| l.contains(" relief_kill ")).unwrap_or_default();
    assert!(kill.contains("killed by the guard (watch)"), "{text}");
    f.wait_event("grower", "exit", T);
    let seen = Instant::now() + T;
    while !std::fs::read_to_string(&metrics).unwrap_or_default().contains("fleet_kills_total{by=\"guard\"} 1\n") {
        assert!(Instant::now() < seen, "the guard's file never counted its kill");
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::watch::interrupt(&watcher);
    assert_eq!(watcher.wait_with_output().expect("watch exits").status.code(), Some(130));

    assert_eq!(f.agent("bystander")["state"], "running", "the bystander survived");
    let after = read();
    let moved: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(moved, [1.0, 1.0, 1.0, 0.0, 2.0, 1.0, 0.0], "{series:?}");
    // Counted once: a second scrape (from the cache) says the same.
    assert_eq!(read(), after);
    let text = f.run(&["metrics"]).code(0).stdout.clone();
    assert!(sample(&text, "fleet_journal_start_time_seconds") > 1.7e9, "{text}");
    promtool_check(&text);
    f.finish();
}

/// The journal's counts are cached beside the journal, not in the state dir: a reboot
/// empties the state dir (a tmpfs) but keeps the journal, and the next scrape must not
/// count the whole journal again. Seen here as the cache file left as it was (a count
/// writes a new one in its place).
#[test]
fn journal_counts_outlive_the_state_dir() {
    use std::os::unix::fs::MetadataExt;
    let Some(f) = TestFleet::new("countscache") else { return };
    f.set_budget(256 << 20);
    f.run(&["spawn", "ended", "ws-001", "--", "sleep", "600"]).code(0);
    f.wait_state("ended", &["running"], T);
    f.run(&["kill", "ended"]).code(0);
    f.wait_event("ended", "exit", T);
    let before = f.run(&["metrics"]).code(0).stdout.clone();
    assert_eq!(sample(&before, "fleet_kills_total{by=\"operator\"}"), 1.0, "{before}");
    let cache = f.tmp.path().join("log/events.counts.json");
    let cached = std::fs::metadata(&cache).expect("the counts are cached beside the journal");

    // A reboot: no supervisor is left, and the state dir's tmpfs comes back empty.
    let supervisors = f.fleet.supervisors();
    let gone = Instant::now() + T;
    while supervisors.exists() && supervisors.populated().unwrap_or(false) {
        assert!(Instant::now() < gone, "the supervisor never ended: {:?}", supervisors.procs());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(f.tmp.path().join("state")).expect("empty the state dir");

    let after = f.run(&["metrics"]).code(0).stdout.clone();
    assert_eq!(sample(&after, "fleet_kills_total{by=\"operator\"}"), 1.0, "{after}");
    let now = std::fs::metadata(&cache).expect("cache");
    assert_eq!((now.ino(), now.mtime_nsec()), (cached.ino(), cached.mtime_nsec()), "the cache was used, not rewritten");
    assert!(!f.tmp.path().join("state/journal-counts.json").exists());
    f.finish();
}
