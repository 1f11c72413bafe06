//! Unit tests of settings resolution: precedence, defaults, and one line per bad key.

use super::*;
use crate::exit::exit_for;
use std::path::Path;

fn file(text: &str) -> ConfigFile {
    ConfigFile::parse(Path::new("/etc/fleet/fleet.toml"), text).expect("the file parses")
}

fn resolve(global: &GlobalArgs, text: &str) -> Result<Settings> {
    Settings::from_sources(global, &file(text))
}

/// The error's one line and its exit code.
fn refused(text: &str) -> (String, i32) {
    let err = resolve(&GlobalArgs::default(), text).expect_err("refused");
    (format!("{err:#}"), exit_for(&err).code())
}

#[test]
fn nothing_given_is_the_documented_defaults() {
    let s = resolve(&GlobalArgs::default(), "").expect("resolves");
    assert_eq!(s.paths.cgroup_parent, default_cgroup_parent());
    assert_eq!(s.fleet, FleetSettings { memory_max: None });
    assert_eq!(s.paths.state_dir, PathBuf::from("/run/fleet"));
    assert_eq!(s.paths.lock_dir, PathBuf::from("/run/lock/fleet"));
    assert_eq!(s.thresholds, Thresholds { spawn: 85, kill: 95, max_agents: None });
    assert_eq!(s.agent.memory_reserve, None);
    assert_eq!(s.agent.limits, Limits::default());
    assert!(!s.agent.memory_max_configured);
    assert_eq!(s.agent.soft_timeout, Some(Duration::from_secs(15 * 60)));
    assert_eq!(s.agent.hard_timeout, Some(Duration::from_secs(30 * 60)));
    assert_eq!(s.agent.kill_grace, Duration::from_secs(10));
    assert_eq!(s.agent.log_max_size, 64 << 20);
    assert_eq!(s.agent.port_range, (20000, 29999));
    assert_eq!(s.agent.start_reserve, 32 << 20);
}

#[test]
fn the_file_is_parsed_once_into_types() {
    let s = resolve(
        &GlobalArgs::default(),
        r#"
        [paths]
        state_dir = "/srv/state"
        [thresholds]
        spawn = 70
        kill = 90
        max_agents = 300
        [agent]
        memory_reserve = "512M"
        memory_max = "2G"
        swap_max = "max"
        pids_max = "64"
        soft_timeout = "off"
        hard_timeout = "1h"
        kill_grace = "3s"
        log_max_size = "1M"
        port_range = "30000-30099"
        start_reserve = "0"
        "#,
    )
    .expect("resolves");
    assert_eq!(s.paths.state_dir, PathBuf::from("/srv/state"));
    assert_eq!(s.thresholds, Thresholds { spawn: 70, kill: 90, max_agents: Some(300) });
    assert_eq!(s.agent.memory_reserve, Some(512 << 20));
    assert_eq!(s.agent.limits.memory_max, Limit::Bytes(2 << 30));
    assert_eq!(s.agent.limits.memory_high, Limit::Bytes(1536 << 20), "the high follows a max given alone");
    assert_eq!(s.agent.limits.swap_max, Limit::Max);
    assert_eq!(s.agent.limits.pids_max, Limit::Bytes(64));
    assert!(s.agent.memory_max_configured);
    assert_eq!(s.agent.soft_timeout, None);
    assert_eq!(s.agent.hard_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(s.agent.kill_grace, Duration::from_secs(3));
    assert_eq!(s.agent.log_max_size, 1 << 20);
    assert_eq!(s.agent.port_range, (30000, 30099));
    assert_eq!(s.agent.start_reserve, 0);
}

#[test]
fn flags_and_environment_win_over_the_file() {
    let global = GlobalArgs {
        cgroup_parent: Some("mine".into()),
        state_dir: Some("/flag/state".into()),
        ..GlobalArgs::default()
    };
    let s = resolve(
        &global,
        "[paths]\ncgroup_parent = \"/theirs\"\nstate_dir = \"/file/state\"\nlog_dir = \"/file/log\"\n",
    )
    .expect("resolves");
    assert_eq!(s.paths.cgroup_parent, "mine");
    assert_eq!(s.paths.state_dir, PathBuf::from("/flag/state"));
    assert_eq!(s.paths.log_dir, PathBuf::from("/file/log"));
    // A spawn's own limits win over the file's, one by one.
    let s = resolve(&GlobalArgs::default(), "[agent]\nmemory_max = \"2G\"\npids_max = \"64\"\n").expect("resolves");
    let flags = LimitArgs { memory_max: Some(Limit::Bytes(1 << 30)), ..LimitArgs::default() };
    let limits = s.agent.limits_with(&flags);
    assert_eq!(limits.memory_max, Limit::Bytes(1 << 30));
    assert_eq!(limits.pids_max, Limit::Bytes(64));
    assert_eq!(limits.memory_high, Limit::Bytes(768 << 20), "the high follows the flag's max, not the file's");
}

#[test]
fn a_max_given_alone_brings_its_high_and_only_a_given_high_above_a_given_max_is_refused() {
    let high = |config: &str, flags: LimitArgs| {
        let s = resolve(&GlobalArgs::default(), config).expect("resolves");
        let limits = s.agent.limits_with(&flags);
        limits.validate().map(|()| (limits.memory_max, limits.memory_high))
    };
    let mib = |n: u64| Limit::Bytes(n << 20);
    let max = |m: u64| LimitArgs { memory_max: Some(mib(m)), ..LimitArgs::default() };
    let only_high = |h: u64| LimitArgs { memory_high: Some(mib(h)), ..LimitArgs::default() };
    assert_eq!(high("", max(300)), Ok((mib(300), mib(225))), "--memory-max 300M alone");
    assert_eq!(high("[agent]\nmemory_max = \"1G\"\n", LimitArgs::default()), Ok((mib(1024), mib(768))));
    assert_eq!(high("[agent]\nmemory_max = \"1G\"\nmemory_high = \"900M\"\n", max(512)), Ok((mib(512), mib(384))));
    assert_eq!(high("[agent]\nmemory_max = \"2G\"\n", only_high(512)), Ok((mib(2048), mib(512))));
    assert!(high("[agent]\nmemory_max = \"1G\"\n", only_high(2048)).unwrap_err().contains("must not exceed"));
    assert!(high("[agent]\nmemory_max = \"1G\"\nmemory_high = \"2G\"\n", LimitArgs::default()).is_err());
    assert_eq!(high("", only_high(6144)), Ok((mib(8192), mib(6144))), "above the default max, the max follows");
}

#[test]
fn every_bad_value_is_one_line_naming_its_key() {
    let cases = [
        (
            "[agent]\nlog_max_size = \"abc\"\n",
            r#"/etc/fleet/fleet.toml: agent.log_max_size = "abc": not a log size; use a number of at least 4K with K, M or G (e.g. "64M")"#,
        ),
        ("[agent]\nlog_max_size = \"max\"\n", "agent.log_max_size = \"max\": not a log size"),
        ("[agent]\nlog_max_size = \"0\"\n", "agent.log_max_size = \"0\": not a log size"),
        ("[agent]\nmemory_max = \"4X\"\n", "agent.memory_max = \"4X\": not a size"),
        ("[agent]\nmemory_high = 3\n", "agent.memory_high = 3: not a size"),
        ("[agent]\npids_max = \"0\"\n", "agent.pids_max = \"0\": not a task count"),
        ("[agent]\nsoft_timeout = \"0\"\n", "agent.soft_timeout = \"0\": not a timeout"),
        ("[agent]\nkill_grace = \"soon\"\n", "agent.kill_grace = \"soon\": not a duration"),
        ("[agent]\nport_range = \"9-1\"\n", "agent.port_range = \"9-1\": not a port range"),
        ("[agent]\nstart_reserve = \"max\"\n", "agent.start_reserve = \"max\": not a size"),
        ("[thresholds]\nspawn = 150\n", "thresholds.spawn = 150: use a percentage from 1 to 100"),
        ("[thresholds]\nkill = 0\n", "thresholds.kill = 0: use a percentage"),
        ("[thresholds]\nspawn = \"85\"\n", "thresholds.spawn = \"85\": use a percentage"),
        ("[paths]\nstate_dir = 1\n", "paths.state_dir = 1: not a path"),
        ("[thresholds]\nmax_agents = 0\n", "thresholds.max_agents = 0: use a whole number of agents of at least 1"),
        ("[agent]\nmemory_reserve = \"lots\"\n", "agent.memory_reserve = \"lots\": not a size"),
    ];
    for (text, says) in cases {
        let (line, code) = refused(text);
        assert!(line.contains(says), "{text:?}: {line}");
        assert!(!line.contains('\n'), "{text:?}: {line}");
        assert_eq!(code, 1, "{text:?}: a bad config file exits 1");
    }
}

#[test]
fn spawn_must_be_below_kill() {
    let (line, code) = refused("[thresholds]\nspawn = 96\nkill = 95\n");
    assert_eq!(
        line,
        "/etc/fleet/fleet.toml: thresholds.spawn = 96 is not below thresholds.kill = 95: spawning must stop before killing starts; lower the one or raise the other"
    );
    assert_eq!(code, 1);
    let (line, _) = refused("[thresholds]\nspawn = 95\n");
    assert!(line.contains("thresholds.spawn = 95 is not below thresholds.kill = 95 (the default)"), "{line}");
    let (line, _) = refused("[thresholds]\nkill = 80\n");
    assert!(line.contains("thresholds.spawn = 85 (the default) is not below thresholds.kill = 80"), "{line}");
    assert!(resolve(&GlobalArgs::default(), "[thresholds]\nspawn = 94\n").is_ok());
}

#[test]
fn a_bad_cgroup_parent_is_a_usage_error_from_any_source() {
    let (line, code) = refused("[paths]\ncgroup_parent = \"../x\"\n");
    assert!(line.starts_with("/etc/fleet/fleet.toml: paths.cgroup_parent = \"../x\": invalid cgroup parent"), "{line}");
    assert_eq!(code, 2);
    let global = GlobalArgs { cgroup_parent: Some("a/../b".into()), ..GlobalArgs::default() };
    let err = resolve(&global, "").expect_err("refused");
    assert_eq!(exit_for(&err).code(), 2);
    // The file's value is checked even when the flag overrides it.
    let global = GlobalArgs { cgroup_parent: Some("ok".into()), ..GlobalArgs::default() };
    assert!(resolve(&global, "[paths]\ncgroup_parent = \"../x\"\n").is_err());
}

#[test]
fn the_default_fleet_root_is_in_the_scope_where_systemd_runs() {
    let run = tempfile::tempdir().expect("tempdir");
    let mounts = tempfile::tempdir().expect("tempdir");
    assert_eq!(default_cgroup_parent_for(run.path(), mounts.path()), "/fleet");
    std::fs::create_dir_all(run.path().join("systemd/system")).expect("mkdir");
    assert_eq!(default_cgroup_parent_for(run.path(), mounts.path()), "/system.slice/fleetctl-fleet.scope/fleet");
    assert_eq!(built_in_cgroup_parent(true), "/system.slice/fleetctl-fleet.scope/fleet");
    assert_eq!(built_in_cgroup_parent(false), "/fleet");
}

#[test]
fn a_systemd_host_with_a_fleet_at_the_old_default_keeps_it() {
    let run = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(run.path().join("systemd/system")).expect("mkdir");
    // Pure cgroup v2: the tree at the mount; hybrid: cgroup2 under unified/.
    for fleet in ["fleet", "unified/fleet"] {
        let mounts = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(mounts.path().join(fleet)).expect("mkdir");
        assert_eq!(default_cgroup_parent_for(run.path(), mounts.path()), "/fleet", "{fleet}");
    }
    // Without systemd it is /fleet anyway.
    let mounts = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(mounts.path().join("fleet")).expect("mkdir");
    assert_eq!(default_cgroup_parent_for(tempfile::tempdir().expect("tempdir").path(), mounts.path()), "/fleet");
}

#[test]
fn the_fleet_budget_is_a_size_or_max() {
    let s = resolve(&GlobalArgs::default(), "[fleet]\nmemory_max = \"48G\"\n").expect("resolves");
    assert_eq!(s.fleet.memory_max, Some(48 << 30));
    let s = resolve(&GlobalArgs::default(), "[fleet]\nmemory_max = \"max\"\n").expect("resolves");
    assert_eq!(s.fleet.memory_max, None);
    let (line, code) = refused("[fleet]\nmemory_max = \"lots\"\n");
    assert_eq!(code, 1);
    assert!(line.starts_with("/etc/fleet/fleet.toml: fleet.memory_max = \"lots\": not a size;"), "{line}");
    assert!(!line.contains('\n'));
}
