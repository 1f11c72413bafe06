//! The config file setup-host keeps and the package ships, on this host as it is (with or
//! without systemd): the shipped file names no fleet root, so it works where systemd does
//! not run and a default setup-host leaves it as it is; an edit that would break the file is
//! refused; a delegated fleet inside fleetctl's scope is refused.

use crate::util::{Run, TestFleet, bin};
use std::{path::Path, process::Command};

/// The fleet root on a systemd host.
const IN_SCOPE: &str = "/system.slice/fleetctl-fleet.scope/fleet";

/// Whether systemd runs here (the built-in fleet root follows it).
fn systemd_here() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `fleetctl setup-host --root ROOT --only config ARGS`, with the fleet root `parent` (None:
/// the built-in one) and no config file of the host's own.
fn setup_config(f: &TestFleet, root: &Path, parent: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = f.cmd(&["setup-host", "--root"]);
    cmd.arg(root).args(["--only", "config"]).args(args).env("FLEET_CONFIG", f.tmp.path().join("host.toml"));
    std::fs::write(f.tmp.path().join("host.toml"), "").expect("empty host config");
    match parent {
        Some(parent) => cmd.env("FLEET_CGROUP_PARENT", parent),
        None => cmd.env_remove("FLEET_CGROUP_PARENT"),
    };
    Run::from(cmd.output().expect("run setup-host"))
}

fn seed_config(root: &Path, text: &str) -> std::path::PathBuf {
    let path = root.join("etc/fleet/fleet.toml");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("etc/fleet");
    std::fs::write(&path, text).expect("seed the config");
    path
}

#[test]
fn the_packaged_config_follows_the_host_and_a_default_setup_host_keeps_it() {
    let Some(f) = TestFleet::new("pkg-config") else { return };
    let shipped = fleet_core::host::packaging::packaged_config();
    // Every command on a host with the shipped file finds the host's own fleet root: /fleet
    // without systemd (the scope's would make every spawn exit 69), the scope's with it.
    let config = f.tmp.path().join("shipped.toml");
    std::fs::write(&config, &shipped).expect("write");
    let out = f
        .cmd(&["status", "--json"])
        .env("FLEET_CONFIG", &config)
        .env_remove("FLEET_CGROUP_PARENT")
        .output()
        .expect("status");
    let run = Run::from(out);
    run.code(0);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).expect("status --json parses");
    let fleet_root = status["host"]["fleet_root"].as_str().expect("host.fleet_root").to_string();
    // The path in the cgroup2 tree: the mount, then the fleet root.
    let in_scope = fleet_root.ends_with(IN_SCOPE);
    assert_eq!(in_scope, systemd_here(), "fleet root {fleet_root}");
    assert!(in_scope || fleet_root.ends_with("/fleet"), "fleet root {fleet_root}");

    // A default setup-host after the install changes nothing in the file.
    let root = f.tmp.path().join("root");
    let path = seed_config(&root, &shipped);
    let run = setup_config(&f, &root, None, &[]);
    run.code(0);
    assert!(run.stdout.contains("already in place"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), shipped);
    // No file yet: the one written names no fleet root either.
    std::fs::remove_file(&path).expect("rm");
    setup_config(&f, &root, None, &[]).code(0);
    let written = std::fs::read_to_string(&path).expect("read");
    assert!(!written.lines().any(|l| l.starts_with("cgroup_parent")), "{written}");
    // A fleet root of the operator's own is written.
    setup_config(&f, &root, Some("/fleets/a"), &[]).code(0);
    let written = std::fs::read_to_string(&path).expect("read");
    assert!(written.contains("\ncgroup_parent = \"/fleets/a\"\n"), "{written}");
    f.finish();
}

#[test]
fn an_edit_that_would_break_the_config_is_refused_and_the_file_kept() {
    let Some(f) = TestFleet::new("bad-edit") else { return };
    let root = f.tmp.path().join("root");
    // A dotted key: a [paths] table added below would be a duplicate, which no TOML reader
    // accepts (every later fleetctl command would refuse the file).
    let mine = "paths.cgroup_parent = \"/old\"\n";
    let path = seed_config(&root, mine);
    let run = setup_config(&f, &root, Some("/fleets/b"), &[]);
    run.code(1).one_error_line("cannot set paths.cgroup_parent in this file");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), mine, "the file was changed");
    // A header with a comment is the section: the key goes in it, the file stays TOML.
    let mine = "[paths] # mine\nstate_dir = \"/srv\"\n";
    seed_config(&root, mine);
    setup_config(&f, &root, Some("/fleets/b"), &[]).code(0);
    let written = std::fs::read_to_string(&path).expect("read");
    let table: toml::Table = toml::from_str(&written).expect("still TOML");
    assert_eq!(table["paths"]["cgroup_parent"].as_str(), Some("/fleets/b"), "{written}");
    assert_eq!(table["paths"]["state_dir"].as_str(), Some("/srv"), "{written}");
    f.finish();
}

#[test]
fn a_delegated_fleet_in_the_scope_is_refused() {
    let Some(f) = TestFleet::new("deleg-scope") else { return };
    let root = f.tmp.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    let mut cmd = Command::new(bin());
    cmd.args(["setup-host", "--delegate", "nobody", "--root"]).arg(&root).env("FLEET_CGROUP_PARENT", IN_SCOPE);
    let run = Run::from(cmd.output().expect("setup-host"));
    run.code(2).one_error_line("--cgroup-parent");
    assert!(run.stderr.contains("fleetctl-fleet.scope"), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(&root).expect("ls").count(), 0, "a refused run made files");
    f.finish();
}
