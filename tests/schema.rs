//! Repository rule: every `--json` field is documented, and every documented field exists.
//! The docs' tables list fields as `name` (or `a`, `b`) in their first column.

use crate::util::TestFleet;
use serde_json::Value;
use std::{collections::BTreeSet, time::Duration};

/// Backticked names in the first column of the tables under `heading` in a doc.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    let section = doc.split(heading).nth(1).unwrap_or("").split("\n## ").next().unwrap_or("");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            l.split('|').nth(1).unwrap_or("").split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// The docs, built into the test binary so it checks them wherever it runs (the VM tier
/// copies only binaries).
fn read_doc(name: &str) -> String {
    match name {
        "status-json.md" => include_str!("../docs/status-json.md"),
        "memory-json.md" => include_str!("../docs/memory-json.md"),
        "spawn-json.md" => include_str!("../docs/spawn-json.md"),
        "relief-json.md" => include_str!("../docs/relief-json.md"),
        "gc-json.md" => include_str!("../docs/gc-json.md"),
        "doctor-json.md" => include_str!("../docs/doctor-json.md"),
        _ => "",
    }
    .to_string()
}

#[test]
fn json_outputs_match_their_documented_schemas() {
    let Some(f) = TestFleet::new("schema") else { return };
    f.run(&["spawn", "s1", "ws-001", "--label", "batch=42", "--label", "tier=", "--", "sleep", "60"]).code(0);
    f.wait_state("s1", &["running"], Duration::from_secs(10));

    let status = f.status();
    assert_eq!(status["agents"][0]["labels"], serde_json::json!({"batch": "42", "tier": ""}), "labels: an object");
    let doc = read_doc("status-json.md");
    assert_eq!(keys(&status), ["agents", "bad_records", "host", "schema"].map(String::from).into());
    assert_eq!(keys(&status["host"]), documented(&doc, "## `host`"), "status host fields vs docs/status-json.md");
    assert_eq!(
        keys(&status["agents"][0]),
        documented(&doc, "## `agents[]`"),
        "status agent fields vs docs/status-json.md"
    );

    let memory: Value = serde_json::from_str(&f.run(&["memory", "--json"]).code(0).stdout).expect("memory --json");
    let doc = read_doc("memory-json.md");
    assert_eq!(memory["schema"], 1);
    assert_eq!(keys(&memory["agents"][0]), documented(&doc, "## `agents[]`"), "memory agent fields vs docs");
    assert_eq!(keys(&memory["totals"]), documented(&doc, "## `totals`"), "memory totals vs docs");
    f.finish();
}

fn parse(run: &crate::util::Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

/// The commands scripts drive (spawn, relief, gc, doctor) print one JSON document each with
/// `--json`, every field of it documented, and nothing else on stdout.
#[test]
fn script_json_outputs_match_their_documented_schemas() {
    let Some(f) = TestFleet::new("schemascripts") else { return };
    f.set_budget(256 << 20);
    std::fs::create_dir_all(f.tmp.path().join("ws/ws-002")).expect("slot");

    let doc = read_doc("spawn-json.md");
    let spawn = parse(
        f.run(&[
            "spawn",
            "hog",
            "auto",
            "--ports",
            "2",
            "--json",
            "--",
            "sh",
            "-c",
            &crate::util::hog_script(48, "sleep 600"),
        ])
        .code(0),
    );
    assert_eq!(keys(&spawn), documented(&doc, "## Fields"), "spawn --json vs docs/spawn-json.md");
    let a = f.wait_state("hog", &["running"], Duration::from_secs(10));
    assert_eq!(spawn["pid"], a["pid"]);
    assert_eq!(spawn["supervisor_pid"], a["supervisor_pid"]);
    assert_eq!(spawn["cgroup"], a["cgroup"]);
    assert_eq!(spawn["workspace_slot"], a["workspace_slot"]);
    assert_eq!(spawn["port_base"], a["port_base"]);
    assert_eq!(spawn["port_count"], 2);
    f.wait_log("hog", "ready", Duration::from_secs(60));

    let doc = read_doc("relief-json.md");
    let dry = parse(f.run(&["relief", "5", "--dry-run", "--json"]).code(0));
    assert_eq!(keys(&dry), documented(&doc, "## Fields"), "relief --json vs docs/relief-json.md");
    assert_eq!(keys(&dry["plan"][0]), documented(&doc, "## `plan[]`"), "relief plan vs docs");
    assert_eq!(dry["plan"][0]["id"], "hog");
    assert_eq!(dry["kills"], serde_json::json!([]));
    let real = f.run(&["relief", "5", "--grace", "1s", "--json"]);
    assert!(matches!(real.code, 0 | 3), "{real:?}");
    let real = parse(&real);
    assert_eq!(keys(&real["kills"][0]), documented(&doc, "## `kills[]`"), "relief kills vs docs");
    assert_eq!(real["kills"][0]["id"], "hog");
    assert_eq!(real["dry_run"], false);

    let doc = read_doc("gc-json.md");
    f.wait_state("hog", &["killed"], Duration::from_secs(10));
    let gc = parse(f.run(&["gc", "--older-than", "0s", "--json"]).code(0));
    assert_eq!(keys(&gc), documented(&doc, "## Fields"), "gc --json vs docs/gc-json.md");
    assert_eq!(keys(&gc["collected"][0]), documented(&doc, "## `collected[]`"), "gc items vs docs");
    assert_eq!(gc["collected"][0]["id"], "hog");

    let doc = read_doc("doctor-json.md");
    let doctor = f.run(&["doctor", "--json"]);
    assert!(matches!(doctor.code, 0 | 1), "{doctor:?}");
    let doctor = parse(&doctor);
    assert_eq!(keys(&doctor), documented(&doc, "## Fields"), "doctor --json vs docs/doctor-json.md");
    for check in doctor["checks"].as_array().expect("checks") {
        assert_eq!(keys(check), documented(&doc, "## `checks[]`"), "doctor check vs docs");
    }
    assert_eq!(
        doctor["failed"],
        doctor["checks"].as_array().expect("checks").iter().filter(|c| c["status"] == "fail").count()
    );
    f.finish();
}
