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
        assert!(line.starts_with("refused") && line.contains("Permission denied"), "{}: {line}\n{log}", file.display());
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
    let read =
        "tr '\\0' '\\n' < /proc/$PPID/cmdline; echo; tr '\\0' '\\n' < /proc/$PPID/environ; echo read-done; sleep 600";
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

/// A fleet whose config runs agents as root unless told and gives `--user auto` the range
/// `first`-`first+99`, with slots ws-001 and ws-002. Each test has a range of its own: the
/// fleets of tests running at once have lock dirs of their own, so nothing would keep one
/// from ending the other's agents of the same uid (on a host, every pool sharing a range
/// must share the lock dir, as fleets left at the default do).
fn auto_fleet(test: &str, first: u32) -> Option<crate::util::TestFleet> {
    let f = crate::util::TestFleet::new(test)?;
    f.set_budget(256 << 20);
    open_to_agents(&f);
    let range = format!("{first}-{}", first + 99);
    f.set_config(&format!("[agent]\nuser = \"root\"\nuid_range = \"{range}\"\nstart_reserve = \"1M\"\n"));
    std::fs::create_dir_all(f.tmp.path().join("ws/ws-002")).expect("second slot");
    Some(f)
}

#[test]
fn a_hard_link_in_a_slot_does_not_hand_a_file_of_roots_to_the_next_agent() {
    let Some(f) = auto_fleet("contain-hardlink", 201_000) else { return };
    // Outside the pool, root's alone; linked into the slot as an agent can where
    // protected_hardlinks is off (root plants it here, whatever the host's setting).
    let outside = f.tmp.path().join("root-only");
    std::fs::write(&outside, "root-secret").expect("write");
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::hard_link(&outside, f.tmp.path().join("ws/ws-001/planted")).expect("hard link");
    let script = "cat $FLEET_WORKSPACE/planted; echo tried";
    f.run(&["spawn", "h1", "ws-001", "--user", "auto", "--", "sh", "-c", script]).code(0);
    f.wait_log("h1", "tried", T);
    let log = f.log("h1");
    assert!(!log.contains("root-secret") && log.contains("Permission denied"), "{log}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&outside).expect("meta");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600), "the file outside is still root's alone");
    f.finish();
}

#[test]
fn a_uid_stays_with_its_slot_and_nothing_of_it_outlives_its_agent() {
    let Some(f) = auto_fleet("contain-slotuid", 202_000) else { return };
    let ws1 = f.tmp.path().join("ws/ws-001");
    let holder =
        "echo mine > $FLEET_WORKSPACE/secret; chmod 600 $FLEET_WORKSPACE/secret; sleep 600 & echo orphan=$!; wait";
    f.run(&["spawn", "a1", "ws-001", "--user", "auto", "--", "sh", "-c", holder]).code(0);
    f.wait_log("a1", "orphan=", T);
    let orphan: i64 = f.log("a1").split("orphan=").nth(1).and_then(|r| r.trim().parse().ok()).expect("pid");
    let sup = f.agent("a1")["supervisor_pid"].as_i64().expect("supervisor");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
    crate::util::wait_until(T, || format!("supervisor {sup} survived SIGKILL"), || !crate::util::alive(sup));
    assert!(crate::util::alive(orphan), "a1's processes run on without their supervisor");

    // Another slot, another uid: neither a1's files nor its orphan are within reach.
    let reach = |id: &str| {
        let mut script = String::new();
        script += &format!("cat {}/secret; ", ws1.display());
        script += &super::attempt("signal orphan", &format!("kill -0 {orphan}"));
        script += "echo attempts-done";
        f.run(&["spawn", id, "ws-002", "--user", "auto", "--", "sh", "-c", &script]).code(0);
        f.wait_log(id, "attempts-done", T);
        f.log(id)
    };
    let log = reach("b1");
    assert!(!log.contains("mine") && log.contains("Permission denied"), "ws-002 read ws-001:\n{log}");
    assert!(log.contains("denied signal orphan"), "{log}");
    assert_eq!(record(&f, "b1")["user"], "202002:202002", "ws-002's uid");

    // The next agent of ws-001 has a1's uid: whatever a1 left running is ended first (it
    // may linger as a zombie, which runs nothing and which a signal no longer reaches).
    f.run(&["spawn", "a2", "ws-001", "--user", "auto", "--", "sleep", "600"]).code(0);
    crate::util::wait_until(T, || format!("a1's orphan {orphan} outlived a2's start"), || !crate::util::alive(orphan));
    assert_eq!(record(&f, "a2")["user"], "202001:202001", "ws-001's uid");
    f.run(&["kill", "a1", "a2"]).code(0);
    f.finish();
}

/// The first user of the host's passwd file other than root: `(name, uid)`.
fn a_hosts_user() -> Option<(String, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let uid = fields.get(2)?.parse::<u32>().ok().filter(|&u| u > 0 && u < 1 << 31)?;
        Some((fields[0].to_string(), uid))
    })
}

#[test]
fn root_via_sudo_and_a_range_of_the_hosts_users_are_refused() {
    let Some(f) = crate::util::TestFleet::new("contain-refuse") else { return };
    open_to_agents(&f);
    let config = f.tmp.path().join("no-user.toml");
    std::fs::write(&config, "").expect("config");
    let mut cmd = f.cmd(&["spawn", "r1", "ws-001", "--", "true"]);
    cmd.env("FLEET_CONFIG", &config).env("SUDO_UID", "0").env("SUDO_GID", "0").env("SUDO_USER", "root");
    Run::from(cmd.output().expect("spawn")).code(2).one_error_line("--user root");
    match a_hosts_user() {
        Some((name, uid)) => {
            f.set_config(&format!("[agent]\nuser = \"auto\"\nuid_range = \"{uid}-{uid}\"\n"));
            f.run(&["spawn", "r2", "ws-001", "--", "true"]).code(2).one_error_line(&format!("uid {uid} ({name})"));
        }
        None => {
            crate::util::skip::skip_part("root_via_sudo_and_a_range_of_the_hosts_users_are_refused", "no user but root")
        }
    }
    assert!(std::fs::read_dir(f.state.join("agents")).into_iter().flatten().next().is_none(), "nothing left");
    f.finish();
}

#[test]
fn logs_and_the_journal_an_older_fleetctl_left_readable_are_narrowed() {
    let Some(f) = crate::util::TestFleet::new("contain-logmode") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    let (journal, log) = (f.tmp.path().join("log/events.jsonl"), f.tmp.path().join("log/agents/l2.log"));
    std::fs::create_dir_all(log.parent().expect("dir")).expect("log dir");
    for file in [&journal, &log] {
        std::fs::write(file, "old-secret\n").expect("write");
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("an older fleetctl's mode");
    }
    f.run(&["spawn", "l2", "ws-001", "--user", "root", "--", "sh", "-c", "echo l2-wrote; sleep 600"]).code(0);
    f.wait_log("l2", "l2-wrote", T);
    let mut script = String::new();
    for file in [&journal, &log] {
        script += &super::attempt(&format!("read {}", file.display()), &format!("cat {}", file.display()));
    }
    script += "echo attempts-done";
    f.run(&["spawn", "l1", "ws-001", "--user", NOBODY, "--", "sh", "-c", &script]).code(0);
    f.wait_log("l1", "attempts-done", T);
    let seen = f.log("l1");
    assert!(!seen.contains("old-secret") && !seen.contains("ALLOWED"), "{seen}");
    assert_eq!(super::denials(&seen), 2, "{seen}");
    f.run(&["kill", "l2"]).code(0);
    f.finish();
}

/// A user of the host with a supplementary group: `(name, uid, primary gid, that group's gid)`.
fn a_user_with_a_supplementary_group() -> Option<(String, u32, u32, u32)> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    groups.lines().find_map(|line| {
        let g: Vec<&str> = line.split(':').collect();
        let member = g.get(3)?.split(',').find(|m| !m.is_empty())?;
        let entry = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|p| p[0] == member)?;
        let (uid, gid) = (entry.get(2)?.parse().ok()?, entry.get(3)?.parse().ok()?);
        Some((member.to_string(), uid, gid, g.get(2)?.parse().ok()?)).filter(|s| s.1 > 0 && s.3 != s.2)
    })
}

#[test]
fn a_sudo_caller_s_agent_gets_its_primary_group_alone() {
    let test = "a_sudo_caller_s_agent_gets_its_primary_group_alone";
    let Some(f) = crate::util::TestFleet::new("contain-groups") else { return };
    f.set_budget(256 << 20);
    open_to_agents(&f);
    let Some((name, uid, gid, extra)) = a_user_with_a_supplementary_group() else {
        crate::util::skip::skip_part(test, "no user of this host has a supplementary group");
        return f.finish();
    };
    let config = f.tmp.path().join("no-user.toml");
    std::fs::write(&config, "").expect("config");
    let groups = "echo groups=$(id -G)";
    let mut cmd = f.cmd(&["spawn", "g1", "ws-001", "--", "sh", "-c", groups]);
    cmd.env("FLEET_CONFIG", &config).env("SUDO_UID", uid.to_string()).env("SUDO_GID", gid.to_string());
    Run::from(cmd.output().expect("spawn")).code(0);
    f.run(&["spawn", "g2", "ws-001", "--user", &name, "--", "sh", "-c", groups]).code(0);
    f.wait_log("g1", "groups=", T);
    f.wait_log("g2", "groups=", T);
    assert!(f.log("g1").contains(&format!("groups={gid}\n")), "sudo's caller: {}", f.log("g1"));
    let named = f.log("g2");
    assert!(named.split_whitespace().any(|g| g.trim_start_matches("groups=") == extra.to_string()), "{named}");
    f.finish();
}

#[test]
fn a_workspace_the_agents_user_cannot_write_is_refused_at_spawn() {
    let Some(f) = crate::util::TestFleet::new("contain-unwritable") else { return };
    open_to_agents(&f);
    // As setup-host makes slots: root's, 0755.
    let (slot, sub) = (f.tmp.path().join("ws/ws-002"), f.tmp.path().join("ws/ws-001/roots"));
    for dir in [&slot, &sub] {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let config = f.tmp.path().join("no-user.toml");
    std::fs::write(&config, "").expect("config");
    for (id, args) in [("w1", &["ws-002"][..]), ("w2", &["ws-001", "--cwd", "roots"])] {
        let mut cmd = f.cmd(&[&["spawn", id][..], args, &["--", "true"]].concat());
        cmd.env("FLEET_CONFIG", &config).env("SUDO_UID", NOBODY).env("SUDO_GID", NOBODY);
        Run::from(cmd.output().expect("spawn")).code(2).one_error_line("is not writable by uid 65534");
        assert!(!f.state.join("agents").join(id).exists() && !f.cgroup(id).exists(), "{id} left something");
    }
    f.finish();
}

/// `--user auto` leases its slot's uid with its other leases, before it leaves the line: a
/// uid held by an agent of another pool sharing the range is 75 with nothing made without
/// `--queue`, and with it a wait in line (as for a slot) until that agent ends.
#[test]
fn a_uid_held_by_another_pool_is_waited_for_in_line_or_refused_whole() {
    let Some(f) = auto_fleet("contain-uidline", 203_000) else { return };
    // A second pool that shares the range and the lock dir: its ws-001 has a1's uid.
    let other = f.tmp.path().join("ws2");
    std::fs::create_dir_all(other.join("ws-001")).expect("second pool");
    f.run(&["spawn", "a1", "ws-001", "--user", "auto", "--", "sleep", "600"]).code(0);
    let in_other = |extra: &[&str]| {
        let mut cmd =
            f.cmd(&[&["spawn", "b1", "ws-001", "--user", "auto"][..], extra, &["--", "sleep", "600"]].concat());
        cmd.env("FLEET_WORKSPACE_ROOT", &other);
        cmd
    };
    Run::from(in_other(&[]).output().expect("spawn"))
        .code(75)
        .one_error_line("uid 203001 (slot ws-001's) is held by an agent of another pool");
    assert!(!f.state.join("agents/b1").exists(), "nothing made");
    let mut waiter = crate::queue::in_background(&mut in_other(&["--queue"]));
    crate::util::wait_until(
        T,
        || "b1 neither waits in line nor ended".into(),
        || !crate::queue::waiting(&f).is_empty() || waiter.child().try_wait().ok().flatten().is_some(),
    );
    if waiter.child().try_wait().expect("try_wait").is_some() {
        panic!("b1 must wait in line, not end: {:?}", waiter.output());
    }
    assert_eq!(crate::queue::waiting(&f)[0].1, "b1");
    f.run(&["kill", "a1"]).code(0);
    let run = waiter.output();
    run.code(0);
    assert!(run.stdout.contains("b1 started"), "{run:?}");
    assert_eq!(record(&f, "b1")["user"], "203001:203001", "a1's uid, free again");
    f.run(&["kill", "b1"]).code(0);
    f.finish();
}
