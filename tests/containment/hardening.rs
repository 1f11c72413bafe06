//! What a security review of containment found an agent could still do, each tried by a
//! real agent: hold a lock file to freeze kill and spawn, read secrets from its
//! supervisor's command line and environment, take files through the workspace hand-over,
//! and reach an earlier agent's slot or processes through a reused uid.

use super::{NOBODY, T, open_to_agents, record};
use crate::util::Run;
use std::{os::unix::fs::PermissionsExt, path::PathBuf};

/// A shell line that opens `file` for reading and prints `OPENED FILE` or `refused FILE:
/// <the shell's error>`, so the test can tell a permission error from a missing file.
fn try_open(file: &std::path::Path) -> String {
    let f = file.display();
    format!("if out=$( (: < '{f}') 2>&1 ); then echo 'OPENED {f}'; else echo \"refused {f}: $out\"; fi; ")
}

#[test]
fn an_agent_cannot_open_a_lock_file_to_freeze_kill_and_spawn() {
    let Some(f) = crate::util::TestFleet::new("contain-locks") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    f.run(&["spawn", "k1", "ws-001", "--user", NOBODY, "--ports", "1", "--", "sleep", "600"]).code(0);
    let lock_dir = f.tmp.path().join("lock");
    let leases: Vec<PathBuf> = std::fs::read_dir(&lock_dir).expect("lock dir").flatten().map(|e| e.path()).collect();
    let admission = f.state.join("admission.lock");
    // An upgraded host: lock and lease files made 0644 by an older fleetctl. The next spawn
    // opens them again.
    for file in leases.iter().chain([&admission]) {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let mut script = String::new();
    let mut files = leases.clone();
    files.extend([admission, f.state.join("agents/k1/lock"), f.state.join("agents/k1/kill.lock")]);
    for file in &files {
        assert!(file.exists(), "{} exists", file.display());
        script += &try_open(file);
    }
    script += "echo attempts-done; sleep 600";
    f.run(&["spawn", "p1", "ws-001", "--user", NOBODY, "--ports", "1", "--", "sh", "-c", &script]).code(0);
    f.wait_log("p1", "attempts-done", T);
    let log = f.log("p1");
    assert!(leases.iter().any(|l| l.ends_with("ports.lock")), "{leases:?}");
    for file in &files {
        let line = log.lines().find(|l| l.contains(&*file.to_string_lossy())).unwrap_or_default();
        assert!(
            line.starts_with("refused") && line.contains("Permission denied"),
            "{}: {line}\n{log}",
            file.display()
        );
    }
    f.run(&["kill", "k1"]).code(0);
    f.run(&["kill", "p1"]).code(0);
    f.finish();
}

#[test]
fn secrets_given_with_env_are_not_in_the_supervisors_command_line_or_environment() {
    let Some(f) = crate::util::TestFleet::new("contain-proc") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    let read = "tr '\\0' '\\n' < /proc/$PPID/cmdline; echo; tr '\\0' '\\n' < /proc/$PPID/environ; echo read-done; sleep 600";
    // As root, the supervisor's uid (as an agent of a delegated fleet runs), and as another.
    for (id, user) in [("s1", "root"), ("s2", NOBODY)] {
        let mut cmd = f.cmd(&["spawn", id, "ws-001", "--user", user, "--env", "API_KEY=s3cret-from-flag"]);
        cmd.args(["--", "sh", "-c", read]).env("CALLER_SECRET", "hunter2-from-env");
        Run::from(cmd.output().expect("spawn")).code(0);
        f.wait_log(id, "read-done", T);
        let sup = f.agent(id)["supervisor_pid"].as_i64().expect("supervisor");
        let cmdline = std::fs::read(format!("/proc/{sup}/cmdline")).expect("cmdline");
        let environ = std::fs::read(format!("/proc/{sup}/environ")).expect("environ");
        let seen = [f.log(id), String::from_utf8_lossy(&cmdline).into(), String::from_utf8_lossy(&environ).into()];
        for (what, text) in ["the agent's log", "cmdline", "environ"].iter().zip(&seen) {
            for secret in ["s3cret-from-flag", "hunter2-from-env"] {
                assert!(!text.contains(secret), "{id}: {secret} in {what}:\n{text}");
            }
        }
        assert!(seen[1].starts_with(&format!("fleetctl supervisor {id}")), "{id}: {}", seen[1]);
        let record = record(&f, id);
        assert_eq!(record["env_added"], serde_json::json!(["API_KEY"]));
        assert!(!record.to_string().contains("s3cret"), "records keep names: {record}");
    }
    f.run(&["kill", "s1", "s2"]).code(0);
    f.finish();
}
