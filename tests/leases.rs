//! Leases on what agents share: workspace slots, port blocks and scratch space, freed when
//! their holder dies.

use crate::util::{TestFleet, Tmpfs};
use serde_json::Value;
use std::{collections::BTreeSet, time::Duration};

const T: Duration = Duration::from_secs(30);

/// A port range of this test's own, so parallel tests never compete for ports.
const RANGE: &str = "23000-23999";

fn make_slots(f: &TestFleet, n: u32) {
    for i in 1..=n {
        std::fs::create_dir_all(f.tmp.path().join(format!("ws/ws-{i:03}"))).expect("slot");
    }
}

/// The agent's leases as status shows them: (slot, port base, port count).
fn leases_of(a: &Value) -> (String, u64, u64) {
    (
        a["workspace_slot"].as_str().unwrap_or_default().to_string(),
        a["port_base"].as_u64().unwrap_or(0),
        a["port_count"].as_u64().unwrap_or(0),
    )
}

#[test]
fn fifty_concurrent_auto_spawns_get_distinct_slots_and_disjoint_ports() {
    let Some(f) = TestFleet::new("leases") else { return };
    f.small_start_reserve();
    make_slots(&f, 50);
    // Something of ours listens inside the range: no block may include its port.
    let listener = std::net::TcpListener::bind("127.0.0.1:23005").ok();
    let script = "echo \"env $FLEET_WORKSPACE $FLEET_PORT_BASE $FLEET_PORTS $FLEET_SCRATCH\"; exec sleep 300";
    let runs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let f = &f;
                s.spawn(move || {
                    let id = format!("a{i:02}");
                    let args = ["spawn", &id, "auto", "--ports", "4", "--port-range", RANGE, "--", "sh", "-c", script];
                    (id.clone(), f.run(&args))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (id, run) in &runs {
        assert_eq!(run.code, 0, "{id}: {run:?}");
    }
    let status = f.status();
    let agents: Vec<&Value> = status["agents"].as_array().expect("agents").iter().collect();
    assert_eq!(agents.len(), 50);
    let mut slots = BTreeSet::new();
    let mut blocks = Vec::new();
    for a in &agents {
        let (slot, base, count) = leases_of(a);
        assert!(slots.insert(slot.clone()), "slot {slot} handed out twice");
        assert_eq!(count, 4, "{a:#}");
        assert!((23000..=23996).contains(&base), "{a:#}");
        if listener.is_some() {
            assert!(!(base..base + 4).contains(&23005), "block {base} includes a listening port");
        }
        blocks.push(base);
        // The agent saw the same leases in its environment.
        let id = a["id"].as_str().expect("id");
        f.wait_log(id, "env ", T);
        let line = f.log(id).lines().find(|l| l.starts_with("env ")).expect("env line").to_string();
        let ws = f.tmp.path().join("ws").join(&slot);
        let want = format!("env {} {base} 4 {}", ws.display(), f.own_scratch().join(id).display());
        assert_eq!(line, want);
    }
    blocks.sort();
    assert!(blocks.windows(2).all(|w| w[0] + 4 <= w[1]), "overlapping port blocks: {blocks:?}");

    // The pool is exhausted: a 51st is refused, naming the pool and its holders.
    let run = f.run(&["spawn", "late", "auto", "--", "sleep", "1"]);
    run.code(75).one_error_line("workspace pool exhausted: all 50 slots");
    assert!(run.stderr.contains("holders: a"), "{}", run.stderr);

    // SIGKILL every supervisor: their leases must free themselves at once, even though the
    // orphaned agents still run.
    for a in &agents {
        let sup = a["supervisor_pid"].as_i64().expect("supervisor") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup), nix::sys::signal::Signal::SIGKILL).expect("kill");
    }
    let deadline = std::time::Instant::now() + T;
    while f.status()["agents"].as_array().expect("agents").iter().any(|a| a["state"] != "orphaned") {
        assert!(std::time::Instant::now() < deadline, "supervisors did not die");
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = f.run(&["spawn", "late", "auto", "--ports", "4", "--port-range", RANGE, "--", "sleep", "300"]);
    again.code(0);
    assert!(again.stdout.contains("workspace ws-"), "{}", again.stdout);
    // Orphans hold nothing, so status shows no leases for them.
    for a in f.status()["agents"].as_array().expect("agents").iter().filter(|a| a["state"] == "orphaned") {
        assert_eq!(leases_of(a), (String::new(), 0, 0), "{a:#}");
    }
    drop(listener);
    f.finish();
}

#[test]
fn an_exhausted_port_range_and_a_taken_slot_are_refused_clearly() {
    let Some(f) = TestFleet::new("lease-refusals") else { return };
    make_slots(&f, 2);
    f.run(&["spawn", "p1", "auto", "--ports", "8", "--port-range", "23100-23107", "--", "sleep", "300"]).code(0);
    let run = f.run(&["spawn", "p2", "ws-002", "--ports", "8", "--port-range", "23100-23107", "--", "sleep", "1"]);
    run.code(75).one_error_line("port pool exhausted: no 8 free consecutive ports left in 23100-23107");
    assert!(run.stderr.contains("p1 (ws-001, ports 23100-23107)"), "{}", run.stderr);
    // Naming a slot that `auto` gave to p1 is refused; a refused spawn leaves nothing.
    let run = f.run(&["spawn", "p3", "ws-001", "--", "sleep", "1"]);
    run.code(4).one_error_line("workspace ws-001 is leased by p1");
    assert!(f.agent("p2").is_null() && f.agent("p3").is_null(), "refused spawns left records");
    assert!(!f.own_scratch().join("p2").exists(), "refused spawn left its scratch dir");
    // Two agents may be told to share a named slot; `auto` then skips it.
    f.run(&["spawn", "n1", "ws-002", "--", "sleep", "300"]).code(0);
    f.run(&["spawn", "n2", "ws-002", "--", "sleep", "300"]).code(0);
    f.run(&["spawn", "n3", "auto", "--", "sleep", "1"]).code(75);
    f.finish();
}

#[test]
fn scratch_memory_is_released_when_an_agent_ends() {
    let Some(f) = TestFleet::new("scratch") else { return };
    f.set_budget(512 << 20);
    let scratch = f.tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let mount = Tmpfs::mount(&scratch, "size=256m");
    let fleet_memory = || {
        let dir = f.fleet.root.memory_dir().to_path_buf();
        let file = if f.fleet.root.memory_v1.is_some() { "memory.usage_in_bytes" } else { "memory.current" };
        std::fs::read_to_string(dir.join(file)).expect("usage").trim().parse::<u64>().expect("number")
    };
    let before = (mount.used(), fleet_memory());
    let script = "head -c 67108864 /dev/zero > \"$FLEET_SCRATCH/blob\" && echo written; exec sleep 300";
    f.run(&["spawn", "s1", "ws-001", "--memory-max", "256M", "--memory-high", "256M", "--", "sh", "-c", script])
        .code(0);
    f.wait_log("s1", "written", T);
    let during = (mount.used(), fleet_memory());
    // tmpfs pages are memory, charged to the agent that wrote them (and so to the fleet).
    assert!(during.0 >= before.0 + (64 << 20), "tmpfs use {during:?} vs {before:?}");
    assert!(during.1 >= before.1 + (60 << 20), "fleet memory {during:?} vs {before:?}");
    f.run(&["kill", "s1"]).code(0);
    let after = (mount.used(), fleet_memory());
    assert!(after.0 <= before.0 + (1 << 20), "tmpfs still holds {} bytes", after.0);
    assert!(after.1 + (56 << 20) <= during.1, "fleet memory not released: {during:?} -> {after:?}");
    assert!(!f.own_scratch().join("s1").exists(), "scratch dir left behind");
    println!(
        "scratch: tmpfs {} -> {} -> {} bytes; fleet {} -> {} -> {}",
        before.0, during.0, after.0, before.1, during.1, after.1
    );
    // Unmounted before `finish` removes the temp dir: a mount point cannot be removed.
    drop(mount);
    f.finish();
}
