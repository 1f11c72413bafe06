//! The two files fleetctl installs on a systemd host, as one text each for `setup-host` and
//! the package (`cargo xtask deb`): the watcher's unit (`packaging/fleetctl.service` with the
//! executable filled in) and `/etc/fleet/fleet.toml` (where the fleet lives, its budget).
//! The package's conffile is [`packaged_config`], what a default `setup-host` writes on a
//! systemd host, so running it after the install changes nothing.

use super::systemd::FLEET_ROOT;
use std::path::Path;

/// The unit's template; `@FLEETCTL@` is the executable.
const UNIT_TEMPLATE: &str = include_str!("../../../../packaging/fleetctl.service");

/// Where the package installs fleetctl.
pub const PACKAGED_EXE: &str = "/usr/bin/fleetctl";

/// The unit's name.
pub const UNIT: &str = "fleetctl.service";

/// `fleetctl.service` running `exe`.
pub fn unit_text(exe: &Path) -> String {
    UNIT_TEMPLATE.replace("@FLEETCTL@", &exe.display().to_string())
}

/// The unit as the package installs it (`/lib/systemd/system/fleetctl.service`).
pub fn packaged_unit() -> String {
    unit_text(Path::new(PACKAGED_EXE))
}

/// The config file as the package ships it: a systemd host's, with no budget of its own.
pub fn packaged_config() -> String {
    config_text(FLEET_ROOT, None)
}

/// `/etc/fleet/fleet.toml` for a fleet rooted at `cgroup_parent` with the budget
/// `memory_max` (None: "max", the host's memory).
pub fn config_text(cgroup_parent: &str, memory_max: Option<u64>) -> String {
    format!(
        "# fleetctl's settings: every fleetctl command reads this file, with or without sudo.\n\
         # `fleetctl setup-host` keeps the two values below; the other keys (docs/usage.md) are yours.\n\
         \n\
         [paths]\n\
         # The fleet root cgroup: every agent and its supervisor live below it.\n\
         cgroup_parent = {}\n\
         \n\
         [fleet]\n\
         # The fleet's memory budget, the fleet root's memory limit; \"max\": the host's memory.\n\
         memory_max = {}\n",
        quoted(cgroup_parent),
        quoted(&size_value(memory_max))
    )
}

/// The `fleet.memory_max` value for `bytes`: the largest whole K, M or G unit, "max" for none.
pub fn size_value(bytes: Option<u64>) -> String {
    let Some(bytes) = bytes else { return "max".into() };
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `text` with `key = value` set in `[section]`: the key's line replaced where it is, or
/// added at the top of the section, or the section added at the end. Every other line is
/// kept as written, so an operator's own keys and comments survive setup-host.
pub fn set_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let header = format!("[{section}]");
    let line = format!("{key} = {}", quoted(value));
    let mut out: Vec<String> = text.lines().map(str::to_string).collect();
    let start = out.iter().position(|l| l.trim() == header);
    let Some(start) = start else {
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        if !out.is_empty() {
            out.push(String::new());
        }
        out.extend([header, line]);
        return out.join("\n") + "\n";
    };
    let end =
        out.iter().skip(start + 1).position(|l| l.trim_start().starts_with('[')).map_or(out.len(), |i| start + 1 + i);
    let is_key = |l: &str| l.split('=').next().is_some_and(|k| k.trim() == key) && l.contains('=');
    match (start + 1..end).find(|i| is_key(&out[*i])) {
        Some(i) => out[i] = line,
        None => out.insert(start + 1, line),
    }
    out.join("\n") + "\n"
}

/// `value` as a TOML basic string.
fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_given_executable_as_a_notify_service() {
        let unit = unit_text(Path::new("/opt/fleetctl/bin/fleetctl"));
        assert!(unit.contains("\nExecStart=/opt/fleetctl/bin/fleetctl watch --auto-kill\n"), "{unit}");
        assert!(!unit.contains("@FLEETCTL@"));
        for line in [
            "Type=notify",
            "WatchdogSec=30s",
            "KillSignal=SIGINT",
            "Restart=always",
            "OOMScoreAdjust=-1000",
            "ManagedOOMPreference=omit",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing from\n{unit}");
        }
        // The watcher is not delegated: the fleet lives in the scope (a delegated service
        // cannot restart once it hands controllers down: 219/CGROUP on systemd 252).
        assert!(!unit.contains("Delegate="));
        assert!(packaged_unit().contains("ExecStart=/usr/bin/fleetctl watch --auto-kill"));
    }

    #[test]
    fn the_packaged_config_puts_the_fleet_in_the_scope_with_no_budget() {
        let text = packaged_config();
        let table: toml::Table = toml::from_str(&text).expect("valid TOML");
        assert_eq!(table["paths"]["cgroup_parent"].as_str(), Some("/system.slice/fleetctl-fleet.scope/fleet"));
        assert_eq!(table["fleet"]["memory_max"].as_str(), Some("max"));
        let budget: toml::Table = toml::from_str(&config_text("/fleet", Some(48 << 30))).expect("valid TOML");
        assert_eq!(budget["fleet"]["memory_max"].as_str(), Some("48G"));
        assert_eq!(budget["paths"]["cgroup_parent"].as_str(), Some("/fleet"));
    }

    #[test]
    fn sizes_are_written_in_their_largest_whole_unit() {
        assert_eq!(size_value(None), "max");
        assert_eq!(size_value(Some(48 << 30)), "48G");
        assert_eq!(size_value(Some(1536 << 20)), "1536M");
        assert_eq!(size_value(Some(1000)), "1000");
    }

    #[test]
    fn setting_a_key_keeps_every_other_line() {
        let mine =
            "# mine\n[thresholds]\nspawn = 80\n\n[paths]\nstate_dir = \"/srv\"\ncgroup_parent = \"/old\" # here\n";
        let set = set_key(mine, "paths", "cgroup_parent", "/fleet");
        assert_eq!(
            set,
            "# mine\n[thresholds]\nspawn = 80\n\n[paths]\nstate_dir = \"/srv\"\ncgroup_parent = \"/fleet\"\n"
        );
        let added = set_key(&set, "fleet", "memory_max", "4G");
        assert!(added.ends_with("cgroup_parent = \"/fleet\"\n\n[fleet]\nmemory_max = \"4G\"\n"), "{added}");
        let again = set_key(&added, "fleet", "memory_max", "8G");
        assert!(again.ends_with("[fleet]\nmemory_max = \"8G\"\n"), "{again}");
        let inserted = set_key("[paths]\nstate_dir = \"/srv\"\n[agent]\n", "paths", "cgroup_parent", "/f");
        assert_eq!(inserted, "[paths]\ncgroup_parent = \"/f\"\nstate_dir = \"/srv\"\n[agent]\n");
        assert_eq!(set_key("", "fleet", "memory_max", "max"), "[fleet]\nmemory_max = \"max\"\n");
    }
}
