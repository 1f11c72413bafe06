//! The steps that make a host find and guard its fleet by itself: the config file every
//! command reads (`config`, with or without sudo), and where systemd runs, the watcher's
//! service, enabled and started (`watcher`), which makes the fleet's scope.

use super::{Action, Item, Step, actions::service_state, steps::Host};
use fleet_core::host::packaging::{self, UNIT, config_text, set_key, size_value};
use std::path::Path;

/// Where setup-host writes the config, under `--root`.
const CONFIG: &str = "fleet/fleet.toml";

/// `/etc/fleet/fleet.toml` says where the fleet lives and its budget. The fleet root is
/// written only when it is not the host's built-in one (which follows the host), so a default
/// run after the package's install changes nothing; a key the file has stays where it is,
/// set to the fleet root in use. An existing file keeps its other keys and comments; the
/// budget it holds stays unless `--fleet-memory-max` says.
pub fn config(host: &Host) -> anyhow::Result<Vec<Item>> {
    let path = host.paths.etc.join(CONFIG);
    let parent = &host.opts.cgroup_parent;
    let own_parent = parent != crate::settings::built_in_cgroup_parent(host.opts.systemd);
    let existing = std::fs::read_to_string(&path).ok();
    let bad = |m: String| anyhow::anyhow!("{}: {m}", path.display());
    let wanted = match &existing {
        None => config_text(own_parent.then_some(parent.as_str()), host.opts.fleet_memory_max),
        Some(text) => {
            let table = toml::from_str::<toml::Table>(text).ok();
            let held = |section: &str, key: &str| {
                table.as_ref().is_some_and(|t| t.get(section).and_then(|s| s.get(key)).is_some())
            };
            let text = match own_parent || held("paths", "cgroup_parent") {
                true => set_key(text, "paths", "cgroup_parent", parent).map_err(bad)?,
                false => text.clone(),
            };
            match (host.opts.fleet_memory_max, held("fleet", "memory_max")) {
                (Some(bytes), _) => set_key(&text, "fleet", "memory_max", &size_value(Some(bytes))).map_err(bad)?,
                (None, true) => text,
                (None, false) => set_key(&text, "fleet", "memory_max", &size_value(None)).map_err(bad)?,
            }
        }
    };
    let what = format!("config {}{}", path.display(), diff(existing.as_deref().unwrap_or(""), &wanted));
    Ok(match existing.as_deref() == Some(wanted.as_str()) {
        true => Item::in_place(Step::Config, format!("config {}", path.display())),
        false => Item::missing(Step::Config, what, Action::WriteFile { path, content: wanted }),
    }
    .into_vec())
}

/// The settings lines a write changes, as ` (-old; +new)`: the diff the operator sees in
/// `--dry-run` and in the report.
fn diff(before: &str, after: &str) -> String {
    let setting = |l: &&str| !l.trim_start().starts_with('#') && l.contains('=');
    let gone: Vec<String> =
        before.lines().filter(setting).filter(|l| !after.lines().any(|a| a == *l)).map(|l| format!("-{l}")).collect();
    let new: Vec<String> =
        after.lines().filter(setting).filter(|l| !before.lines().any(|b| b == *l)).map(|l| format!("+{l}")).collect();
    let all = [gone, new].concat();
    match all.is_empty() {
        true => String::new(),
        false => format!(" ({})", all.join("; ")),
    }
}

/// Where systemd runs: the unit (the package's in `/lib/systemd/system`, or one written to
/// `/etc/systemd/system` with this executable), then `daemon-reload` and `enable --now`. The
/// service runs only for the real root: a `--root` prefix is a tree of files, not a host.
pub fn watcher(host: &Host) -> Vec<Item> {
    let s = Step::Watcher;
    if !host.opts.systemd {
        return Item::skipped(
            s,
            "watcher service",
            "no systemd here: run `fleetctl watch --auto-kill` under this host's init system (docs/setup-host.md)",
        )
        .into_vec();
    }
    let packaged = host.paths.root.join("lib/systemd/system").join(UNIT);
    let mut items = vec![match packaged.is_file() {
        true => Item::in_place(s, format!("unit {} (from the package)", packaged.display())),
        false => {
            let path = host.paths.etc.join("systemd/system").join(UNIT);
            let content = packaging::unit_text(&host.opts.exe);
            let what = format!("unit {}", path.display());
            match std::fs::read_to_string(&path).is_ok_and(|t| t == content) {
                true => Item::in_place(s, what),
                false => Item::missing(s, what, Action::WriteFile { path, content }),
            }
        }
    }];
    let real_root = host.paths.root == Path::new("/");
    items.extend(old_watcher(real_root && service_state(OLD_UNIT, "is-enabled")));
    let what = format!("{UNIT} enabled and running (it makes fleetctl-fleet.scope and guards the fleet)");
    items.push(if !real_root {
        Item::skipped(s, what, "--root is a tree of files: systemctl is run only for the real root")
    } else if service_state(UNIT, "is-enabled") && service_state(UNIT, "is-active") {
        Item::in_place(s, what)
    } else {
        Item::missing(s, what, Action::EnableService(UNIT))
    });
    items
}

/// The watcher's unit of hosts set up before `fleetctl.service`, which setup-host wrote but
/// never enabled; an operator who enabled it by hand has a guard holding the watch lock, so
/// `fleetctl.service` could not arm its own.
const OLD_UNIT: &str = "fleetctl-watch.service";

/// The old watcher's unit disabled and stopped, when it is `enabled`.
fn old_watcher(enabled: bool) -> Option<Item> {
    enabled.then(|| {
        Item::missing(
            Step::Watcher,
            format!("{OLD_UNIT} disabled and stopped ({UNIT} guards the fleet now; the old one holds the watch lock)"),
            Action::DisableService(OLD_UNIT),
        )
    })
}

impl Item {
    fn into_vec(self) -> Vec<Item> {
        vec![self]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_the_settings_that_change() {
        assert_eq!(diff("", "# c\n[paths]\ncgroup_parent = \"/fleet\"\n"), " (+cgroup_parent = \"/fleet\")");
        assert_eq!(
            diff("[fleet]\nmemory_max = \"max\"\n", "[fleet]\nmemory_max = \"4G\"\n"),
            " (-memory_max = \"max\"; +memory_max = \"4G\")"
        );
        assert_eq!(diff("a = 1\n", "a = 1\n"), "");
    }

    #[test]
    fn an_enabled_old_watcher_is_disabled_before_the_new_one_starts() {
        assert!(old_watcher(false).is_none());
        let item = old_watcher(true).expect("an item");
        assert!(matches!(item.status, super::super::Status::Missing(Action::DisableService("fleetctl-watch.service"))));
    }
}
