//! doctor's checks on a systemd host, each with its fix: the watcher's unit (installed,
//! enabled, running), the fleet's scope (there, delegated, no task cap), the controllers it
//! hands down, systemd-oomd, logind's `KillUserProcesses`, and systemd's version. The
//! verdicts are pure functions of what `systemctl`/`busctl` printed, unit-tested on fake text.

use super::show::{self, KNOWN_GOOD};
use crate::context::Ctx;
use fleet_core::{
    cgroup::Layout,
    host::{
        packaging::UNIT,
        systemd::{self, SCOPE_UNIT},
    },
};
use std::{collections::BTreeMap, process::Command};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// In place.
    Ok,
    /// The fleet is at risk: fix it.
    Fail,
    /// Worth knowing; never a failure.
    Note,
}

/// One check's outcome: doctor prints it as a line or a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The check's name (`service`, `scope`, `controllers`, `oomd`, `logind`, `systemd`).
    pub name: &'static str,
    /// How it came out.
    pub level: Level,
    /// What was found.
    pub message: String,
    /// What to do, for a failure or a note.
    pub fix: Option<String>,
}

fn finding(name: &'static str, level: Level, message: impl Into<String>, fix: Option<&str>) -> Finding {
    Finding { name, level, message: message.into(), fix: fix.map(str::to_string) }
}

/// Properties read of the watcher's unit and the fleet's scope.
const SHOWN: [&str; 6] = ["LoadState", "ActiveState", "UnitFileState", "Delegate", "TasksMax", "ManagedOOMPreference"];

/// Every check, on a host where systemd runs.
pub fn run(ctx: &Ctx) -> Vec<Finding> {
    let in_scope = systemd::in_scope(&ctx.cgroup_parent);
    let empty = BTreeMap::new;
    let service = show::show(UNIT, &SHOWN).unwrap_or_else(|_| empty());
    let scope = show::show(SCOPE_UNIT, &SHOWN).unwrap_or_else(|_| empty());
    let mut out = vec![version(show::version()), service_unit(&service)];
    if in_scope {
        out.push(scope_unit(&scope));
        out.extend(controllers(ctx));
    } else {
        out.push(outside_scope(&ctx.cgroup_parent));
    }
    let oomd_active =
        Command::new("systemctl").args(["is-active", "--quiet", "systemd-oomd"]).status().is_ok_and(|s| s.success());
    out.push(oomd(oomd_active, &service, &scope));
    let busctl = Command::new("busctl")
        .args(["get-property", "org.freedesktop.login1", "/org/freedesktop/login1"])
        .args(["org.freedesktop.login1.Manager", "KillUserProcesses"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    out.push(logind(busctl.as_deref(), in_scope));
    out
}

/// A fleet root outside the scope (a host set up before it, whose fleet stays at `/fleet`,
/// or a `--cgroup-parent` of the operator's): how to move the fleet into the scope.
pub fn outside_scope(cgroup_parent: &str) -> Finding {
    finding(
        "scope",
        Level::Fail,
        format!(
            "the fleet root {cgroup_parent} lives outside a delegated unit ({SCOPE_UNIT}): systemd does not know it is fleetctl's"
        ),
        Some(&format!(
            "to move it into the scope: let its agents end (`fleetctl status` shows none), remove the cgroup {cgroup_parent} (its agents/ and supervisors/ first) and any paths.cgroup_parent from /etc/fleet/fleet.toml, then run `sudo fleetctl setup-host` (docs/operations.md)"
        )),
    )
}

/// systemd's version: 252 (Debian 12) or newer is what fleetctl is tested on.
pub fn version(version: Option<u32>) -> Finding {
    match version {
        Some(v) if v >= KNOWN_GOOD => {
            finding("systemd", Level::Ok, format!("systemd {v} (252 or newer is known to work)"), None)
        }
        Some(v) => finding(
            "systemd",
            Level::Note,
            format!("systemd {v} is older than 252, the oldest fleetctl is tested on"),
            Some("upgrade to Debian 12, Ubuntu 24.04 or newer; tell us what breaks"),
        ),
        None => finding("systemd", Level::Note, "cannot tell systemd's version (`systemctl --version`)", None),
    }
}

/// The watcher's unit: installed, enabled at boot, running.
pub fn service_unit(shown: &BTreeMap<String, String>) -> Finding {
    let get = |k: &str| shown.get(k).map(String::as_str).unwrap_or("");
    let fix = Some("sudo fleetctl setup-host --only config,watcher");
    if get("LoadState") != "loaded" {
        return finding(
            "service",
            Level::Fail,
            format!("{UNIT} is not installed: nothing guards the fleet or makes its scope"),
            fix,
        );
    }
    match (get("UnitFileState"), get("ActiveState")) {
        ("enabled", "active") => finding("service", Level::Ok, format!("{UNIT} is enabled and running"), None),
        (enabled, active) => finding(
            "service",
            Level::Fail,
            format!("{UNIT} is {enabled} and {active}: after a boot nothing guards the fleet or makes its scope"),
            Some("sudo systemctl enable --now fleetctl"),
        ),
    }
}

/// The fleet's scope: running, delegated, no task cap.
pub fn scope_unit(shown: &BTreeMap<String, String>) -> Finding {
    let get = |k: &str| shown.get(k).map(String::as_str).unwrap_or("");
    if get("ActiveState") != "active" {
        return finding(
            "scope",
            Level::Fail,
            format!("{SCOPE_UNIT} does not exist: spawn refuses (exit 69) until fleetctl.service makes it"),
            Some("sudo systemctl start fleetctl"),
        );
    }
    let mut wrong = Vec::new();
    if get("Delegate") != "yes" {
        wrong.push(format!("Delegate={} (systemd may rewrite the fleet's cgroups)", get("Delegate")));
    }
    if get("TasksMax") != "infinity" {
        wrong.push(format!("TasksMax={} (caps every agent's tasks together)", get("TasksMax")));
    }
    match wrong.is_empty() {
        true => finding(
            "scope",
            Level::Ok,
            format!("{SCOPE_UNIT} is running with Delegate=yes and TasksMax=infinity"),
            None,
        ),
        false => finding(
            "scope",
            Level::Fail,
            format!("{SCOPE_UNIT} was not made by fleetctl: {}", wrong.join(", ")),
            Some("fleetctl kill --all, then systemctl stop fleetctl-fleet.scope and systemctl restart fleetctl"),
        ),
    }
}

/// On cgroup v2: the scope and the fleet root hand memory and pids down; on hybrid hosts:
/// the scope is in the v1 memory and pids hierarchies.
fn controllers(ctx: &Ctx) -> Vec<Finding> {
    let Ok(scope) = systemd::scope(&ctx.mounts) else { return Vec::new() };
    if !scope.exists() {
        return Vec::new();
    }
    if ctx.mounts.layout == Layout::Hybrid {
        let missing: Vec<String> =
            scope.dirs().into_iter().filter(|d| !d.is_dir()).map(|d| d.display().to_string()).collect();
        return vec![controllers_verdict(&[], &missing)];
    }
    let lacking = |dir: &std::path::Path| -> Vec<String> {
        let on = systemd::handed_down(dir).unwrap_or_default();
        ["memory", "pids"]
            .iter()
            .filter(|c| !on.iter().any(|o| o == *c))
            .map(|c| format!("{c} in {}", dir.display()))
            .collect()
    };
    let mut missing = lacking(&scope.unified);
    if ctx.fleet.root.exists() {
        missing.extend(lacking(&ctx.fleet.root.unified));
    }
    vec![controllers_verdict(&missing, &[])]
}

/// The controllers' verdict: `lacking` controllers not handed down, `absent` v1 directories.
pub fn controllers_verdict(lacking: &[String], absent: &[String]) -> Finding {
    match (lacking.is_empty(), absent.is_empty()) {
        (true, true) => finding("controllers", Level::Ok, "memory and pids reach the fleet through its scope", None),
        (false, _) => finding(
            "controllers",
            Level::Fail,
            format!("not handed down: {}", lacking.join(", ")),
            Some("sudo systemctl restart fleetctl (the watcher's anchor enables them)"),
        ),
        (true, false) => finding(
            "controllers",
            Level::Fail,
            format!("the scope is missing from a v1 hierarchy: {}", absent.join(", ")),
            Some("fleetctl kill --all, then systemctl stop fleetctl-fleet.scope and systemctl restart fleetctl"),
        ),
    }
}

/// systemd-oomd: running or not, and whether it leaves the fleet to fleetctl's guard.
pub fn oomd(active: bool, service: &BTreeMap<String, String>, scope: &BTreeMap<String, String>) -> Finding {
    if !active {
        return finding(
            "oomd",
            Level::Ok,
            "systemd-oomd is not running: fleetctl's guard alone kills under pressure",
            None,
        );
    }
    let omitted = |shown: &BTreeMap<String, String>| shown.get("ManagedOOMPreference").is_some_and(|p| p == "omit");
    match (omitted(scope), omitted(service)) {
        (true, true) => finding(
            "oomd",
            Level::Ok,
            "systemd-oomd is running and leaves the fleet to its guard (ManagedOOMPreference=omit on the scope and the service, user.oomd_omit on each agent's and the supervisors' cgroup)",
            None,
        ),
        _ => finding(
            "oomd",
            Level::Fail,
            "systemd-oomd is running and may kill agents or the guard: ManagedOOMPreference=omit is missing on the scope or the service",
            Some(
                "sudo fleetctl setup-host --only watcher, then systemctl restart fleetctl (or `systemctl disable --now systemd-oomd`)",
            ),
        ),
    }
}

/// logind's `KillUserProcesses` (`busctl` prints `b true`): agents in the scope survive a
/// logout either way; outside it they end with the session that spawned them.
pub fn logind(busctl: Option<&str>, in_scope: bool) -> Finding {
    let kills = match busctl.map(str::trim) {
        Some("b true") => true,
        Some("b false") => false,
        _ => return finding("logind", Level::Note, "cannot tell logind's KillUserProcesses (busctl)", None),
    };
    match (kills, in_scope) {
        (false, _) => finding("logind", Level::Ok, "KillUserProcesses=no: a logout ends no agent", None),
        (true, true) => finding(
            "logind",
            Level::Ok,
            "KillUserProcesses=yes: agents live in fleetctl-fleet.scope, not in the session, and outlive its logout",
            None,
        ),
        (true, false) => finding(
            "logind",
            Level::Fail,
            "KillUserProcesses=yes and the fleet is outside its scope: agents spawned from a session end at its logout",
            Some("sudo fleetctl setup-host (the fleet moves into fleetctl-fleet.scope)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_outside_the_scope_is_a_failure_that_says_how_to_move_it() {
        let f = outside_scope("/fleet");
        assert_eq!((f.name, f.level), ("scope", Level::Fail));
        assert!(f.message.contains("/fleet lives outside a delegated unit"), "{}", f.message);
        let fix = f.fix.expect("a fix");
        for step in ["let its agents end", "remove the cgroup /fleet", "sudo fleetctl setup-host"] {
            assert!(fix.contains(step), "{step} missing from {fix}");
        }
    }

    fn shown(text: &str) -> BTreeMap<String, String> {
        show::parse_show(text)
    }

    #[test]
    fn the_service_must_be_installed_enabled_and_running() {
        let ok = service_unit(&shown("LoadState=loaded\nUnitFileState=enabled\nActiveState=active\n"));
        assert_eq!(ok.level, Level::Ok);
        let off = service_unit(&shown("LoadState=loaded\nUnitFileState=disabled\nActiveState=inactive\n"));
        assert_eq!((off.level, off.fix.as_deref()), (Level::Fail, Some("sudo systemctl enable --now fleetctl")));
        assert!(off.message.contains("disabled and inactive"), "{}", off.message);
        let missing = service_unit(&shown("LoadState=not-found\nActiveState=inactive\n"));
        assert_eq!(missing.level, Level::Fail);
        assert!(missing.message.contains("not installed"));
    }

    #[test]
    fn the_scope_must_be_delegated_without_a_task_cap() {
        let good = "ActiveState=active\nDelegate=yes\nTasksMax=infinity\n";
        assert_eq!(scope_unit(&shown(good)).level, Level::Ok);
        let capped = scope_unit(&shown("ActiveState=active\nDelegate=no\nTasksMax=4915\n"));
        assert_eq!(capped.level, Level::Fail);
        assert!(
            capped.message.contains("Delegate=no") && capped.message.contains("TasksMax=4915"),
            "{}",
            capped.message
        );
        let gone = scope_unit(&shown("ActiveState=inactive\n"));
        assert_eq!((gone.level, gone.fix.as_deref()), (Level::Fail, Some("sudo systemctl start fleetctl")));
    }

    #[test]
    fn oomd_must_omit_the_scope_and_the_service() {
        let omit = shown("ManagedOOMPreference=omit\n");
        let none = shown("ManagedOOMPreference=none\n");
        assert_eq!(oomd(false, &none, &none).level, Level::Ok);
        assert_eq!(oomd(true, &omit, &omit).level, Level::Ok);
        assert_eq!(oomd(true, &omit, &none).level, Level::Fail);
        assert_eq!(oomd(true, &none, &omit).level, Level::Fail);
    }

    #[test]
    fn kill_user_processes_matters_only_outside_the_scope() {
        assert_eq!(logind(Some("b true\n"), true).level, Level::Ok);
        assert_eq!(logind(Some("b false\n"), false).level, Level::Ok);
        assert_eq!(logind(Some("b true\n"), false).level, Level::Fail);
        assert_eq!(logind(None, true).level, Level::Note);
    }

    #[test]
    fn versions_from_252_are_known_to_work() {
        assert_eq!(version(Some(252)).level, Level::Ok);
        assert_eq!(version(Some(255)).level, Level::Ok);
        assert_eq!(version(Some(249)).level, Level::Note);
        assert_eq!(version(None).level, Level::Note);
    }

    #[test]
    fn controllers_name_what_is_missing() {
        assert_eq!(controllers_verdict(&[], &[]).level, Level::Ok);
        let lacking = controllers_verdict(&["pids in /x".into()], &[]);
        assert_eq!(lacking.level, Level::Fail);
        assert!(lacking.message.contains("pids in /x"));
        assert_eq!(controllers_verdict(&[], &["/cg/memory/s".into()]).level, Level::Fail);
    }
}
