//! `spawn --wait`: stay attached to the agent just started, streaming its log, and end with
//! its code; Ctrl-C stops it.

use crate::{
    agent::{
        follow::{FOLLOW_INTERVAL, Follower},
        stop::{StopRequest, stop_agent},
        view,
    },
    context::Ctx,
    exit::Exit,
};
use anyhow::{Context, Result};
use fleet_core::id::AgentId;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

/// Counts Ctrl-C presses from now on, for [`wait_attached`]. `spawn --wait` starts counting
/// before its agent starts: a press the moment the agent runs must stop it, not kill `spawn`
/// and leave the agent running detached.
pub fn count_ctrl_c() -> Result<Arc<AtomicU32>> {
    let presses = Arc::new(AtomicU32::new(0));
    let counter = presses.clone();
    ctrlc::set_handler(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(presses)
}

/// `spawn --wait`: stream the agent's output until its supervisor exits, then exit with the
/// agent's own code. The first Ctrl-C (counted in `presses`, from [`count_ctrl_c`]) stops
/// the agent gracefully; a second exits 130.
pub fn wait_attached(ctx: &Ctx, id: &AgentId, supervisor: nix::unistd::Pid, presses: Arc<AtomicU32>) -> Result<Exit> {
    let path = ctx.dirs.log_path(id);
    let mut out = std::io::stdout().lock();
    let mut follower: Option<Follower> = None;
    let mut stopping = false;
    loop {
        if follower.is_none() && path.exists() {
            follower = Some(Follower::open(&path, 0)?);
        }
        if let Some(f) = &mut follower {
            f.copy_new(&mut out)?;
        }
        match presses.load(Ordering::SeqCst) {
            0 => {}
            1 if !stopping => {
                stopping = true;
                eprintln!("fleetctl: stopping {id} (Ctrl-C again to detach at once)");
                let (ctx, ctx_id) = (ctx.clone(), id.clone());
                std::thread::spawn(move || {
                    let req = StopRequest {
                        by: "user".into(),
                        detail: Some("Ctrl-C".into()),
                        grace: Duration::from_secs(10),
                        force: false,
                    };
                    let _ = stop_agent(&ctx, &ctx_id, &req);
                });
            }
            1 => {}
            _ => return Ok(Exit::Interrupted),
        }
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        if !matches!(waitpid(supervisor, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive)) {
            break;
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
    // The supervisor creates the log at the first output (or note), which may have been its
    // last act.
    if follower.is_none() && path.exists() {
        follower = Some(Follower::open(&path, 0)?);
    }
    if let Some(f) = &mut follower {
        f.copy_new(&mut out)?;
    }
    let record = view::load_one(ctx, id)?.map(|v| v.record);
    let exit = record.as_ref().and_then(|r| r.exit).map(|e| e.shell_code()).unwrap_or(1);
    if let Some(r) = record {
        eprintln!("fleetctl: {id} {}: {}", r.state, r.cause.unwrap_or_default());
    }
    Ok(if presses.load(Ordering::SeqCst) > 0 { Exit::Interrupted } else { Exit::Code(exit) })
}
