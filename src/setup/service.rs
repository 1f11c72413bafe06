//! The steps that make a host find and guard its fleet by itself: the config file every
//! command reads (`config`, with or without sudo), and where systemd runs, the watcher's
//! service, enabled and started (`watcher`), which makes the fleet's scope.

use super::{Action, Item, Step, actions::service_state, steps::Host};
use fleet_core::host::packaging::{self, UNIT, config_text, set_key, size_value};
use std::path::Path;

/// Where setup-host writes the config, under `--root`.
const CONFIG: &str = "fleet/fleet.toml";

/// `/etc/fleet/fleet.toml` says where the fleet lives and its budget. An existing file keeps
/// its other keys and comments; the budget it holds stays unless `--fleet-memory-max` says.
pub fn config(host: &Host) -> Vec<Item> {
    let path = host.paths.etc.join(CONFIG);
    let parent = &host.opts.cgroup_parent;
    let existing = std::fs::read_to_string(&path).ok();
    let wanted = match &existing {
        None => config_text(parent, host.opts.fleet_memory_max),
        Some(text) => {
            let text = set_key(text, "paths", "cgroup_parent", parent);
            let has_budget = toml::from_str::<toml::Table>(&text)
                .is_ok_and(|t| t.get("fleet").and_then(|f| f.get("memory_max")).is_some());
            match (host.opts.fleet_memory_max, has_budget) {
                (Some(bytes), _) => set_key(&text, "fleet", "memory_max", &size_value(Some(bytes))),
                (None, true) => text,
                (None, false) => set_key(&text, "fleet", "memory_max", &size_value(None)),
            }
        }
    };
    let what = format!("config {}{}", path.display(), diff(existing.as_deref().unwrap_or(""), &wanted));
    match existing.as_deref() == Some(wanted.as_str()) {
        true => Item::in_place(Step::Config, format!("config {}", path.display())),
        false => Item::missing(Step::Config, what, Action::WriteFile { path, content: wanted }),
    }
    .into_vec()
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
    let what = format!("{UNIT} enabled and running (it makes fleetctl-fleet.scope and guards the fleet)");
    items.push(if host.paths.root != Path::new("/") {
        Item::skipped(s, what, "--root is a tree of files: systemctl is run only for the real root")
    } else if service_state(UNIT, "is-enabled") && service_state(UNIT, "is-active") {
        Item::in_place(s, what)
    } else {
        Item::missing(s, what, Action::EnableService(UNIT))
    });
    items
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
}
