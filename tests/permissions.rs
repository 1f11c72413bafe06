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

#[test]
fn permission_problems_are_exit_77_with_what_to_do() {
    let Some(f) = TestFleet::new("perms") else { return };
    if !Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success()) {
        crate::util::skip("perms", "setpriv (util-linux) is not installed: it runs fleetctl as another user");
        return f.finish();
    }
    f.run(&["spawn", "j1", "ws-001", "--", "sh", "-c", "echo up; sleep 600"]).code(0);
    f.wait_log("j1", "up", Duration::from_secs(20));
    let pid = f.agent("j1")["pid"].as_i64().expect("pid");
    // Others may look (as under /run and /var/log) but not write.
    chmod(f.tmp.path(), 0o755);
    chmod(&f.tmp.path().join("fleet.toml"), 0o644);

    // Reads work without a write lock: status, and relief's dry run.
    as_nobody(&f, &["status"]).code(0);
    let dry = as_nobody(&f, &["relief", "99", "--dry-run"]);
    dry.code(0);
    assert!(dry.stdout.contains("target below 99 %"), "{dry:?}");

    let kill = as_nobody(&f, &["kill", "j1"]);
    kill.code(77).one_error_line("Permission denied");
    assert!(kill.stderr.contains("setup-host --delegate"), "says what to do: {kill:?}");
    assert!(alive(pid), "a refused kill harmed the agent");

    // An unreadable state and log dir: not "no such agent", not "workspace not found".
    for dir in ["state", "log"] {
        chmod(&f.tmp.path().join(dir), 0o700);
    }
    let logs = as_nobody(&f, &["logs", "j1"]);
    logs.code(77).one_error_line("permission denied");
    assert!(!logs.stderr.contains("no such agent"), "{logs:?}");
    let spawn = as_nobody(&f, &["spawn", "j2", "ws-001", "--", "true"]);
    spawn.code(77).one_error_line("ermission denied");
    assert!(!spawn.stderr.contains("not found"), "{spawn:?}");
    // And an unreadable workspace root.
    chmod(&f.tmp.path().join("ws"), 0o700);
    let spawn = as_nobody(&f, &["spawn", "j2", "ws-001", "--", "true"]);
    spawn.code(77).one_error_line("permission denied");
    assert!(!spawn.stderr.contains("not found"), "{spawn:?}");

    for dir in ["state", "log", "ws"] {
        chmod(&f.tmp.path().join(dir), 0o755);
    }
    f.run(&["kill", "j1"]).code(0);
    f.finish();
}
