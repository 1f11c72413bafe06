//! A bad config file is refused when it is loaded, by every command, with one line naming the
//! key and what to give instead, and exit 1; nothing is made.

use crate::util::{Run, TestFleet};

/// Asserts the run was refused as a bad config: exit 1 and exactly one line on stderr,
/// containing `says`.
#[track_caller]
fn refused(run: &Run, says: &str) {
    run.code(1);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, not:\n{}", run.stderr);
    assert!(lines[0].starts_with("fleetctl: "), "{}", lines[0]);
    assert!(lines[0].contains(says), "stderr lacks '{says}':\n{}", run.stderr);
}

/// Refused by a command that only reads and by spawn, and spawn made nothing.
fn refused_everywhere(f: &TestFleet, says: &str) {
    refused(&f.run(&["status"]), says);
    refused(&f.run(&["spawn", "cfg", "ws-001", "--", "sleep", "30"]), says);
    assert!(f.fleet.agent_names().unwrap_or_default().is_empty(), "{:?}", f.fleet.agent_names());
    assert!(!f.tmp.path().join("state/agents/cfg").exists(), "a refused spawn left state");
    assert!(!f.tmp.path().join("log/agents/cfg.log").exists(), "a refused spawn left a log");
}

#[test]
fn a_log_size_that_is_not_a_size_is_refused() {
    let Some(f) = TestFleet::new("cfglogsize") else { return };
    let path = f.tmp.path().join("fleet.toml");
    f.set_config("[agent]\nlog_max_size = \"abc\"\n");
    refused_everywhere(
        &f,
        &format!(
            r#"{}: agent.log_max_size = "abc": not a log size; use a number of at least 4K with K, M or G (e.g. "64M")"#,
            path.display()
        ),
    );
    // A size is taken, and spawn uses it.
    f.set_config("[agent]\nlog_max_size = \"1M\"\n");
    f.run(&["spawn", "cfg", "ws-001", "--", "sleep", "30"]).code(0);
    f.set_config("");
    f.finish();
}

#[test]
fn a_spawn_threshold_not_below_kill_is_refused() {
    let Some(f) = TestFleet::new("cfgthresholds") else { return };
    f.set_config("[thresholds]\nspawn = 96\nkill = 95\n");
    refused_everywhere(&f, "thresholds.spawn = 96 is not below thresholds.kill = 95");
    // The default kill threshold counts too, and the line says it is the default.
    f.set_config("[thresholds]\nspawn = 95\n");
    refused(&f.run(&["memory"]), "thresholds.spawn = 95 is not below thresholds.kill = 95 (the default)");
    f.set_config("[thresholds]\nspawn = 94\nkill = 95\n");
    let status = f.status();
    assert_eq!(status["host"]["spawn_threshold"], 94, "{status:#}");
    f.set_config("");
    f.finish();
}

#[test]
fn a_misspelt_key_is_one_line_naming_the_nearest() {
    let Some(f) = TestFleet::new("cfgtypo") else { return };
    f.set_config("[agent]\nmemroy_max = \"4G\"\n");
    refused_everywhere(&f, "unknown key `agent.memroy_max`; did you mean `agent.memory_max`?");
    f.set_config("[agent\nmemory_max = \"4G\"\n");
    refused(&f.run(&["status"]), "line 1, column 7: unclosed table");
    f.set_config("");
    f.finish();
}

#[test]
fn a_bad_config_does_not_stand_between_an_operator_and_stopping_an_agent() {
    let Some(f) = TestFleet::new("cfgstopping") else { return };
    f.run(&["spawn", "victim", "ws-001", "--", "sleep", "600"]).code(0);
    // An upgrade now refuses what an older fleetctl took: spawn and status refuse it, but
    // kill, relief and gc go ahead on the built-in defaults for that section, and say so.
    f.set_config("[thresholds]\nspawn = 96\nkill = 95\n");
    refused(&f.run(&["spawn", "other", "ws-001", "--", "sleep", "30"]), "thresholds.spawn = 96");
    for args in [&["relief", "99", "--dry-run"][..], &["kill", "victim"], &["gc", "--dry-run"]] {
        let run = f.run(args);
        run.code(0);
        assert!(
            run.stderr.contains("warning:") && run.stderr.contains("thresholds.spawn = 96 is not below"),
            "{args:?} warns about the config:\n{}",
            run.stderr
        );
    }
    // Where the fleet lives cannot be guessed: a bad path stops even kill.
    f.set_config("[paths]\nstate_dir = 3\n");
    refused(&f.run(&["kill", "victim"]), "paths.state_dir = 3");
    f.set_config("");
    f.wait_state("victim", &["killed"], std::time::Duration::from_secs(10));
    f.finish();
}
