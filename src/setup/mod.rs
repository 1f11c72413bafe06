//! Preparing a host for hundreds of agents: what `setup-host` changes and `doctor` reads.
//!
//! Each step inspects the host and returns [`Item`]s, each either in place or missing with
//! the [`Action`] that would put it in place. `setup-host --dry-run` prints them, `--check`
//! fails on missing ones, a plain run applies the actions and records every [`Change`] in a
//! manifest so `--revert` can undo exactly that. `doctor` reports the same items, read-only.

pub mod actions;
pub mod manifest;
pub mod service;
pub mod steps;

pub use manifest::{Change, Manifest};
use std::path::{Path, PathBuf};

/// The steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `/etc/fleet/fleet.toml`: where the fleet lives and its budget.
    Config,
    /// State and log directories.
    Dirs,
    /// Controllers down to the fleet root, the fleet subtree, the budget.
    Cgroups,
    /// Host swap (opt-in).
    Swap,
    /// Kernel parameters.
    Sysctl,
    /// The workspace pool.
    Workspaces,
    /// The tmpfs scratch space.
    Scratch,
    /// Handing the fleet to a non-root user.
    Delegate,
    /// The watcher's service (`fleetctl.service`), enabled and running where systemd runs.
    Watcher,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 9] = [
        Step::Config,
        Step::Dirs,
        Step::Cgroups,
        Step::Swap,
        Step::Sysctl,
        Step::Workspaces,
        Step::Scratch,
        Step::Delegate,
        Step::Watcher,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Step::Config => "config",
            Step::Dirs => "dirs",
            Step::Cgroups => "cgroups",
            Step::Swap => "swap",
            Step::Sysctl => "sysctl",
            Step::Workspaces => "workspaces",
            Step::Scratch => "scratch",
            Step::Delegate => "delegate",
            Step::Watcher => "watcher",
        }
    }

    /// The step called `name`.
    pub fn parse(name: &str) -> Result<Step, String> {
        Step::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
            format!("unknown step '{name}': the steps are {}", names.join(", "))
        })
    }

    /// Whether the step changes things only root may change.
    pub fn needs_root(self) -> bool {
        !matches!(self, Step::Cgroups | Step::Workspaces | Step::Dirs)
    }
}

/// Where one inspected thing stands.
#[derive(Debug, Clone)]
pub enum Status {
    /// Nothing to do.
    InPlace,
    /// Missing; the action puts it in place.
    Missing(Action),
    /// Deliberately left alone, and why.
    Skipped(String),
}

/// One thing a step looked at.
#[derive(Debug, Clone)]
pub struct Item {
    /// The step it belongs to.
    pub step: Step,
    /// What it is, in a few words ("fleet root /sys/fs/cgroup/fleet").
    pub what: String,
    /// Where it stands.
    pub status: Status,
}

impl Item {
    fn in_place(step: Step, what: impl Into<String>) -> Item {
        Item { step, what: what.into(), status: Status::InPlace }
    }
    fn missing(step: Step, what: impl Into<String>, action: Action) -> Item {
        Item { step, what: what.into(), status: Status::Missing(action) }
    }
    fn skipped(step: Step, what: impl Into<String>, why: impl Into<String>) -> Item {
        Item { step, what: what.into(), status: Status::Skipped(why.into()) }
    }
}

/// A change `setup-host` can make.
#[derive(Debug, Clone)]
pub enum Action {
    /// Create directories (mode 0755), parents first.
    MakeDirs(Vec<PathBuf>),
    /// Create a cgroup directory in one hierarchy.
    MakeCgroup(PathBuf),
    /// Enable the wanted controllers the node has in its `cgroup.subtree_control`.
    EnableControllers(PathBuf),
    /// Write an interface file (the fleet budget).
    SetValue { path: PathBuf, value: String, controller: &'static str },
    /// Raise a kernel parameter.
    Sysctl { key: &'static str, value: u64 },
    /// Write a whole file.
    WriteFile { path: PathBuf, content: String },
    /// Edit a file in place (fstab), applied to what is there at the time.
    EditFile { path: PathBuf, edit: FileEdit },
    /// Turn a swap device off.
    SwapOff(PathBuf),
    /// Mount a tmpfs of the given size.
    MountTmpfs { target: PathBuf, size: String },
    /// Give paths to a user.
    Chown { paths: Vec<PathBuf>, uid: u32, gid: u32 },
    /// `systemctl daemon-reload`, then `systemctl enable --now UNIT`, which returns once the
    /// service says it is ready.
    EnableService(&'static str),
    /// `systemctl disable --now UNIT`: a unit in the way (the old `fleetctl-watch.service`).
    DisableService(&'static str),
}

/// An edit to a line-oriented file.
#[derive(Debug, Clone)]
pub enum FileEdit {
    /// Comment out every active swap line (`# fleetctl: ` prefix).
    CommentOutSwap,
    /// Append a line unless an identical one is there.
    AppendLine(String),
}

/// What the host's paths are, with `--root` applied.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The `--root` prefix.
    pub root: PathBuf,
    /// Per-agent state and locks.
    pub state: PathBuf,
    /// Logs and the journal.
    pub log: PathBuf,
    /// The host's lease files (workspace pools, ports).
    pub lock: PathBuf,
    /// The workspace pool.
    pub workspaces: PathBuf,
    /// The scratch tmpfs.
    pub scratch: PathBuf,
    /// `/etc` under the root.
    pub etc: PathBuf,
    /// The manifest.
    pub manifest: PathBuf,
}

/// Where the manifest lives, under `--root`.
const MANIFEST: &str = "/var/lib/fleet/setup-manifest.json";

impl Paths {
    /// The context's paths (made absolute) under `root`, which must be canonical.
    pub fn new(ctx: &crate::context::Ctx, root: &Path) -> Paths {
        let under = |p: &Path| {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            root.join(p.strip_prefix("/").unwrap_or(&p))
        };
        Paths {
            state: under(&ctx.dirs.state),
            log: under(&ctx.dirs.log),
            lock: under(&ctx.lock_dir),
            workspaces: under(&ctx.workspace_root),
            scratch: under(&ctx.scratch_root),
            etc: root.join("etc"),
            manifest: under(Path::new(MANIFEST)),
            root: root.to_path_buf(),
        }
    }
}

/// `dir` and its missing parents, outermost first: what creating it would make.
pub fn missing_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = dir.ancestors().take_while(|a| !a.exists()).map(Path::to_path_buf).collect();
    out.reverse();
    out
}
