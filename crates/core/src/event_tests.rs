//! The events' journal form: round trips, byte-compatibility with the lines earlier versions
//! wrote, unknown events, and `docs/events.md` against the enum.

use super::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// One of each variant, every optional field set, and each shape of the variants that have
/// more than one.
fn samples() -> Vec<Event> {
    let command = vec!["sh".to_string(), "-c".to_string(), "make".to_string()];
    vec![
        Event::Spawn { pid: 41, restarts: 0, command: command.clone() },
        Event::Restart { pid: 42, restarts: 2, command },
        Event::RestartScheduled { delay_ms: 1500, cause: "exit code 1".into() },
        Event::RestartFailed { error: "cannot create the cgroup".into() },
        Event::SoftTimeout { pid: 41 },
        Event::HardTimeout { signalled: 3, grace_ms: 10_000 },
        Event::OomKill { oom_kills: 1, memory_max: Limit::Bytes(256 << 20) },
        Event::OomKill { oom_kills: 2, memory_max: Limit::Max },
        Event::Stall { threshold_percent: 50, after_ms: 30_000, signal: Some("SIGUSR2".into()), kill: false },
        Event::Stall { threshold_percent: 10, after_ms: 4_000, signal: None, kill: true },
        Event::CrashLoop { failures: 5, cause: "crash loop: 5 failures".into() },
        Event::Exit(Exit {
            state: AgentState::Failed,
            cause: "exit code 1".into(),
            killed_by: None,
            observed: Some(ObservedExit {
                code: Some(1),
                signal: None,
                oom_kills: 0,
                restarts: 1,
                summary: Some("exit code 1".into()),
            }),
            supervised: None,
            record_error: None,
        }),
        Event::Exit(Exit {
            record_error: Some("cannot parse state.json".into()),
            ..Exit::unsupervised(AgentState::Killed, Some("user"), "killed while its supervisor was gone")
        }),
        Event::SupervisorDied {
            supervisor_pid: 40,
            agent_alive: true,
            agent_pid: Some(41),
            state: AgentState::Running,
        },
        Event::ReliefKill {
            by: "relief".into(),
            used_percent: 93.5,
            target_percent: 80,
            agent_bytes: 1 << 30,
            freed_bytes: 1 << 29,
            used_after_percent: 71.0,
        },
        Event::SupervisorError { error: "cannot open the log".into() },
        Event::SpawnRefused(Refusal::Memory { used_percent: 90.0, counted_percent: 96.2, threshold_percent: 95 }),
        Event::SpawnRefused(Refusal::Pool),
        Event::SpawnRefused(Refusal::Cap { agents: 300, max_agents: 300 }),
        Event::SpawnRefused(Refusal::Queue { waiting: 4 }),
        Event::Queued { reason: "memory".into(), ahead: 2 },
        Event::QueueLeft { outcome: "admitted".into(), waited_ms: 1500 },
    ]
}

/// A sample's line, with the `ts` and `id` `journal::append` adds.
fn line(event: &Event) -> Value {
    let mut map = event.to_fields();
    map.insert("ts".into(), json!("2026-01-01T00:00:00Z"));
    map.insert("id".into(), json!("a1"));
    Value::Object(map)
}

#[test]
fn every_variant_reads_back_as_written() {
    let samples = samples();
    let kinds: BTreeSet<Kind> = samples.iter().map(Event::kind).collect();
    assert_eq!(kinds, Kind::ALL.into_iter().collect(), "a variant has no sample");
    for event in samples {
        let line = line(&event);
        assert_eq!(line["event"], event.kind().name(), "the serde tag is the kind's name");
        assert_eq!(Event::from_line(&line).as_ref(), Some(&event), "{line}");
        let text = line.to_string();
        assert_eq!(Event::from_line(&serde_json::from_str(&text).expect("json")), Some(event), "{text}");
    }
}

#[test]
fn kinds_are_found_by_name() {
    for kind in Kind::ALL {
        assert_eq!(Kind::from_name(kind.name()), Some(kind));
    }
    assert_eq!(Kind::from_name("swap_storm"), None);
}

/// The fields as the untyped writers of earlier versions put them (`json!` per call site):
/// through the enum, every line is the same, byte for byte.
#[test]
fn lines_are_the_bytes_earlier_versions_wrote() {
    let written = [
        ("spawn", json!({"pid": 41, "restarts": 0, "command": ["sleep", "60"]})),
        ("restart", json!({"pid": 42, "restarts": 1, "command": ["sleep", "60"]})),
        ("restart_scheduled", json!({"delay_ms": 250u64, "cause": "exit code 1"})),
        ("restart_failed", json!({"error": "cannot create"})),
        ("soft_timeout", json!({"pid": 41})),
        ("hard_timeout", json!({"signalled": 2, "grace_ms": 5000u64})),
        ("oom_kill", json!({"oom_kills": 1u64, "memory_max": Limit::Bytes(268435456)})),
        ("oom_kill", json!({"oom_kills": 1u64, "memory_max": Limit::Max})),
        ("crash_loop", json!({"failures": 5, "cause": "crash loop"})),
        (
            "exit",
            json!({"state": AgentState::Killed, "code": null, "signal": 9, "cause": "killed by user",
                   "killed_by": "user", "oom_kills": 0u64, "restarts": 0u32, "summary": "killed by SIGKILL"}),
        ),
        (
            "exit",
            json!({"state": AgentState::Failed, "code": null, "signal": null, "cause": "c", "killed_by": null,
                   "oom_kills": 0u64, "restarts": 0u32, "summary": null}),
        ),
        ("exit", json!({"state": AgentState::Failed, "killed_by": null, "cause": "unobserved", "supervised": false})),
        (
            "exit",
            json!({"state": AgentState::Killed, "killed_by": "gc", "cause": "c", "supervised": false,
                   "record_error": "cannot parse"}),
        ),
        (
            "supervisor_died",
            json!({"supervisor_pid": 40, "agent_alive": false, "agent_pid": null, "state": AgentState::Starting}),
        ),
        (
            "relief_kill",
            json!({"by": "watch", "used_percent": 91.3, "target_percent": 80u8, "agent_bytes": 1024u64,
                   "freed_bytes": 0u64, "used_after_percent": 91.0}),
        ),
        ("supervisor_error", json!({"error": "cannot join supervisors cgroup"})),
        (
            "spawn_refused",
            json!({"reason": "memory", "used_percent": 88.0, "counted_percent": 95.5, "threshold_percent": 95u8}),
        ),
        ("spawn_refused", json!({"reason": "pool"})),
    ];
    for (name, fields) in written {
        let mut expected = fields.clone();
        expected["event"] = json!(name);
        let event = Event::from_fields(name, fields).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.kind().name(), name);
        assert_eq!(Value::Object(event.to_fields()).to_string(), expected.to_string());
    }
}

#[test]
fn fields_that_do_not_fit_are_an_error_or_an_unknown_line() {
    assert!(Event::from_fields("soft_timeout", json!({"pid": "forty"})).is_err());
    assert!(Event::from_fields("swap_storm", json!({})).is_err());
    assert!(Event::from_fields("spawn_refused", json!({"reason": "disk"})).is_err());
    let unknown = json!({"ts": "2026-01-01T00:00:00Z", "event": "swap_storm", "id": "a1", "swapped": 9});
    assert_eq!(Event::from_line(&unknown), None);
    assert_eq!(Event::from_line(&json!({"id": "a1"})), None, "no event name");
    let torn_exit = json!({"ts": "2026-01-01T00:00:00Z", "event": "exit", "id": "a1"});
    assert_eq!(Event::from_line(&torn_exit), None, "an exit without its state");
}

/// The events and their fields as `docs/events.md` documents them: a `### \`name\`` heading
/// per event under `## Events`, and its fields as backticked names in the first column of
/// the table below it.
fn documented(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = doc.split("\n## Events").nth(1).unwrap_or("").split("\n## ").next().unwrap_or("");
    section
        .split("\n### `")
        .skip(1)
        .map(|part| {
            let name = part.split('`').next().unwrap_or("").to_string();
            let fields = part
                .lines()
                .filter(|l| l.starts_with("| `"))
                .flat_map(|l| {
                    let first = l.split('|').nth(1).unwrap_or("");
                    first.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>()
                })
                .collect();
            (name, fields)
        })
        .collect()
}

#[test]
fn docs_events_md_documents_every_event_and_field_and_nothing_else() {
    let doc = include_str!("../../../docs/events.md");
    let mut fields: BTreeMap<String, BTreeSet<String>> =
        Kind::ALL.into_iter().map(|k| (k.name().to_string(), BTreeSet::new())).collect();
    for event in samples() {
        let keys = event.to_fields().into_iter().map(|(k, _)| k).filter(|k| k != "event");
        fields.entry(event.kind().name().to_string()).or_default().extend(keys);
    }
    assert_eq!(documented(doc), fields, "docs/events.md vs crates/core/src/event.rs");
}
