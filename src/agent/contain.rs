//! `spawn`'s side of containment: who the agent runs as ([`super::identity`]), its
//! environment ([`super::environment`]), where it starts, and the directories it is given.
//! Decided before anything is touched; the uid of `--user auto` is leased with the other
//! leases (in line, for a queued spawn), and the directories become the agent's just before it starts.

use super::{
    environment::{self, Additions, AgentEnv},
    identity::{self, Caller, Credentials, Identity, RunAs},
    leases::{Taken, Workspace},
    ownership,
    plan::SupervisorPlan,
};
use crate::{
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::{Context, Result};
use fleet_cli::SpawnArgs;
use fleet_core::{lease::Leases, state::AgentRecord};
use std::{ffi::OsString, path::Path};

/// What [`Containment::settle`] gives the plan: who the agent runs as, its environment and
/// its working directory.
pub type Settled = (Option<Credentials>, Vec<(OsString, OsString)>, Option<std::path::PathBuf>);

/// What spawn decided about the agent's containment.
pub struct Containment {
    run_as: RunAs,
    env: AgentEnv,
    /// The identity it runs as, once known (for `auto`, once its uid is leased).
    identity: Option<Identity>,
}

impl Containment {
    /// Decides everything that needs no lease; a bad user, group, variable or file is exit 2.
    pub fn resolve(ctx: &Ctx, args: &SpawnArgs, workspace: &Workspace, scratch: &Path) -> Result<Containment> {
        let usage = |m: String| Fail::error(Exit::Usage, m);
        let a = &ctx.agent;
        let run_as =
            identity::resolve(args.user.as_deref(), (a.user.as_deref(), a.uid_range.clone()), &Caller::current())
                .map_err(usage)?;
        if let RunAs::Auto(range) = &run_as {
            identity::check_range_is_unused(range).map_err(usage)?;
        }
        if matches!(run_as, RunAs::Auto(_)) && matches!(workspace, Workspace::Dir { slot: None, .. }) {
            return Err(usage(
                "--user auto gives the agent its workspace for the run (chown), so it needs a pool slot: use auto or a ws-N name, not a directory of someone else's"
                    .into(),
            ));
        }
        let identity = match &run_as {
            RunAs::User(who) | RunAs::Caller(who) => Some(who.clone()),
            RunAs::Auto(_) => None,
        };
        let caller: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let additions = Additions { env_files: &args.env_file, pass_env: &args.pass_env, env: &args.env };
        // With `auto`, the uid is not known yet: its variables are set again once it is.
        let who = identity.clone().unwrap_or_else(|| identity::auto_identity(0));
        let env = environment::build(&caller, &who, scratch, &additions).map_err(usage)?;
        Ok(Containment { run_as, env, identity })
    }

    /// Whether a named pool slot must be taken exclusively (`--user auto` makes it its own).
    pub fn exclusive_slot(&self) -> bool {
        matches!(self.run_as, RunAs::Auto(_))
    }

    /// `--user auto`: leases the uid of the slot in `taken` and keeps it with its leases, for
    /// the supervisor. Taken with the slot (exit 75 while an agent of another pool sharing
    /// the range holds the uid), so a queued spawn waits in line for it as for a slot.
    pub fn lease_uid(&mut self, ctx: &Ctx, taken: &mut Taken) -> Result<()> {
        let RunAs::Auto(range) = &self.run_as else { return Ok(()) };
        let slot = taken.slot.as_ref().map(|(n, _)| *n).context("--user auto runs in a pool slot")?;
        let pool = taken.workspace.parent().map(fleet_core::lease::pool_slots).transpose()?.unwrap_or_default();
        let highest = pool.iter().map(|(n, _)| *n).max().unwrap_or(slot);
        let uid = identity::slot_uid(range, slot, highest).map_err(|m| Fail::error(Exit::Usage, m))?;
        let Some(file) = identity::lease_uid(&ctx.lock_dir, uid)? else {
            return Err(Fail::error(
                Exit::Refused,
                format!(
                    "uid {uid} (slot ws-{slot:03}'s) is held by an agent of another pool that shares agent.uid_range; wait for it to end, or give each pool its own range"
                ),
            ));
        };
        taken.leases.get_or_insert_with(Leases::default).add(file);
        self.identity = Some(identity::auto_identity(uid));
        Ok(())
    }

    /// Once the `workspace` is settled (and `--user auto`'s uid leased): returns the plan's
    /// credentials, environment and working directory (`--cwd`, exit 2 if not inside the
    /// workspace).
    pub fn settle(&mut self, args: &SpawnArgs, workspace: &Path, scratch: Option<&Path>) -> Result<Settled> {
        if let (RunAs::Auto(_), Some(who), Some(scratch)) = (&self.run_as, &self.identity, scratch) {
            environment::set_identity(&mut self.env, who, scratch);
        }
        let credentials = match &self.run_as {
            RunAs::Caller(_) => None,
            _ => self.identity.as_ref().map(|who| who.credentials.clone()),
        };
        let cwd = args.cwd.as_deref().map(|dir| ownership::resolve_cwd(workspace, dir)).transpose()?;
        // `auto` is given its slot; anyone else must be able to write where it starts, or it
        // fails later with an error that names neither the user nor the directory.
        let start = cwd.as_deref().unwrap_or(workspace);
        if !matches!(self.run_as, RunAs::Auto(_))
            && !ownership::writable_by(credentials.as_ref(), start).context("cannot check the workspace")?
        {
            let uid = self.identity.as_ref().map_or(0, |who| who.credentials.uid);
            return Err(Fail::error(
                Exit::Usage,
                format!(
                    "{} is not writable by uid {uid}, whom the agent runs as: use --user auto (a uid per slot, given its slot), give the pool to that user (chown -R {uid} {}), or --cwd a directory it can write",
                    start.display(),
                    workspace.parent().unwrap_or(workspace).display()
                ),
            ));
        }
        Ok((credentials, self.env.vars.clone(), cwd))
    }

    /// Notes in the agent's record who it runs as and the names of the variables added.
    pub fn annotate(&self, mut record: AgentRecord, args: &SpawnArgs) -> AgentRecord {
        record.user = self.identity.as_ref().map(|who| format!("{}:{}", who.credentials.uid, who.credentials.gid));
        record.env_added = self.env.added.clone();
        // What `restart` needs to run it as the same user, from the same place.
        if let Some(with) = &mut record.spawned_with {
            with.user = args.user.clone();
            with.cwd = args.cwd.clone();
            with.allow_new_privs = args.allow_new_privs;
        }
        record
    }

    /// Gives the agent its directories: its scratch dir always (it must be able to write
    /// it), with `--user auto` its workspace slot too, once nothing runs as its uid any more.
    /// Spawn's undo removes the scratch dir; the slot stays the uid's, which is the slot's.
    pub fn hand_over(&self, plan: &SupervisorPlan) -> Result<()> {
        let Some(Credentials { uid, gid, .. }) = plan.credentials else { return Ok(()) };
        if matches!(self.run_as, RunAs::Auto(_)) {
            identity::end_leftovers(uid).with_context(|| format!("cannot end the processes left as uid {uid}"))?;
        }
        if let Some(scratch) = &plan.scratch {
            ownership::make_own(scratch, uid, gid)?;
        }
        if matches!(self.run_as, RunAs::Auto(_)) {
            ownership::make_own(&plan.workspace, uid, gid)?;
        }
        Ok(())
    }
}
