//! `setup-host` applied for real to a temp root and a test cgroup subtree, checked, run again,
//! and reverted byte for byte; `doctor` on the result.

use crate::util::{TestFleet, bin};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

/// Kernel parameters are host-wide: they are applied for real only on a throwaway kernel
/// (the VM tier sets this), never on a shared machine.
fn throwaway_kernel() -> bool {
    std::env::var_os("FLEETCTL_THROWAWAY_KERNEL").is_some()
}

/// `fleetctl SUBCOMMAND --root ROOT` with this test's cgroup subtree and every other path at
/// its default, so `--root` alone moves them.
fn under_root(f: &TestFleet, subcommand: &str, root: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg(subcommand).arg("--root").arg(root).env("FLEET_CGROUP_PARENT", &f.name);
    for var in [
        "FLEET_STATE_DIR",
        "FLEET_LOG_DIR",
        "FLEET_WORKSPACE_ROOT",
        "FLEET_SCRATCH_ROOT",
        "FLEET_LOCK_DIR",
        "FLEET_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// setup-host with this test's cgroup subtree and `root` as its file prefix.
fn setup(f: &TestFleet, root: &Path, args: &[&str]) -> crate::util::Run {
    let mut cmd = under_root(f, "setup-host", root);
    cmd.args(args);
    if !throwaway_kernel() {
        cmd.args(["--skip", "sysctl"]);
    }
    crate::util::Run::from(cmd.output().expect("run setup-host"))
}

/// Every file under `root` with its bytes, and every directory.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                stack.push(p.clone());
                out.insert(p, None);
            } else {
                out.insert(p.clone(), Some(std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

fn seed_etc(root: &Path) {
    std::fs::create_dir_all(root.join("etc/sysctl.d")).expect("etc");
    // No trailing newline, tabs, a comment: restored byte for byte or the test fails.
    std::fs::write(root.join("etc/fstab"), "# /etc/fstab\nUUID=1234\t/\text4\terrors=remount-ro 0 1").expect("fstab");
    std::fs::write(root.join("etc/sysctl.d/10-other.conf"), "net.core.somaxconn = 4096\n").expect("other");
}

#[test]
fn setup_host_applies_then_changes_nothing_then_reverts_byte_for_byte() {
    let Some(f) = TestFleet::new("setup-host") else { return };
    let root = f.tmp.path().join("root");
    seed_etc(&root);
    // The operator's own config: its keys and comments outlive setup-host, and come back
    // byte for byte on --revert.
    let mine = "# mine\n[agent]\nkill_grace = \"3s\"\n\n[paths]\ncgroup_parent = \"/elsewhere\" # old\n";
    std::fs::create_dir_all(root.join("etc/fleet")).expect("etc/fleet");
    std::fs::write(root.join("etc/fleet/fleet.toml"), mine).expect("config");
    let before = snapshot(&root);
    let opts = ["--slots", "12", "--scratch-size", "16M", "--fleet-memory-max", "256M"];
    let max_map_count = || std::fs::read_to_string("/proc/sys/vm/max_map_count").expect("sysctl").trim().to_string();
    let map_count_before = max_map_count();

    let check = setup(&f, &root, &[&["--check"][..], &opts].concat());
    check.code(1);
    assert!(check.stdout.contains("missing"), "{}", check.stdout);
    let dry = setup(&f, &root, &[&["--dry-run"][..], &opts].concat());
    dry.code(0);
    // The config step shows its diff.
    let shown = format!("-cgroup_parent = \"/elsewhere\" # old; +cgroup_parent = \"{}\"", f.name);
    assert!(dry.stdout.contains(&shown), "{}", dry.stdout);
    assert_eq!(snapshot(&root), before, "--dry-run changed files");
    assert!(!f.fleet.root.exists(), "--dry-run made the fleet root");

    let first = setup(&f, &root, &opts);
    first.code(0);
    assert!(first.stdout.contains("done"), "{}", first.stdout);
    // What it made is real: the cgroup subtree with the budget, the pool, a mounted tmpfs.
    assert!(f.fleet.agents().exists() && f.fleet.supervisors().exists());
    let budget_file = match &f.fleet.root.memory_v1 {
        Some(dir) => dir.join("memory.limit_in_bytes"),
        None => f.fleet.root.unified.join("memory.max"),
    };
    assert_eq!(std::fs::read_to_string(&budget_file).expect("budget").trim(), (256u64 << 20).to_string());
    assert!(
        root.join("var/lib/fleet/workspaces/ws-001").is_dir() && root.join("var/lib/fleet/workspaces/ws-012").is_dir()
    );
    let scratch = root.join("var/lib/fleet/scratch");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(mounts.lines().any(|l| l.contains(&format!(" {} ", scratch.display())) && l.contains(" - tmpfs ")));
    // Where the fleet lives and its budget, for every later command, with or without sudo.
    let config = std::fs::read_to_string(root.join("etc/fleet/fleet.toml")).expect("config");
    let table: toml::Table = toml::from_str(&config).expect("the config is TOML");
    assert_eq!(table["paths"]["cgroup_parent"].as_str(), Some(f.name.as_str()), "{config}");
    assert_eq!(table["fleet"]["memory_max"].as_str(), Some("256M"), "{config}");
    assert_eq!(table["agent"]["kill_grace"].as_str(), Some("3s"), "{config}");
    assert!(config.starts_with("# mine\n"), "{config}");
    let fstab = std::fs::read_to_string(root.join("etc/fstab")).expect("fstab");
    assert!(fstab.starts_with("# /etc/fstab\nUUID=1234\t/\text4\terrors=remount-ro 0 1\nfleet-scratch "), "{fstab}");

    if throwaway_kernel() {
        // Applied for real on the VM's kernel, never lowered.
        assert!(max_map_count().parse::<u64>().expect("number") >= 1_048_576, "sysctl not applied");
    }
    let second = setup(&f, &root, &opts);
    second.code(0);
    assert!(!second.stdout.contains(" done "), "the second run changed something:\n{}", second.stdout);
    assert!(second.stdout.contains("0 done"), "{}", second.stdout);
    setup(&f, &root, &[&["--check"][..], &opts].concat()).code(0);

    // doctor reads the same host truthfully: the layout as detected, the pool it made.
    let doctor = doctor(&f, &root);
    let layout = if f.fleet.root.memory_v1.is_some() { "hybrid" } else { "cgroup v2" };
    assert!(doctor.stdout.lines().next().unwrap_or("").contains(layout), "{}", doctor.stdout);
    assert!(doctor.stdout.contains("12 slots"), "{}", doctor.stdout);
    assert!(doctor.stdout.contains("ok    scratch"), "{}", doctor.stdout);
    // Whether a spawn may wait for a grace period, as this host's layout and mounts say: on
    // pure cgroup v2 never (born in its cgroup); on a hybrid host a note, never a failure,
    // unless a hierarchy has favordynmods.
    let favoured = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split_once(" - ").is_some_and(|(_, fs)| fs.starts_with("cgroup") && fs.contains("favordynmods")));
    let line = match (layout, favoured) {
        ("cgroup v2", _) => "ok    spawn       agents are born in their cgroups",
        (_, true) => "ok    spawn       cgroups mounted with favordynmods",
        (_, false) => "note  spawn       cgroups mounted without favordynmods: on this hybrid host",
    };
    assert!(doctor.stdout.contains(line), "expected {line:?}:\n{}", doctor.stdout);

    let revert = setup(&f, &root, &["--revert"]);
    revert.code(0);
    assert_eq!(snapshot(&root), before, "--revert did not restore every file byte for byte");
    assert_eq!(max_map_count(), map_count_before, "--revert did not restore the kernel parameter");
    assert!(!f.fleet.root.exists(), "--revert left the fleet root");
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").contains(&scratch.display().to_string())
    );
    f.finish();
}

fn doctor(f: &TestFleet, root: &Path) -> crate::util::Run {
    crate::util::Run::from(under_root(f, "doctor", root).output().expect("run doctor"))
}

#[test]
fn setup_host_refuses_bad_input_and_leaves_nothing_half_made() {
    let Some(f) = TestFleet::new("setup-bad") else { return };
    let root = f.tmp.path().join("root");
    seed_etc(&root);
    let before = snapshot(&root);

    setup(&f, &root, &["--only", "cgroups,frobnicate"]).code(2).one_error_line("unknown step 'frobnicate'");
    setup(&f, &root, &["--delegate", "no-such-user-here"]).code(2).one_error_line("no such user");
    // Not root, and the fleet not delegated: refused before anything is touched.
    if have_setpriv() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .arg("setup-host")
            .arg("--root")
            .arg(&root);
        cmd.env("FLEET_CGROUP_PARENT", &f.name);
        let run = crate::util::Run::from(cmd.output().expect("setpriv"));
        run.code(77).one_error_line("run it as root");
    } else {
        crate::util::skip_part("setup-bad", &format!("the non-root case: {NO_SETPRIV}"));
    }

    // A read-only workspace root: a clear error, and the cgroups made before it are undone.
    let ws = root.join("var/lib/fleet/workspaces");
    std::fs::create_dir_all(&ws).expect("ws");
    let before_ro = snapshot(&root);
    nix::mount::mount(Some("ro-test"), &ws, Some("tmpfs"), nix::mount::MsFlags::MS_RDONLY, Some("size=1m"))
        .expect("mount read-only tmpfs");
    let run = setup(&f, &root, &["--slots", "3", "--scratch-size", "8M"]);
    let _ = nix::mount::umount(&ws);
    run.code(1).one_error_line("is not writable");
    assert_eq!(snapshot(&root), before_ro, "a refused run changed files");
    assert!(!f.fleet.root.exists(), "a refused run left cgroups");
    std::fs::remove_dir_all(root.join("var")).expect("cleanup");
    assert_eq!(snapshot(&root), before);
    f.finish();
}

/// `--swapoff` with a real swap file: refused by the kernel without CAP_SYS_ADMIN (a clear
/// error, fstab untouched, swap still on), then done, then reverted.
#[test]
fn swapoff_is_opt_in_refusable_and_revertible() {
    let Some(f) = TestFleet::new("setup-swap") else { return };
    if !have_setpriv() {
        crate::util::skip("setup-swap", NO_SETPRIV);
        return f.finish();
    }
    let root = f.tmp.path().join("root");
    seed_etc(&root);
    let swapfile = root.join("swapfile");
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dd if=/dev/zero of={0} bs=1M count=16 status=none && chmod 600 {0} && mkswap {0} >/dev/null && swapon {0}",
            swapfile.display()
        ))
        .status()
        .expect("sh");
    if !made.success() {
        crate::util::skip("setup-swap", "this filesystem cannot hold an active swap file");
        return f.finish();
    }
    let _guard = SwapGuard(swapfile.clone());
    let fstab = format!("# /etc/fstab\n{} none swap sw 0 0\n", swapfile.display());
    std::fs::write(root.join("etc/fstab"), &fstab).expect("fstab");
    let active = || std::fs::read_to_string("/proc/swaps").expect("swaps").contains(&swapfile.display().to_string());

    // Without --swapoff, swap is left alone.
    setup(&f, &root, &["--only", "swap"]).code(0);
    assert!(active());
    // Without CAP_SYS_ADMIN the kernel refuses swapoff.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]).arg(bin());
    cmd.args(["setup-host", "--only", "swap", "--swapoff", "--root"]).arg(&root).env("FLEET_CGROUP_PARENT", &f.name);
    let run = crate::util::Run::from(cmd.output().expect("setpriv"));
    run.code(1).one_error_line("the kernel refused");
    assert!(active(), "swap went off after a refusal");
    assert_eq!(std::fs::read_to_string(root.join("etc/fstab")).expect("fstab"), fstab, "fstab changed after a refusal");

    setup(&f, &root, &["--only", "swap", "--swapoff"]).code(0);
    assert!(!active(), "swap still on");
    let edited = std::fs::read_to_string(root.join("etc/fstab")).expect("fstab");
    assert!(edited.contains(&format!("# fleetctl: {} none swap", swapfile.display())), "{edited}");
    setup(&f, &root, &["--only", "swap", "--swapoff", "--check"]).code(0);
    setup(&f, &root, &["--revert"]).code(0);
    assert!(active(), "--revert did not turn swap back on");
    assert_eq!(std::fs::read_to_string(root.join("etc/fstab")).expect("fstab"), fstab);
    drop(_guard);
    f.finish();
}

/// util-linux's setpriv, to run fleetctl without root or without a capability. The VM
/// tier's busybox has none.
fn have_setpriv() -> bool {
    Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Why a case that needs [`have_setpriv`] did not run.
const NO_SETPRIV: &str = "setpriv (util-linux) is not installed: it runs fleetctl without root or a capability";

/// Turns the test's swap file off whatever happens.
struct SwapGuard(PathBuf);

impl Drop for SwapGuard {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.0).status();
    }
}

/// `--delegate nobody`, then `nobody` runs the fleet: spawn, status and kill without root.
/// The kernel lets a user move a process only within a subtree it owns (the common-ancestor
/// rule), so nobody's shell starts inside the fleet's `supervisors/`, as a delegated user's
/// session would live inside its delegated unit.
#[test]
fn a_delegated_user_runs_the_fleet_without_root() {
    use std::os::unix::fs::PermissionsExt;
    let Some(f) = TestFleet::new("delegate") else { return };
    if !have_setpriv() {
        crate::util::skip("delegate", NO_SETPRIV);
        return f.finish();
    }
    // An absolute fleet root that is still under this test's own cgroup in every hierarchy.
    let own = fleet_core::cgroup::OwnCgroups::read(Path::new("/proc")).expect("own cgroups");
    let base = own.memory_v1.clone().unwrap_or(own.unified.clone());
    let parent = format!("{}/{}", base.trim_end_matches('/'), f.name);
    let root = f.tmp.path().join("root");
    seed_etc(&root);
    for dir in [f.tmp.path(), root.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let with_parent = |cmd: &mut Command| {
        cmd.env("FLEET_CGROUP_PARENT", &parent);
    };
    let mut setup_cmd = under_root(&f, "setup-host", &root);
    with_parent(&mut setup_cmd);
    setup_cmd.args(["--slots", "1", "--scratch-size", "8M", "--delegate", "nobody", "--skip", "sysctl,swap"]);
    let run = crate::util::Run::from(setup_cmd.output().expect("setup-host"));
    run.code(0);

    let mounts = fleet_core::cgroup::Mounts::detect(Path::new("/proc")).expect("mounts");
    let fleet = fleet_core::cgroup::Fleet::resolve(&mounts, &own, &parent).expect("fleet");
    let _cleanup = Cleanup { fleet: fleet.clone(), scratch: root.join("var/lib/fleet/scratch") };
    let as_nobody = |args: &str| {
        // Root places the shell in supervisors/ in every hierarchy, then becomes nobody.
        let procs: Vec<String> = fleet.supervisors().procs_files().iter().map(|p| p.display().to_string()).collect();
        let script = format!(
            "for f in {}; do echo $$ > $f || exit 99; done; exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$0\" {args}",
            procs.join(" ")
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg(bin()).env("FLEET_CGROUP_PARENT", &parent);
        for (var, dir) in [
            ("FLEET_STATE_DIR", "run/fleet"),
            ("FLEET_LOG_DIR", "var/log/fleet"),
            ("FLEET_WORKSPACE_ROOT", "var/lib/fleet/workspaces"),
            ("FLEET_SCRATCH_ROOT", "var/lib/fleet/scratch"),
            ("FLEET_LOCK_DIR", "run/lock/fleet"),
        ] {
            cmd.env(var, root.join(dir));
        }
        cmd.env("FLEET_CONFIG", "/dev/null");
        crate::util::Run::from(cmd.output().expect("run as nobody"))
    };
    let spawned = as_nobody("spawn d1 ws-001 -- sleep 600");
    spawned.code(0);
    let status = as_nobody("status --json");
    status.code(0);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    let a = &v["agents"][0];
    assert_eq!(a["state"], "running", "{v:#}");
    let pid = a["pid"].as_i64().expect("pid");
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(uid.lines().any(|l| l.starts_with("Uid:") && l.contains("65534")), "the agent runs as nobody");
    assert!(fleet.agent(&"d1".parse().expect("id")).procs().expect("procs").contains(&(pid as i32)));
    as_nobody("kill d1").code(0);
    assert!(!fleet.agent(&"d1".parse().expect("id")).exists(), "nobody's kill left the cgroup");

    let mut revert = under_root(&f, "setup-host", &root);
    with_parent(&mut revert);
    // The fleet was used: its records and logs are someone's work, so --revert keeps those
    // directories (exit 3, naming them) and undoes everything else.
    let reverted = crate::util::Run::from(revert.arg("--revert").output().expect("revert"));
    reverted.code(3);
    assert!(reverted.stderr.lines().all(|l| l.contains("it is not empty")), "{}", reverted.stderr);
    assert!(!fleet.root.exists(), "--revert left the delegated fleet root");
    // What `finish` checks for a test's own fleet, for the delegated one: its root is gone (so
    // no process or cgroup is left), no lock or lease is held, no scratch dir is left.
    crate::util::assert_no_lock_held(&root.join("run/fleet"), Some(&root.join("run/lock/fleet")));
    let scratch: Vec<_> =
        std::fs::read_dir(root.join("var/lib/fleet/scratch")).into_iter().flatten().flatten().collect();
    assert!(scratch.is_empty(), "scratch dirs left behind: {scratch:?}");
    drop(_cleanup);
    f.finish();
}

/// Whatever a failed delegation test leaves: its fleet subtree (outside TestFleet's own) and
/// the scratch tmpfs.
struct Cleanup {
    fleet: fleet_core::cgroup::Fleet,
    scratch: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.scratch, nix::mount::MntFlags::MNT_DETACH);
        if self.fleet.root.exists() {
            crate::util::remove_fleet(&self.fleet);
        }
    }
}
