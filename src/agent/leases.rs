//! Taking an agent's leases at spawn: its workspace slot (named or `auto`) on its pool's lease
//! file, and its ports on the host's. The kernel's byte-range locks are the truth (see
//! `fleet_core::lease`); agents' records only say who holds what, for the messages.

use crate::{
    agent::view,
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::Result;
use fleet_core::{
    id::AgentId,
    lease::{self, LeaseFile, Leases, PortBlock},
};
use std::path::{Path, PathBuf};

/// The workspace `spawn` was given, resolved.
#[derive(Debug, Clone)]
pub enum Workspace {
    /// `auto`: lease a free slot of the pool.
    Auto,
    /// A directory; `slot` is set when it is a pool slot (`ws-<n>` under the workspace root).
    Dir { path: PathBuf, slot: Option<(u32, String)> },
}

/// What `spawn` leased.
pub struct Taken {
    /// The descriptor holding them, for the supervisor.
    pub leases: Option<Leases>,
    /// The workspace directory.
    pub workspace: PathBuf,
    /// Its slot's number and name, when it is a pool slot.
    pub slot: Option<(u32, String)>,
    /// The ports.
    pub ports: Option<PortBlock>,
}

/// Takes the workspace slot and `ports` (how many, from which range), or fails naming the
/// pool and its holders. A named slot is shared unless `exclusive` (`--user auto`, which
/// makes the slot its own for the run).
pub fn take(ctx: &Ctx, workspace: &Workspace, ports: Option<(u16, (u16, u16))>, exclusive: bool) -> Result<Taken> {
    let needs_leases = ports.is_some() || matches!(workspace, Workspace::Auto | Workspace::Dir { slot: Some(_), .. });
    if !needs_leases {
        let Workspace::Dir { path, .. } = workspace else { unreachable!("auto always leases") };
        return Ok(Taken { leases: None, workspace: path.clone(), slot: None, ports: None });
    }
    let mut leases = Leases::default();
    let (workspace, slot) = match workspace {
        Workspace::Auto => {
            let pool = lease::pool_slots(&ctx.workspace_root)?;
            if pool.is_empty() {
                return Err(Fail::error(
                    Exit::Failure,
                    format!(
                        "no workspace pool under {}: create the slots with `sudo fleetctl setup-host --only workspaces`, or name a workspace",
                        ctx.workspace_root.display()
                    ),
                ));
            }
            let numbers: Vec<u32> = pool.iter().map(|(n, _)| *n).collect();
            let file = pool_file(ctx, &ctx.workspace_root)?;
            let Some(n) = file.lease_any_slot(&numbers)? else {
                return Err(Fail::error(
                    Exit::Refused,
                    format!(
                        "workspace pool exhausted: all {} slots under {} are leased (holders: {}); wait for an agent to end, or add slots with `setup-host --slots`",
                        pool.len(),
                        ctx.workspace_root.display(),
                        holders(ctx, pool.len(), |r| r.slot.is_some())
                    ),
                ));
            };
            leases.add(file);
            let name = pool.iter().find(|(m, _)| *m == n).map(|(_, s)| s.clone()).unwrap_or_default();
            // Absolute, like a named workspace: the agent's FLEET_WORKSPACE must not depend on
            // where spawn was run from.
            let dir = ctx.workspace_root.join(&name);
            (std::fs::canonicalize(&dir).unwrap_or(dir), Some((n, name)))
        }
        Workspace::Dir { path, slot: Some((n, name)) } => {
            let file = pool_file(ctx, path.parent().unwrap_or(&ctx.workspace_root))?;
            if exclusive && !file.try_slot_exclusive(*n)? {
                return Err(Fail::error(
                    Exit::Refused,
                    format!(
                        "workspace {name} is in use by {}, and --user auto needs it alone; wait for it to end, or use auto",
                        holders(ctx, 1, |r| r.slot.as_deref() == Some(name.as_str()))
                    ),
                ));
            }
            if !exclusive && !file.try_slot_shared(*n)? {
                return Err(Fail::error(
                    Exit::Busy,
                    format!(
                        "workspace {name} is leased by {} (given out by `auto`); pick another workspace or use auto",
                        holders(ctx, 1, |r| r.slot.as_deref() == Some(name.as_str()))
                    ),
                ));
            }
            leases.add(file);
            (path.clone(), Some((*n, name.clone())))
        }
        Workspace::Dir { path, slot: None } => (path.clone(), None),
    };
    let ports = match ports {
        None => None,
        Some((count, (lo, hi))) => {
            let busy = lease::busy_ports(&ctx.proc_root);
            let file = open(ctx, &lease::ports_lease_path(&ctx.lock_dir))?;
            match file.lease_ports(lo..=hi, count, &busy)? {
                Some(block) => {
                    leases.add(file);
                    Some(block)
                }
                None => {
                    return Err(Fail::error(
                        Exit::Refused,
                        format!(
                            "port pool exhausted: no {count} free consecutive ports left in {lo}-{hi} ({} in use by other programs; holders: {}); wait for an agent to end, or widen --port-range",
                            busy.range(lo..=hi).count(),
                            holders(ctx, 0, |r| r.ports.is_some())
                        ),
                    ));
                }
            }
        }
    };
    Ok(Taken { leases: Some(leases).filter(|l| !l.is_empty()), workspace, slot, ports })
}

/// The lease file of the pool at `root`, shared with every fleet that leases from it.
fn pool_file(ctx: &Ctx, root: &Path) -> Result<LeaseFile> {
    open(ctx, &lease::pool_lease_path(&ctx.lock_dir, &fleet_core::paths::canonical_or_absolute(root)))
}

fn open(ctx: &Ctx, path: &Path) -> Result<LeaseFile> {
    LeaseFile::open(path).map_err(|e| {
        Fail::error(
            Exit::Failure,
            format!(
                "{:#}: leases live in the host's lock dir {}; create it with `sudo fleetctl setup-host --only dirs`, or point --lock-dir at a directory you can write (every fleet sharing a pool must use the same one)",
                anyhow::Error::from(e),
                ctx.lock_dir.display()
            ),
        )
    })
}

/// Resolves a workspace argument: `auto`, a path (it has a `/` or starts with `.`), or a
/// name under the workspace root.
pub fn resolve(root: &Path, given: &str) -> Result<Workspace> {
    if given == "auto" {
        return Ok(Workspace::Auto);
    }
    let is_path = given.contains('/') || given.starts_with('.');
    let path = if is_path { PathBuf::from(given) } else { root.join(given) };
    let path = match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => std::fs::canonicalize(&path).unwrap_or(path),
        Ok(_) => return Err(Fail::error(Exit::Usage, format!("workspace {} is not a directory", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(crate::exit::denied(&path)),
        Err(_) if is_path => {
            return Err(Fail::error(
                Exit::Usage,
                format!("workspace {} does not exist: create it, or give an existing directory", path.display()),
            ));
        }
        Err(_) => {
            return Err(Fail::error(
                Exit::Usage,
                format!(
                    "workspace '{given}' not found under the workspace root {}: create it, pass a path, use auto, or set --workspace-root",
                    root.display()
                ),
            ));
        }
    };
    // A pool slot however it was named: by name, or by a path that lands in the pool.
    let in_pool = std::fs::canonicalize(root).is_ok_and(|r| path.parent() == Some(r.as_path()));
    let slot = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| in_pool)
        .and_then(|name| lease::slot_number(name).map(|n| (n, name.to_string())));
    Ok(Workspace::Dir { path, slot })
}

/// "agent-003 (ws-003, ports 20000+4), …" for the live agents matching `holds`, and how many
/// of the `held` leases other fleets sharing the pool or the host's ports hold.
fn holders(ctx: &Ctx, held: usize, holds: impl Fn(&fleet_core::state::AgentRecord) -> bool) -> String {
    // Leases are held by supervisors: only supervised agents can hold one.
    let views = view::load_all(ctx).map(|(v, _)| v).unwrap_or_default();
    let records: Vec<&fleet_core::state::AgentRecord> = views
        .iter()
        .filter(|v| v.supervised && !v.state.is_terminal())
        .map(|v| &*v.record)
        .filter(|r| holds(r))
        .collect();
    // Several agents may share a named slot: count slots, not agents.
    let slots: std::collections::BTreeSet<_> = records.iter().filter_map(|r| r.slot.as_deref()).collect();
    let elsewhere = held.saturating_sub(slots.len());
    let mut list: Vec<String> = records
        .iter()
        .map(|r| {
            let mut what = Vec::new();
            if let Some(s) = &r.slot {
                what.push(s.clone());
            }
            if let Some(p) = r.ports {
                what.push(format!("ports {}-{}", p.base, p.base + p.count - 1));
            }
            format!("{} ({})", r.id, what.join(", "))
        })
        .collect();
    if list.is_empty() && held > 0 {
        return "none in this fleet: another fleet sharing the pool holds them, see `fleetctl doctor`".into();
    }
    if list.is_empty() {
        return "none in this fleet; another fleet on this host may hold them".into();
    }
    let more = list.len().saturating_sub(5);
    list.truncate(5);
    let mut text = list.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    if elsewhere > 0 {
        text.push_str(&format!("; {elsewhere} more held by another fleet sharing them"));
    }
    text
}

/// The id's scratch directory, in this fleet's own directory of the scratch root: another
/// fleet's agent of the same id has its own.
pub fn scratch_dir(ctx: &Ctx, id: &AgentId) -> PathBuf {
    ctx.own_scratch_root().join(id.as_str())
}
