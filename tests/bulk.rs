//! Bulk work: labels given at spawn, the selectors that pick agents by them on every command
//! that takes one, and `restart`, which starts an agent again from its record.

use crate::util::{TestFleet, hog_script};
use serde_json::{Value, json};
use std::time::Duration;

/// Generous: not a timed test.
const T: Duration = Duration::from_secs(60);

/// The ids of a `status --json` or `memory --json` run.
fn ids(run: &crate::util::Run) -> Vec<String> {
    let v: Value = serde_json::from_str(&run.stdout).expect("json");
    v["agents"].as_array().expect("agents").iter().filter_map(|a| a["id"].as_str().map(String::from)).collect()
}

#[test]
fn selectors_pick_agents_by_label_on_every_command() {
    let Some(f) = TestFleet::new("selectors") else { return };
    for (id, labels) in [("b1", ["batch=42", "team=a"]), ("b2", ["batch=42", "team=b"]), ("c1", ["batch=7", "team=a"])]
    {
        let script = format!("echo hello from {id}; sleep 600");
        f.run(&["spawn", id, "ws-001", "--label", labels[0], "--label", labels[1], "--", "sh", "-c", &script]).code(0);
        f.wait_log(id, "hello", T);
    }
    assert_eq!(f.agent("b1")["labels"], json!({"batch": "42", "team": "a"}));

    // status: equality, set and negation forms, ANDed with commas.
    for (selector, want) in [
        ("batch=42", vec!["b1", "b2"]),
        ("team in (a,c)", vec!["b1", "c1"]),
        ("batch=42,team!=a", vec!["b2"]),
        ("team notin (a)", vec!["b2"]),
        ("batch,!tier", vec!["b1", "b2", "c1"]),
    ] {
        assert_eq!(ids(f.run(&["status", "-l", selector, "--json"]).code(0)), want, "status -l {selector}");
    }
    assert!(f.run(&["status", "--selector", "batch=7"]).code(0).stdout.contains("c1"));
    // The wide view shows them, as a selector would match them.
    let wide = f.run(&["status", "-o", "wide", "-l", "batch=7"]).code(0).stdout.clone();
    assert!(wide.contains("LABELS") && wide.contains("batch=7,team=a"), "{wide}");
    f.run(&["status", "-l", "batch=99"]).code(5).one_error_line("no agent's labels match 'batch=99'");

    // memory, logs (each under its header) and events.
    assert_eq!(ids(f.run(&["memory", "-l", "batch=7", "--json"]).code(0)), ["c1"]);
    let logs = f.run(&["logs", "-l", "team=a"]);
    logs.code(0);
    // Each log under its header, each run under its marker.
    let shown: Vec<&str> = logs.stdout.lines().map(|l| l.split(" started at").next().unwrap_or(l)).collect();
    assert_eq!(
        shown,
        [
            "==> b1 <==",
            "fleetctl: run 1 of b1",
            "hello from b1",
            "==> c1 <==",
            "fleetctl: run 1 of c1",
            "hello from c1"
        ]
    );
    let events = f.run(&["events", "-l", "team=b", "--json"]);
    let about: Vec<Value> = events.code(0).stdout.lines().map(|l| serde_json::from_str(l).expect("event")).collect();
    assert!(!about.is_empty() && about.iter().all(|e| e["id"] == "b2"), "{}", events.stdout);
    f.run(&["events", "-l", "team=z"]).code(5).one_error_line("no agent's labels match 'team=z'");

    // kill: every running match, nothing else; ended matches are not killed again.
    let kill = f.run(&["kill", "-l", "batch=42", "--grace", "1s"]);
    kill.code(0);
    assert!(kill.stdout.contains("b1: stopped") && kill.stdout.contains("b2: stopped"), "{}", kill.stdout);
    for (id, want) in [("b1", "killed"), ("b2", "killed"), ("c1", "running")] {
        assert_eq!(f.agent(id)["state"], want, "{id}");
    }
    assert_eq!(f.run(&["kill", "-l", "batch=42"]).code(0).stdout, "no agents to kill\n");
    f.run(&["kill", "-l", "batch=43"]).code(5).one_error_line("no agent's labels match 'batch=43'");
    f.finish();
}

#[test]
fn relief_spares_the_agents_a_selector_protects() {
    let Some(f) = TestFleet::new("protectsel") else { return };
    f.set_budget(256 << 20);
    for (id, label) in [("keep", "tier=db"), ("lose", "tier=batch")] {
        let script = hog_script(24, "sleep 600");
        f.run(&["spawn", id, "ws-001", "--label", label, "--", "sh", "-c", &script]).code(0);
        f.wait_log(id, "ready", T);
    }
    // At a 1 % target every agent is a victim, unless protected.
    let plain = f.run(&["relief", "1", "--dry-run"]);
    assert!(plain.stdout.contains("would kill 2 agent(s)"), "{}", plain.stdout);
    let spared = f.run(&["relief", "1", "--dry-run", "--protect", "tier in (db,cache)"]);
    assert!(spared.stdout.contains("would kill 1 agent(s); sparing protected keep"), "{}", spared.stdout);
    // A protecting selector that matches nobody is a typo: refused before any kill.
    f.run(&["relief", "1", "--protect", "tier=dbb"]).code(5).one_error_line("no agent's labels match 'tier=dbb'");
    for id in ["keep", "lose"] {
        assert_eq!(f.agent(id)["state"], "running", "{id}");
    }
    f.finish();
}

#[test]
fn bad_labels_and_selectors_get_one_line_and_exit_2() {
    let Some(f) = TestFleet::new("badlabels") else { return };
    for (label, says) in [
        ("batch", "give key=value"),
        ("bad key=1", "invalid label key 'bad key'"),
        ("batch=a/b", "invalid value 'a/b' for label 'batch'"),
    ] {
        f.run(&["spawn", "x", "ws-001", "--label", label, "--", "true"]).code(2).one_error_line(says);
    }
    let twice = ["spawn", "x", "ws-001", "--label", "batch=1", "--label", "batch=2", "--", "true"];
    f.run(&twice).code(2).one_error_line("label 'batch' is given twice");
    f.run(&["status", "-l", "team in (a"]).code(2).one_error_line("invalid selector 'team in (a'");
    f.run(&["kill", "-l", "x=1", "--all"]).code(2).one_error_line("cannot be used with");
    // Nothing was made for the refused spawns.
    assert_eq!(f.status()["agents"], json!([]));
    f.finish();
}

#[test]
fn restart_starts_the_same_agent_again_from_its_record() {
    let Some(f) = TestFleet::new("restartcmd") else { return };
    let script = "echo run $FLEET_PORT_BASE $(pwd); sleep 600";
    let spawn = [
        "spawn",
        "r1",
        "auto",
        "--label",
        "batch=3",
        "--memory-max",
        "96M",
        "--memory-high",
        "80M",
        "--soft-timeout",
        "5m",
        "--hard-timeout",
        "10m",
        "--restart",
        "on-failure",
        "--ports",
        "2",
        "--",
        "sh",
        "-c",
        script,
    ];
    f.run(&spawn).code(0);
    f.wait_log("r1", "run", T);
    let first = f.wait_state("r1", &["running"], T);

    let restarted = f.run(&["restart", "r1", "--grace", "1s"]);
    restarted.code(0);
    assert!(restarted.stdout.contains("r1 started"), "{}", restarted.stdout);
    crate::util::wait_until(
        T,
        || format!("no second run in:\n{}", f.log("r1")),
        || f.log("r1").lines().filter(|l| l.starts_with("run ")).count() == 2,
    );
    let second = f.wait_state("r1", &["running"], T);
    assert_ne!(first["pid"], second["pid"]);
    for same in ["labels", "memory_max_bytes", "workspace", "workspace_slot", "port_base", "port_count", "command"] {
        assert_eq!(first[same], second[same], "{same}");
    }
    let soft = second["soft_deadline_in_seconds"].as_i64().expect("soft deadline");
    assert!(soft > 200 && soft <= 300, "the 5m soft timeout again: {second:#}");
    assert_eq!(f.limits("r1").memory_high, "80M".parse().expect("limit"));
    let ended = f.events("r1").into_iter().find(|e| e["event"] == "exit").expect("the first run's exit");
    assert!(ended["cause"].as_str().unwrap_or("").contains("restart"), "{ended:#}");

    // An ended agent starts again too, even from a record written before spawns kept their
    // settings: those come from the defaults (a 15m soft timeout).
    f.run(&["kill", "r1"]).code(0);
    let state = f.state.join("agents/r1/state.json");
    let mut record: Value = serde_json::from_str(&std::fs::read_to_string(&state).expect("record")).expect("json");
    record.as_object_mut().expect("object").remove("spawned_with");
    std::fs::write(&state, record.to_string()).expect("write the old-style record");
    f.run(&["restart", "r1"]).code(0);
    let third = f.wait_state("r1", &["running"], T);
    assert!(third["soft_deadline_in_seconds"].as_i64().unwrap_or(0) > 600, "{third:#}");
    assert_eq!(third["labels"], json!({"batch": "3"}));

    f.run(&["restart", "r2"]).code(5).one_error_line("no such agent: r2");
    f.finish();
}

#[test]
fn a_restart_that_cannot_start_leaves_the_agent_running() {
    let Some(f) = TestFleet::new("restartbad") else { return };
    let ws = f.tmp.path().join("gone");
    std::fs::create_dir(&ws).expect("workspace");
    f.run(&["spawn", "w1", ws.to_str().expect("utf-8"), "--", "sleep", "600"]).code(0);
    f.wait_state("w1", &["running"], T);
    std::fs::remove_dir(&ws).expect("remove the workspace");
    f.run(&["restart", "w1"]).code(2).one_error_line("does not exist");
    assert_eq!(f.agent("w1")["state"], "running");
    f.finish();
}
