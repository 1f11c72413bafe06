//! Each step's inspection: what it wants on the host, and whether it is there.

use super::{Action, FileEdit, Item, Paths, Status, Step, missing_dirs};
use anyhow::{Context, Result};
use fleet_core::{
    cgroup::{Fleet, Layout},
    host::{ancestry, mounts, swap, sysctl},
    lease,
};
use std::path::{Path, PathBuf};

/// Everything the steps look at.
pub struct Host {
    /// Paths with `--root` applied.
    pub paths: Paths,
    /// The fleet root in every hierarchy.
    pub fleet: Fleet,
    /// The top of the v2 tree we may manage: the mount for an absolute fleet root, our own
    /// cgroup for a relative one.
    pub top: PathBuf,
    /// `/proc`.
    pub proc_root: PathBuf,
    /// The operator's choices.
    pub opts: Options,
}

/// The operator's choices (the defaults ask for nothing optional: what `doctor` inspects).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--fleet-memory-max`, in bytes.
    pub fleet_memory_max: Option<u64>,
    /// `--slots`.
    pub slots: u32,
    /// `--scratch-size`, as a tmpfs `size=` value.
    pub scratch_size: String,
    /// `--swapoff`.
    pub swapoff: bool,
    /// `--delegate USER`: name, uid, gid.
    pub delegate: Option<(String, u32, u32)>,
    /// Who gets the workspace slots: the user who ran `sudo fleetctl setup-host`, whose
    /// agents run as them by default (name, uid, gid).
    pub slot_owner: Option<(String, u32, u32)>,
    /// The fleetctl executable the watcher unit runs.
    pub exe: PathBuf,
    /// Whether systemd is the init system.
    pub systemd: bool,
    /// The fleet root as given (`--cgroup-parent`, the config file, or the default): what
    /// the config step writes.
    pub cgroup_parent: String,
}

/// Inspects one step.
pub fn inspect(host: &Host, step: Step) -> Result<Vec<Item>> {
    match step {
        Step::Dirs => Ok(dirs(host)),
        Step::Cgroups => cgroups(host),
        Step::Swap => swap_step(host),
        Step::Sysctl => sysctl_step(host),
        Step::Workspaces => workspaces(host),
        Step::Scratch => scratch(host),
        Step::Delegate => Ok(delegate(host)),
        Step::Config => super::service::config(host),
        Step::Watcher => Ok(super::service::watcher(host)),
    }
}

fn dirs(host: &Host) -> Vec<Item> {
    let p = &host.paths;
    [("state dir", &p.state), ("log dir", &p.log), ("lock dir", &p.lock)]
        .into_iter()
        .map(|(what, dir)| {
            let what = format!("{what} {}", dir.display());
            if dir.is_dir() {
                Item::in_place(Step::Dirs, what)
            } else {
                Item::missing(Step::Dirs, what, Action::MakeDirs(missing_dirs(dir)))
            }
        })
        .collect()
}

fn cgroups(host: &Host) -> Result<Vec<Item>> {
    let s = Step::Cgroups;
    let root = &host.fleet.root;
    let mut items = Vec::new();
    if fleet_core::host::systemd::in_scope(&host.opts.cgroup_parent) {
        // systemd owns the tree above the scope: the watcher makes the scope (through
        // systemd) and the fleet root below it, with the budget from the config file. A
        // fleet root already there gets a new budget now, as on any host.
        let made = Item::skipped(
            s,
            format!("fleet root {}", root.unified.display()),
            "made in fleetctl-fleet.scope by fleetctl.service, with the budget from the config (step watcher)",
        );
        let budget = budget(host).filter(|_| root.exists());
        return Ok([made].into_iter().chain(budget).collect());
    }
    if root.layout == Layout::Unified {
        // Controllers have to flow down every level above the fleet root.
        let chain = ancestry::chain(&host.top, &root.unified);
        anyhow::ensure!(
            !chain.is_empty(),
            "the fleet root {} is not below {}",
            root.unified.display(),
            host.top.display()
        );
        let missing = ancestry::unavailable(&chain[0])?;
        anyhow::ensure!(
            missing.is_empty(),
            "{} lacks the {} controller(s): its parent does not hand them down; give this cgroup to fleetctl with a systemd unit with Delegate=yes, or use an absolute --cgroup-parent (docs/setup-host.md)",
            chain[0].display(),
            missing.join(" and ")
        );
        for node in chain {
            items.extend(cgroup_dir(&node));
            let what = format!("controllers handed down by {}", node.display());
            items.push(match node.is_dir() && ancestry::not_delegated(&node)?.is_empty() {
                true => Item::in_place(s, what),
                false => Item::missing(s, what, Action::EnableControllers(node.clone())),
            });
        }
    }
    let fleet = [root.clone(), host.fleet.agents(), host.fleet.supervisors()];
    for cg in &fleet {
        for dir in cg.dirs() {
            // A nested fleet root (`/fleets/a`) needs its missing ancestors in every
            // hierarchy; on v2 the chain above made them already.
            for missing in missing_dirs(dir) {
                let made =
                    items.iter().any(|i| matches!(&i.status, Status::Missing(Action::MakeCgroup(d)) if *d == missing));
                if !made {
                    items.push(Item::missing(s, format!("cgroup {}", missing.display()), Action::MakeCgroup(missing)));
                }
            }
        }
    }
    if root.layout == Layout::Unified {
        // Inside the fleet: the root hands memory and pids to agents/ and supervisors/, and
        // agents/ hands them to each agent.
        for node in [&root.unified, &host.fleet.agents().unified] {
            let what = format!("controllers handed down by {}", node.display());
            items.push(match node.is_dir() && ancestry::not_delegated(node)?.is_empty() {
                true => Item::in_place(s, what),
                false => Item::missing(s, what, Action::EnableControllers(node.clone())),
            });
        }
    }
    items.extend(budget(host));
    Ok(items)
}

/// The fleet's budget on the fleet root, when `--fleet-memory-max` (or the config) gives one.
fn budget(host: &Host) -> Option<Item> {
    let bytes = host.opts.fleet_memory_max?;
    let (path, _) = budget_file(host);
    let what = format!("fleet budget {} = {}", path.display(), fleet_core::size::format_iec(bytes));
    let current = ancestry::read_value(&path).ok();
    Some(match current.as_deref() == Some(bytes.to_string().as_str()) {
        true => Item::in_place(Step::Cgroups, what),
        false => Item::missing(
            Step::Cgroups,
            what,
            Action::SetValue { path, value: bytes.to_string(), controller: "memory" },
        ),
    })
}

/// The file that holds the fleet's budget in this layout, and its controller.
pub fn budget_file(host: &Host) -> (PathBuf, &'static str) {
    (host.fleet.root.memory_limit_file(), "memory")
}

fn cgroup_dir(dir: &Path) -> Option<Item> {
    let what = format!("cgroup {}", dir.display());
    (!dir.is_dir()).then(|| Item::missing(Step::Cgroups, what, Action::MakeCgroup(dir.to_path_buf())))
}

fn swap_step(host: &Host) -> Result<Vec<Item>> {
    let s = Step::Swap;
    let root = &host.paths.root;
    // Under a --root prefix only swap files inside it are ours to touch.
    let active: Vec<PathBuf> = swap::active(&host.proc_root)?.into_iter().filter(|d| d.starts_with(root)).collect();
    let fstab = host.paths.etc.join("fstab");
    let fstab_swap = std::fs::read_to_string(&fstab).is_ok_and(|t| t.lines().any(is_swap_line));
    if !host.opts.swapoff {
        let why = match active.is_empty() {
            true => "agents get swap 0 through their cgroups".to_string(),
            false => format!(
                "swap is on ({}); agents still get swap 0 through their cgroups; pass --swapoff to turn it off for the host",
                paths_list(&active)
            ),
        };
        return Ok(vec![Item::skipped(s, "host swap", why)]);
    }
    let mut items: Vec<Item> = active
        .iter()
        .map(|d| Item::missing(s, format!("swap off on {}", d.display()), Action::SwapOff(d.clone())))
        .collect();
    if active.is_empty() {
        items.push(Item::in_place(s, "no swap active"));
    }
    let what = format!("swap lines commented out in {}", fstab.display());
    items.push(match fstab_swap {
        true => Item::missing(s, what, Action::EditFile { path: fstab, edit: FileEdit::CommentOutSwap }),
        false => Item::in_place(s, what),
    });
    Ok(items)
}

/// An uncommented fstab line whose type is `swap`.
pub fn is_swap_line(line: &str) -> bool {
    let t = line.trim_start();
    !t.starts_with('#') && t.split_whitespace().nth(2) == Some("swap")
}

fn sysctl_step(host: &Host) -> Result<Vec<Item>> {
    let s = Step::Sysctl;
    let mut items = Vec::new();
    let mut wanted = Vec::new();
    for p in sysctl::RECOMMENDED {
        let current = sysctl::read(&host.proc_root, p.key)?;
        // Never lower a value: a host already above our floor keeps its own.
        wanted.push((p, current.max(p.min)));
        let what = format!("{} >= {}", p.key, p.min);
        items.push(match current >= p.min {
            true => Item::in_place(s, what),
            false => Item::missing(s, what, Action::Sysctl { key: p.key, value: p.min }),
        });
    }
    let path = host.paths.etc.join("sysctl.d/90-fleetctl.conf");
    let content = sysctl::drop_in(&wanted);
    let what = format!("drop-in {}", path.display());
    items.push(match std::fs::read_to_string(&path).is_ok_and(|t| t == content) {
        true => Item::in_place(s, what),
        false => Item::missing(s, what, Action::WriteFile { path, content }),
    });
    Ok(items)
}

fn workspaces(host: &Host) -> Result<Vec<Item>> {
    let root = &host.paths.workspaces;
    writable_or_absent(root)?;
    let total = host.opts.slots;
    let missing: Vec<PathBuf> =
        (1..=total).map(|n| root.join(lease::slot_name(n, total))).filter(|d| !d.is_dir()).collect();
    let what = format!("{total} workspace slots under {}", root.display());
    let mut items = vec![match missing.is_empty() {
        true => Item::in_place(Step::Workspaces, what),
        false => {
            let mut dirs = missing_dirs(root);
            dirs.extend(missing);
            Item::missing(Step::Workspaces, what, Action::MakeDirs(dirs))
        }
    }];
    // The slots themselves (named, as the item above makes them), not the pool: agents run
    // as the operator and must write their workspace, which spawn checks.
    if let Some((name, uid, gid)) = &host.opts.slot_owner {
        let slots = (1..=total).map(|n| root.join(lease::slot_name(n, total)));
        let not_owned: Vec<PathBuf> = slots.filter(|path| owner(path) != Some((*uid, *gid))).collect();
        let what = format!("workspace slots owned by {name}, whose agents run as them");
        items.push(match not_owned.is_empty() {
            true => Item::in_place(Step::Workspaces, what),
            false => Item::missing(Step::Workspaces, what, Action::Chown { paths: not_owned, uid: *uid, gid: *gid }),
        });
    }
    Ok(items)
}

fn scratch(host: &Host) -> Result<Vec<Item>> {
    let s = Step::Scratch;
    let target = &host.paths.scratch;
    let mut items = Vec::new();
    if !target.is_dir() {
        items.push(Item::missing(s, format!("directory {}", target.display()), Action::MakeDirs(missing_dirs(target))));
    }
    let size = &host.opts.scratch_size;
    let shown = size.parse::<u64>().map(fleet_core::size::format_iec).unwrap_or_else(|_| format!("{size} of RAM"));
    let what = format!("tmpfs of {shown} on {}", target.display());
    let mounted = mounts::at(&host.proc_root, target)?.is_some_and(|m| m.fstype == "tmpfs");
    items.push(match mounted {
        true => Item::in_place(s, what),
        false => {
            Item::missing(s, what, Action::MountTmpfs { target: target.clone(), size: host.opts.scratch_size.clone() })
        }
    });
    let fstab = host.paths.etc.join("fstab");
    let line = scratch_fstab_line(target, &host.opts.scratch_size);
    let what = format!("mounted at boot ({})", fstab.display());
    let present = std::fs::read_to_string(&fstab).is_ok_and(|t| t.lines().any(|l| l == line));
    items.push(match present {
        true => Item::in_place(s, what),
        false => Item::missing(s, what, Action::EditFile { path: fstab, edit: FileEdit::AppendLine(line) }),
    });
    Ok(items)
}

/// The fstab line that mounts the scratch tmpfs at boot.
pub fn scratch_fstab_line(target: &Path, size: &str) -> String {
    format!("fleet-scratch {} tmpfs size={size},mode=0755,nosuid,nodev 0 0", target.display())
}

fn delegate(host: &Host) -> Vec<Item> {
    let s = Step::Delegate;
    let Some((name, uid, gid)) = &host.opts.delegate else {
        return vec![Item::skipped(s, "delegation", "pass --delegate USER to let a non-root user run the fleet")];
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    let fleet = [host.fleet.root.clone(), host.fleet.agents(), host.fleet.supervisors()];
    // Named, not listed: on a first run the cgroups step makes them just before this one.
    for cg in &fleet {
        paths.extend(cg.delegation_paths());
    }
    let p = &host.paths;
    paths.extend([p.state.clone(), p.log.clone(), p.lock.clone(), p.workspaces.clone(), p.scratch.clone()]);
    // The slots too (named, as the workspaces step makes them): the delegated user's agents
    // run as that user and must write their workspace, which spawn checks.
    let total = host.opts.slots;
    paths.extend((1..=total).map(|n| p.workspaces.join(lease::slot_name(n, total))));
    let not_owned: Vec<PathBuf> = paths.into_iter().filter(|path| owner(path) != Some((*uid, *gid))).collect();
    let what = format!("fleet cgroups and directories owned by {name}");
    vec![match not_owned.is_empty() {
        true => Item::in_place(s, what),
        false => Item::missing(s, what, Action::Chown { paths: not_owned, uid: *uid, gid: *gid }),
    }]
}

/// Fails with a clear line when `dir` exists but cannot be written.
fn writable_or_absent(dir: &Path) -> Result<()> {
    use nix::unistd::{AccessFlags, access};
    let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    access(existing, AccessFlags::W_OK).with_context(|| {
        format!("{} is not writable; make it writable or choose another --workspace-root", existing.display())
    })?;
    Ok(())
}

fn owner(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
}

fn paths_list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
