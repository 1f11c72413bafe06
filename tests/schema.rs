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
