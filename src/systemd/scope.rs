//! The fleet's scope, `fleetctl-fleet.scope`: a transient unit with `Delegate=yes`, made by
//! `systemd-run --scope` around a tiny anchor process that keeps it alive when no agent runs.
//! The watcher makes it when it is missing (after a boot, or the first time); spawn only
//! checks that it is there.

use crate::{
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::{Context, Result};
use fleet_core::{
    cgroup::Mounts,
    host::systemd::{self, SCOPE_UNIT},
    roots::Roots,
};
use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// How long the anchor may take to settle in its scope.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// The properties the scope is made with: delegated (the subtree below is fleetctl's),
/// memory and pids accounted (so the scope exists in those hierarchies and gets those
/// controllers from its slice), no task cap (systemd's default is 15 % of the pid limit;
/// 300 agents with 512 tasks each need more), and left alone by systemd-oomd (fleetctl's
/// guard decides which agent goes).
pub const SCOPE_PROPERTIES: [&str; 5] =
    ["Delegate=yes", "TasksMax=infinity", "MemoryAccounting=yes", "TasksAccounting=yes", "ManagedOOMPreference=omit"];

/// The argument that makes fleetctl the scope's anchor (`fleetctl scope-anchor`, nothing else
/// on the line): dispatched by `main` before the command line is parsed.
const ANCHOR_ARG: &str = "scope-anchor";

/// Whether `args` (the whole command line) calls the anchor.
pub fn is_anchor_call(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let rest: Vec<std::ffi::OsString> = args.skip(1).collect();
    rest.len() == 1 && rest[0] == ANCHOR_ARG
}

/// The command that makes the scope around `exe`'s anchor.
pub fn scope_command(exe: &Path) -> Vec<String> {
    let mut argv: Vec<String> = [
        "systemd-run",
        "--scope",
        "--quiet",
        &format!("--unit={}", SCOPE_UNIT.trim_end_matches(".scope")),
        "--slice=system.slice",
        "--description=fleetctl's fleet: every agent and its supervisor",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for property in SCOPE_PROPERTIES {
        argv.extend(["-p".to_string(), property.to_string()]);
    }
    argv.extend(["--".to_string(), exe.display().to_string(), ANCHOR_ARG.to_string()]);
    argv
}

/// Spawn and cgroup-create: a fleet root inside the scope needs the scope ready (made and
/// handing memory and pids down), which only the watcher makes. One stat when the fleet root
/// is there (every spawn after the first); `systemctl` runs only to word the refusal.
pub fn require(ctx: &Ctx) -> Result<()> {
    if !systemd::in_scope(&ctx.cgroup_parent) || ctx.fleet.root.exists() || systemd::scope_ready(&ctx.mounts) {
        return Ok(());
    }
    let exists = systemd::scope(&ctx.mounts)?.exists();
    let active = crate::setup::actions::service_state(fleet_core::host::packaging::UNIT, "is-active");
    Err(Fail::error(Exit::Unavailable, not_ready_line(exists, active)))
}

/// The refusal when the scope is not ready: `systemctl start fleetctl` when the watcher is not
/// running (it makes the scope as it starts), `restart` when it runs but the scope was stopped
/// or is not ready (it makes the scope only as it starts).
fn not_ready_line(exists: bool, service_active: bool) -> String {
    let state = if exists { "is not ready (its anchor has not handed memory and pids down)" } else { "does not exist" };
    match service_active {
        false => format!(
            "the fleet lives in {SCOPE_UNIT}, which {state} (fleetctl.service is not running): run `systemctl start fleetctl`, then spawn again"
        ),
        true => format!(
            "the fleet lives in {SCOPE_UNIT}, which {state} though fleetctl.service runs (the scope was stopped): run `systemctl restart fleetctl`, then spawn again"
        ),
    }
}

/// Makes the fleet root and its subtree where missing ([`fleet_core::cgroup::Fleet::ensure`]).
/// A fleet root made here gets the budget from `fleet.memory_max`; the watcher (`always`)
/// writes it on every start, so a changed config holds after `systemctl restart fleetctl`.
pub fn make_fleet_root(ctx: &Ctx, always: bool) -> Result<()> {
    let fresh = !ctx.fleet.root.exists();
    ctx.fleet.ensure()?;
    // The supervisors' leaf too: oomd ending it would orphan every agent at once.
    let _ = ctx.fleet.supervisors().omit_from_oomd();
    if let Some(bytes) = ctx.fleet_settings.memory_max
        && (fresh || always)
    {
        let file = ctx.fleet.root.memory_limit_file();
        fleet_core::host::ancestry::write_value(&file, &bytes.to_string(), "memory")
            .with_context(|| format!("cannot give the fleet its budget (fleet.memory_max = {bytes} bytes)"))?;
    }
    Ok(())
}

/// Where the supervisor `pid` (and the agents it forks, which inherit it) goes in the
/// `name=systemd` hierarchy of a hybrid host where systemd runs: the fleet's scope, so that
/// systemd counts them as the scope's and not as the caller's unit (an ssh session's, which
/// a logout with `KillUserProcesses=yes` would end). Nothing on pure cgroup v2, where the
/// unified tree is systemd's too, and nothing without systemd.
pub fn track(ctx: &Ctx, pid: i32) -> Result<()> {
    if ctx.mounts.layout != fleet_core::cgroup::Layout::Hybrid || !systemd::booted_here() {
        return Ok(());
    }
    let roots = Roots::host();
    let Some(mount) = systemd::tracking_mount(&roots.cgroup) else { return Ok(()) };
    match systemd::tracking_cgroup(&mount, &ctx.cgroup_parent) {
        Some(dir) => Ok(systemd::track_in(&dir, pid)?),
        None => Ok(()),
    }
}

/// The watcher: makes the scope if it is missing and waits until its anchor has settled,
/// so the fleet root can be made below it. Nothing to do for a fleet root outside the scope.
pub fn ensure(ctx: &Ctx) -> Result<()> {
    if !systemd::in_scope(&ctx.cgroup_parent) || systemd::scope_ready(&ctx.mounts) {
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find fleetctl's own executable")?;
    let argv = scope_command(&exe);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // The watcher's notifications are its own.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        // Its own process group: a signal to the watcher's group is not for the anchor.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {} to make {SCOPE_UNIT}", argv[0]))?;
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        if systemd::scope_ready(&ctx.mounts) {
            // The anchor lives on in the scope, a child of this process until it ends.
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let mut said = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut said);
            }
            let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
            anyhow::bail!("`{}` failed ({status}): {said}", argv.join(" "));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{SCOPE_UNIT} was not ready {} s after `{}`",
            SETTLE_WITHIN.as_secs(),
            argv.join(" ")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `fleetctl scope-anchor` (not in the command-line definition): settles in the scope's `anchor/` leaf, has the scope
/// hand memory and pids down, and then only waits for a signal, allocating nothing, for as
/// long as the scope should live.
pub fn anchor() -> Result<Exit> {
    let roots = Roots::host();
    let mounts = Mounts::locate(&roots.cgroup, &roots.proc)?;
    systemd::settle_anchor(&mounts).context("the fleet's scope anchor cannot settle")?;
    // Nothing more to say: systemd-run's pipe to the watcher closes here.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    loop {
        nix::unistd::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_not_ready_names_the_command_that_makes_it() {
        let line = not_ready_line(false, false);
        assert!(line.contains("which does not exist") && line.contains("`systemctl start fleetctl`"), "{line}");
        // The watcher runs but the scope is gone: only a restart makes it again.
        let line = not_ready_line(false, true);
        assert!(line.contains("`systemctl restart fleetctl`") && !line.contains("systemctl start"), "{line}");
        let line = not_ready_line(true, true);
        assert!(line.contains("is not ready") && line.contains("`systemctl restart fleetctl`"), "{line}");
    }

    #[test]
    fn the_scope_is_made_delegated_uncapped_and_omitted_by_oomd() {
        let argv = scope_command(Path::new("/usr/bin/fleetctl"));
        let line = argv.join(" ");
        assert_eq!(
            line,
            "systemd-run --scope --quiet --unit=fleetctl-fleet --slice=system.slice \
             --description=fleetctl's fleet: every agent and its supervisor \
             -p Delegate=yes -p TasksMax=infinity -p MemoryAccounting=yes -p TasksAccounting=yes \
             -p ManagedOOMPreference=omit -- /usr/bin/fleetctl scope-anchor"
        );
        assert!(is_anchor_call(["fleetctl", "scope-anchor"].map(std::ffi::OsString::from).into_iter()));
        assert!(!is_anchor_call(["fleetctl", "scope-anchor", "x"].map(std::ffi::OsString::from).into_iter()));
        assert!(!is_anchor_call(["fleetctl", "status"].map(std::ffi::OsString::from).into_iter()));
        // One argument each: the description has spaces but is not split.
        assert!(argv.contains(&"--description=fleetctl's fleet: every agent and its supervisor".to_string()));
    }
}
