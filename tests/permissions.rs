//! A user without access to a root fleet gets exit 77 and what to do, never "no such agent"
//! or "not found"; what only reads works read-only.

use crate::util::{Run, TestFleet, alive, bin};
use std::{os::unix::fs::PermissionsExt, path::Path, process::Command, time::Duration};

/// `fleetctl ARGS` as nobody (uid and gid 65534, no groups), with the fleet's environment.
fn as_nobody(f: &TestFleet, args: &[&str]) -> Run {
    let fleet = f.cmd(args);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin()).args(args);
    for (key, value) in fleet.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    Run::from(cmd.output().expect("setpriv"))
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A root fleet with one running agent, `j1`, that others may look into but not write, as
/// under /run and /var/log; `None` where the test cannot run.
fn root_fleet(test: &str) -> Option<(TestFleet, i64)> {
    let f = TestFleet::new(test)?;
    if !Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success()) {
        crate::util::skip(test, "setpriv (util-linux) is not installed: it runs fleetctl as another user");
        f.finish();
        return None;
    }
    f.run(&["spawn", "j1", "ws-001", "--", "sh", "-c", "echo up; sleep 600"]).code(0);
    f.wait_log("j1", "up", Duration::from_secs(20));
    let pid = f.agent("j1")["pid"].as_i64().expect("pid");
    chmod(f.tmp.path(), 0o755);
    chmod(&f.tmp.path().join("fleet.toml"), 0o644);
    Some((f, pid))
}

fn end(f: TestFleet) {
    for dir in ["state", "log", "ws"] {
        chmod(&f.tmp.path().join(dir), 0o755);
    }
    f.run(&["kill", "j1"]).code(0);
    f.finish();
}

#[test]
fn reads_and_a_relief_dry_run_work_read_only() {
    let Some((f, _)) = root_fleet("permsread") else { return };
    as_nobody(&f, &["status"]).code(0);
    let dry = as_nobody(&f, &["relief", "99", "--dry-run"]);
    dry.code(0);
    assert!(dry.stdout.contains("target below 99 %"), "{dry:?}");
    end(f);
}

#[test]
fn a_kill_without_access_is_exit_77_with_what_to_do() {
    let Some((f, pid)) = root_fleet("permskill") else { return };
    let kill = as_nobody(&f, &["kill", "j1"]);
    kill.code(77).one_error_line("Permission denied");
    assert!(kill.stderr.contains("setup-host --delegate"), "says what to do: {kill:?}");
    assert!(alive(pid), "a refused kill harmed the agent");
    end(f);
}

#[test]
fn logs_in_unreadable_dirs_is_exit_77_not_no_such_agent() {
    let Some((f, _)) = root_fleet("permslogs") else { return };
    for dir in ["state", "log"] {
        chmod(&f.tmp.path().join(dir), 0o700);
    }
    let logs = as_nobody(&f, &["logs", "j1"]);
    logs.code(77).one_error_line("permission denied");
    // restart reads the record first: a record it may not read is 77 too, not a broken one.
    let restart = as_nobody(&f, &["restart", "j1"]);
    restart.code(77).one_error_line("permission denied");
    assert!(!logs.stderr.contains("no such agent"), "{logs:?}");
    end(f);
}

#[test]
fn spawn_with_unreadable_dirs_is_exit_77_not_not_found() {
    let Some((f, _)) = root_fleet("permsspawn") else { return };
    for dir in ["state", "log"] {
        chmod(&f.tmp.path().join(dir), 0o700);
    }
    // As itself: a caller who is not root runs its agents as itself.
    let spawn = as_nobody(&f, &["spawn", "j2", "ws-001", "--user", "65534", "--", "true"]);
    spawn.code(77).one_error_line("ermission denied");
    assert!(!spawn.stderr.contains("not found"), "{spawn:?}");
    // And an unreadable workspace root.
    chmod(&f.tmp.path().join("ws"), 0o700);
    let spawn = as_nobody(&f, &["spawn", "j2", "ws-001", "--user", "65534", "--", "true"]);
    spawn.code(77).one_error_line("permission denied");
    assert!(!spawn.stderr.contains("not found"), "{spawn:?}");
    end(f);
}
