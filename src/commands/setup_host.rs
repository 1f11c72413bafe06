//! `fleetctl setup-host [--dry-run | --check | --revert]`: prepare the host once, report each
//! item as done / already in place / skipped / failed, and record every change so `--revert`
//! can undo it. A run that fails part-way undoes its own changes before it reports.

use crate::out::outln;
use crate::{
    context::Ctx,
    exit::{Exit, Fail},
    setup::{
        Item, Manifest, Paths, Status, Step, actions,
        steps::{self, Host, Options},
    },
};
use anyhow::Result;
use fleet_cli::SetupHostArgs;
use std::path::{Path, PathBuf};

/// Entry point.
pub fn run(ctx: &Ctx, args: SetupHostArgs) -> Result<Exit> {
    let selected = select_steps(&args.only, &args.skip)?;
    let am_root = nix::unistd::geteuid().is_root();
    if !am_root && !args.dry_run && !args.check && !delegated_to_me(ctx) {
        return Err(Fail::error(
            Exit::Permission,
            "setup-host changes the host: run it as root (sudo fleetctl setup-host), or have root delegate the fleet to you (sudo fleetctl setup-host --delegate $USER)",
        ));
    }
    let host = host(ctx, &args)?;
    if args.revert {
        return revert(&host);
    }
    outln!("setup-host: {}; fleet root {}", ctx.fleet.root.layout, ctx.fleet.root.unified.display())?;
    let mut items = Vec::new();
    for step in selected {
        if !am_root && step.needs_root() {
            items.push(Item { step, what: step.name().into(), status: Status::Skipped("needs root".into()) });
            continue;
        }
        items.extend(
            steps::inspect(&host, step).map_err(|e| Fail::error(Exit::Failure, format!("{}: {e:#}", step.name())))?,
        );
    }
    if args.dry_run || args.check {
        return report_only(&items, args.check);
    }
    apply_all(&host, &items)
}

/// `--only` and `--skip`, checked against the step names.
fn select_steps(only: &[String], skip: &[String]) -> Result<Vec<Step>> {
    let parse = |names: &[String]| -> Result<Vec<Step>> {
        names.iter().map(|n| Step::parse(n.trim()).map_err(|m| Fail::error(Exit::Usage, m))).collect()
    };
    let (only, skip) = (parse(only)?, parse(skip)?);
    Ok(Step::ALL.into_iter().filter(|s| (only.is_empty() || only.contains(s)) && !skip.contains(s)).collect())
}

fn host(ctx: &Ctx, args: &SetupHostArgs) -> Result<Host> {
    let root = &args.root;
    if !root.is_dir() {
        return Err(Fail::error(
            Exit::Usage,
            format!("--root {} is not a directory: give the existing directory to prefix paths with", root.display()),
        ));
    }
    if args.delegate.is_some() && fleet_core::host::systemd::in_scope(&ctx.cgroup_parent) {
        // The scope's cgroup and the slice above it are systemd's and root's: a user can
        // neither make cgroups there nor move processes in (cgroup.procs of the common
        // ancestor must be theirs).
        return Err(Fail::error(
            Exit::Usage,
            format!(
                "--delegate cannot hand over a fleet root inside fleetctl-fleet.scope ({}): give a delegated fleet a root outside the scope with --cgroup-parent (docs/setup-host.md)",
                ctx.cgroup_parent
            ),
        ));
    }
    let paths = Paths::new(ctx, &std::fs::canonicalize(root)?);
    let delegate = match &args.delegate {
        None => None,
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Some((name.clone(), u.uid.as_raw(), u.gid.as_raw())),
            _ => return Err(Fail::error(Exit::Usage, format!("--delegate {name}: no such user on this host"))),
        },
    };
    // Under sudo the operator's agents run as the operator (`agent::identity`), so the slots
    // go to them; a delegated fleet's slots go to the delegated user instead.
    let caller = crate::agent::identity::Caller::current();
    let slot_owner = match (&delegate, caller.sudo) {
        (None, Some((uid, gid))) if caller.real_uid == 0 && uid != 0 => {
            let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten();
            Some((name.map_or_else(|| uid.to_string(), |u| u.name), uid, gid))
        }
        _ => None,
    };
    Ok(Host {
        paths,
        fleet: ctx.fleet.clone(),
        top: ctx.cgroup_top(),
        proc_root: ctx.proc_root.clone(),
        opts: Options {
            // The config's budget holds until the operator gives another.
            fleet_memory_max: args.fleet_memory_max.or(ctx.fleet_settings.memory_max),
            slots: args.slots,
            scratch_size: args.scratch_size.clone(),
            swapoff: args.swapoff,
            delegate,
            slot_owner,
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/fleetctl")),
            systemd: fleet_core::host::systemd::booted_here(),
            cgroup_parent: ctx.cgroup_parent.clone(),
        },
    })
}

/// A non-root user may run setup-host on a fleet root that root delegated to them.
fn delegated_to_me(ctx: &Ctx) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    std::fs::metadata(&ctx.fleet.root.unified).is_ok_and(|m| m.uid() == me)
}

/// `--dry-run` and `--check`: print, change nothing.
fn report_only(items: &[Item], check: bool) -> Result<Exit> {
    let mut missing = 0;
    for item in items {
        let label = match &item.status {
            Status::InPlace => "in place".to_string(),
            Status::Missing(_) if check => {
                missing += 1;
                "missing".to_string()
            }
            Status::Missing(_) => {
                missing += 1;
                "would do".to_string()
            }
            Status::Skipped(_) => "skipped".to_string(),
        };
        line(item.step, &label, &describe(item))?;
    }
    Ok(match (check, missing) {
        (true, 0) => {
            outln!("setup-host: the host is ready; nothing missing")?;
            Exit::Ok
        }
        (true, n) => {
            outln!("setup-host: {n} item(s) missing; `sudo fleetctl setup-host` puts them in place")?;
            Exit::Failure
        }
        (false, n) => {
            outln!("setup-host: dry run; {n} change(s) would be made, nothing was changed")?;
            Exit::Ok
        }
    })
}

/// Applies every missing item in order. On the first failure, the changes this run made are
/// undone, newest first, so the host is as it was before the run.
fn apply_all(host: &Host, items: &[Item]) -> Result<Exit> {
    let mut manifest = Manifest::load(&host.paths.manifest)?;
    let before = manifest.changes.len();
    let (mut done, mut in_place, mut skipped) = (0, 0, 0);
    // A line that cannot be written must not stop a change half-way (or its undo): the
    // summary line below still fails on a broken stdout.
    for item in items {
        match &item.status {
            Status::InPlace => {
                in_place += 1;
                line(item.step, "already in place", &item.what).ok();
            }
            Status::Skipped(_) => {
                skipped += 1;
                line(item.step, "skipped", &describe(item)).ok();
            }
            Status::Missing(action) => {
                match actions::apply(action, &host.proc_root, &mut manifest, &host.paths.manifest) {
                    Ok(()) => {
                        done += 1;
                        line(item.step, "done", &item.what).ok();
                    }
                    Err(e) => {
                        line(item.step, "failed", &format!("{}: {e:#}", item.what)).ok();
                        let made = manifest.changes.split_off(before);
                        let undone = undo(&made, &host.proc_root);
                        manifest.changes.extend(undone.iter().rev().map(|(c, _)| c.clone()));
                        manifest.save(&host.paths.manifest)?;
                        let kept = undone.len();
                        return Err(Fail::error(
                            Exit::Failure,
                            format!(
                                "setup-host stopped at {}: {e:#}; undid {} change(s) of this run{}",
                                item.step.name(),
                                made.len() - kept,
                                if kept > 0 {
                                    format!(", {kept} could not be undone (kept in the manifest)")
                                } else {
                                    String::new()
                                }
                            ),
                        ));
                    }
                }
            }
        }
    }
    outln!(
        "setup-host: {done} done, {in_place} already in place, {skipped} skipped{}",
        if manifest.changes.is_empty() {
            String::new()
        } else {
            format!("; undo with --revert (manifest {})", host.paths.manifest.display())
        }
    )?;
    Ok(Exit::Ok)
}

/// Undoes `changes` newest first; returns the ones that could not be undone, with why.
fn undo(changes: &[crate::setup::Change], proc_root: &Path) -> Vec<(crate::setup::Change, String)> {
    changes
        .iter()
        .rev()
        .filter_map(|c| actions::revert(c, proc_root).err().map(|e| (c.clone(), format!("{e:#}"))))
        .collect()
}

/// `--revert`: undo every recorded change, newest first.
fn revert(host: &Host) -> Result<Exit> {
    let mut manifest = Manifest::load(&host.paths.manifest)?;
    if manifest.changes.is_empty() {
        outln!("setup-host: nothing to revert (no manifest at {})", host.paths.manifest.display())?;
        return Ok(Exit::Ok);
    }
    let total = manifest.changes.len();
    let failed = undo(&manifest.changes, &host.proc_root);
    for (_, why) in &failed {
        eprintln!("fleetctl: {why}");
    }
    manifest.changes = failed.iter().rev().map(|(c, _)| c.clone()).collect();
    manifest.save(&host.paths.manifest)?;
    if failed.is_empty() {
        outln!("setup-host: reverted {total} change(s)")?;
        Ok(Exit::Ok)
    } else {
        outln!(
            "setup-host: reverted {} of {total} change(s); the rest stay in {}",
            total - failed.len(),
            host.paths.manifest.display()
        )?;
        Ok(Exit::Partial)
    }
}

/// The item, with the reason when it was skipped.
fn describe(item: &Item) -> String {
    match &item.status {
        Status::Skipped(why) => format!("{}: {why}", item.what),
        _ => item.what.clone(),
    }
}

fn line(step: Step, label: &str, what: &str) -> Result<()> {
    outln!("  {:<11} {:<17} {what}", step.name(), label)
}
