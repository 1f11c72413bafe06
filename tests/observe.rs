//! status in full, and metrics checked by Prometheus's own linter.

use crate::util::TestFleet;
use std::{process::Command, time::Duration};

#[test]
fn metrics_pass_promtool_and_status_shows_live_agents_first() {
    let Some(f) = TestFleet::new("metrics") else { return };
    f.run(&["spawn", "z-live", "ws-001", "--", "sleep", "60"]).code(0);
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
    assert!(metrics.stdout.contains("fleet_agent_memory_bytes{id=\"z-live\"}"), "{}", metrics.stdout);
    assert!(metrics.stdout.contains("fleet_agents{state=\"running\"} 1"), "{}", metrics.stdout);
    match Command::new("promtool").arg("check").arg("metrics").stdin(std::process::Stdio::piped()).spawn() {
        Ok(mut child) => {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(metrics.stdout.as_bytes()).expect("write");
            let out = child.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => println!("SKIPPED promtool check: promtool is not installed (.ci/run installs Debian's prometheus)"),
    }
    f.finish();
}
