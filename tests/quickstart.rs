//! The command blocks of README.md and docs/ run as written, in order, each file's on a fresh
//! sandboxed host: what a new operator copies must work.
//!
//! The sandbox (docs/decisions.md): every `sh` block's lines run one by one through `sh`, with
//! a `fleetctl` and a `sudo` first on `PATH`. `sudo` runs its command (the tests run as root)
//! with `SUDO_UID`/`SUDO_GID` naming an operator (`nobody`'s number), as a real sudo does;
//! `fleetctl` is the binary under test with the environment a test fleet sets, its paths the
//! defaults under a temp root, and `setup-host` and `doctor` get `--root` of that temp root.
//! `setup-host` skips the steps that change the whole machine (kernel parameters, swap, the
//! scratch tmpfs mount, the systemd unit), which the setup-host tests cover on a throwaway
//! kernel; `doctor` may then fail only those checks. A line whose comment ends in
//! "(Ctrl-C ends it)" runs until it has printed, then
//! gets the operator's Ctrl-C. A block fenced `sh no-run` is the developer's own `cargo`
//! commands (building and testing fleetctl inside its own test), and holds nothing else. A
//! block fenced `sh systemd` is the packaged install on a systemd host (`dpkg -i`, setup-host
//! enabling the service): it changes the machine, not a sandbox, so it runs in the systemd VM
//! tier only and this test says SKIPPED for it; here its lines are checked to be only that.

use crate::util::{TestFleet, bin};
use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
};

/// Every doc with command blocks, built into the test binary (the VM tier copies only
/// binaries). A doc that gains a block and is not listed fails the check below.
const DOCS: [(&str, &str); 3] = [
    ("README.md", include_str!("../README.md")),
    ("docs/operations.md", include_str!("../docs/operations.md")),
    ("docs/setup-host.md", include_str!("../docs/setup-host.md")),
];

/// The steps of setup-host that change the whole machine, not the sandbox.
const HOST_WIDE_STEPS: &str = "sysctl,swap,scratch,watcher";

/// What the marker of a line that runs until interrupted says.
const UNTIL_CTRL_C: &str = "(Ctrl-C ends it)";

/// A fenced block: its info string and its lines.
struct Block {
    info: String,
    lines: Vec<String>,
}

/// The fenced blocks of a markdown text whose info string starts with `sh`.
fn sh_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for line in text.lines() {
        match (line.strip_prefix("```"), current.take()) {
            (Some(_), Some(block)) => blocks.push(block),
            (Some(info), None) if info == "sh" || info.starts_with("sh ") => {
                current = Some(Block { info: info.to_string(), lines: Vec::new() })
            }
            (Some(_), None) => current = None,
            (None, Some(mut block)) => {
                block.lines.push(line.to_string());
                current = Some(block);
            }
            (None, None) => {}
        }
    }
    // Lines go on after a trailing backslash; blank lines and whole-line comments are not commands.
    blocks
        .into_iter()
        .map(|b| {
            let mut lines: Vec<String> = Vec::new();
            let mut pending = String::new();
            for line in b.lines {
                pending.push_str(line.trim_end());
                if let Some(cut) = pending.strip_suffix('\\') {
                    pending = format!("{cut} ");
                    continue;
                }
                let command = std::mem::take(&mut pending);
                if !command.trim().is_empty() && !command.trim_start().starts_with('#') {
                    lines.push(command);
                }
            }
            Block { info: b.info, lines }
        })
        .collect()
}

#[test]
fn the_docs_list_every_file_with_command_blocks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(entries) = std::fs::read_dir(root.join("docs")) else { return };
    let listed: Vec<&str> = DOCS.iter().map(|(name, _)| *name).collect();
    for e in entries.flatten() {
        let name = format!("docs/{}", e.file_name().to_string_lossy());
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if !sh_blocks(&text).is_empty() {
            assert!(listed.contains(&name.as_str()), "{name} has sh blocks: add it to DOCS in tests/quickstart.rs");
        }
    }
    let readme = sh_blocks(DOCS[0].1);
    assert!(readme.iter().any(|b| b.info == "sh" && b.lines.iter().any(|l| l.contains("fleetctl spawn"))));
    for (name, text) in DOCS {
        for block in sh_blocks(text).iter().filter(|b| b.info == "sh systemd") {
            let packaged =
                ["sudo dpkg -i ", "sudo fleetctl ", "fleetctl ", "systemctl ", "sudo systemctl ", "journalctl "];
            assert!(
                block.lines.iter().all(|l| packaged.iter().any(|p| l.starts_with(p))),
                "{name}: only the packaged install in sh systemd: {:?}",
                block.lines
            );
        }
        for block in sh_blocks(text).iter().filter(|b| b.info != "sh" && b.info != "sh systemd") {
            assert_eq!(block.info, "sh no-run", "{name}: a block fenced ```{}", block.info);
            assert!(
                block.lines.iter().all(|l| l.starts_with("cargo ")),
                "{name}: only cargo in no-run: {:?}",
                block.lines
            );
        }
    }
}

/// Whether setpriv (util-linux) can run a line as another user here; where it cannot (the VM
/// tier's busybox guest), lines run as root, and the test says so.
fn setpriv_here() -> bool {
    static HERE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HERE.get_or_init(|| {
        let here = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
        if !here {
            crate::util::skip::skip_part("quickstart", "setpriv is not installed: lines without sudo ran as root");
        }
        here
    })
}

/// A temp host root, its fleet, and the `fleetctl` and `sudo` the blocks find first.
struct Sandbox {
    fleet: TestFleet,
    path: String,
}

impl Sandbox {
    fn new(test: &str) -> Option<Sandbox> {
        let mut fleet = TestFleet::new(test)?;
        let host = fleet.tmp.path().join("host");
        let shims = fleet.tmp.path().join("bin");
        std::fs::create_dir_all(&host).expect("host root");
        std::fs::create_dir_all(&shims).expect("shims");
        // The fleet's own checks at the end look at the sandbox's state dir.
        fleet.state = host.join("run/fleet");
        let config = fleet.tmp.path().join("fleet.toml");
        std::fs::write(&config, "").expect("config");
        let env = [
            ("FLEET_CGROUP_PARENT", fleet.name.clone()),
            ("FLEET_STATE_DIR", format!("{}/run/fleet", host.display())),
            ("FLEET_LOG_DIR", format!("{}/var/log/fleet", host.display())),
            ("FLEET_WORKSPACE_ROOT", format!("{}/var/lib/fleet/workspaces", host.display())),
            ("FLEET_SCRATCH_ROOT", format!("{}/var/lib/fleet/scratch", host.display())),
            ("FLEET_LOCK_DIR", format!("{}/run/lock/fleet", host.display())),
            ("FLEET_CONFIG", config.display().to_string()),
        ];
        let exports: String = env.iter().map(|(k, v)| format!("export {k}='{v}'\n")).collect();
        // setup-host and doctor prefix their default paths with --root, which are then the
        // same paths the other commands are given.
        let unset: String = env.iter().skip(1).map(|(k, _)| format!("-u {k} ")).collect();
        let fleetctl = format!(
            "#!/bin/sh\n{exports}bin='{bin}'\ncase \"$1\" in\n\
             setup-host) shift; exec env {unset}\"$bin\" setup-host --root '{host}' --skip {HOST_WIDE_STEPS} \"$@\";;\n\
             doctor) shift; exec env {unset}\"$bin\" doctor --root '{host}' \"$@\";;\n\
             *) exec \"$bin\" \"$@\";;\nesac\n",
            bin = bin().display(),
            host = host.display(),
        );
        write_script(&shims.join("fleetctl"), &fleetctl);
        // As sudo does for an operator who is not root: the command runs as root, told who
        // asked (spawn then runs the agent as them), here `nobody`'s number.
        write_script(&shims.join("sudo"), "#!/bin/sh\nSUDO_UID=65534 SUDO_GID=65534 exec \"$@\"\n");
        // That operator's agents must reach their slots under the temp root.
        std::fs::set_permissions(fleet.tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the temp root");
        let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default());
        Some(Sandbox { fleet, path })
    }

    /// Runs one line as an operator would, checking it succeeded: a `fleetctl` line without
    /// `sudo` as the operator (`nobody`'s number) where setpriv can switch users, so what the
    /// docs let a normal user run must work for one.
    fn run(&self, doc: &str, line: &str) {
        let mut cmd = match line.starts_with("fleetctl ") && setpriv_here() {
            true => {
                let mut cmd = Command::new("setpriv");
                cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh"]);
                cmd
            }
            false => Command::new("sh"),
        };
        cmd.arg("-c").arg(format!("exec {line}")).env("PATH", &self.path).current_dir(self.fleet.tmp.path());
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if !line.trim_end().ends_with(UNTIL_CTRL_C) {
            let out = cmd.output().expect("run sh");
            let stdout = String::from_utf8_lossy(&out.stdout);
            // doctor's answer on a sandbox: ready in everything but what it may not change.
            let doctor_ok = line.contains("fleetctl doctor")
                && out.status.code() == Some(1)
                && stdout.lines().filter_map(|l| l.strip_prefix("FAIL")).all(|l| {
                    let check = l.split_whitespace().next().unwrap_or("");
                    HOST_WIDE_STEPS.split(',').any(|step| step == check)
                });
            assert!(
                out.status.success() || doctor_ok,
                "{doc}: `{line}` exited {:?}\n--- stdout\n{}--- stderr\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let mut child = cmd.spawn().expect("spawn sh");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = [0u8; 1];
        // Its first output says it is at work; then the operator's Ctrl-C.
        let printed = stdout.read(&mut first).expect("read");
        assert_eq!(printed, 1, "{doc}: `{line}` ended without output");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
            .expect("SIGINT");
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        let status = child.wait().expect("wait");
        let mut err = String::new();
        let _ = child.stderr.take().expect("stderr").read_to_string(&mut err);
        // Ended by the signal itself (`logs -f`) or by its handler (`watch`, exit 130).
        use std::os::unix::process::ExitStatusExt;
        assert!(
            matches!(status.code(), Some(0 | 130)) || status.signal() == Some(libc::SIGINT),
            "{doc}: `{line}` ended {status:?} on Ctrl-C\n--- stderr\n{err}"
        );
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Every `sh` block of `doc`, in order, on a fresh sandbox.
fn run_doc(test: &str, doc: &str, text: &str) {
    let Some(sandbox) = Sandbox::new(test) else { return };
    let blocks = sh_blocks(text);
    assert!(!blocks.is_empty(), "{doc} has no sh block");
    for line in blocks.iter().filter(|b| b.info == "sh").flat_map(|b| &b.lines) {
        sandbox.run(doc, line);
    }
    if blocks.iter().any(|b| b.info == "sh systemd") {
        crate::util::skip::skip_part(test, &format!("{doc}'s packaged install on systemd runs in the systemd VM tier"));
    }
    // What the blocks left running is the fleet's to end; nothing else may remain.
    sandbox.fleet.finish();
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    run_doc("readme", DOCS[0].0, DOCS[0].1);
}

#[test]
fn the_operations_guide_runs_as_written() {
    run_doc("opsguide", DOCS[1].0, DOCS[1].1);
}

#[test]
fn the_setup_host_guide_runs_as_written() {
    run_doc("setupguide", DOCS[2].0, DOCS[2].1);
}
