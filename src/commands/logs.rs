//! `fleetctl logs ID [-f] [-n N]`, and the attached mode of `spawn --wait`, which streams
//! the same log.

use crate::{
    agent::{
        stop::{StopRequest, stop_agent},
        view,
    },
    context::Ctx,
    exit::{Exit, Fail},
};
use anyhow::{Context, Result};
use fleet_cli::LogsArgs;
use fleet_core::id::AgentId;
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

/// How often a follower looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);

/// Entry point.
pub fn run(ctx: &Ctx, args: LogsArgs) -> Result<Exit> {
    let path = ctx.dirs.log_path(&args.id);
    let known = ctx.dirs.agent_dir(&args.id).is_dir();
    if !path.exists() {
        if !known {
            return Err(Fail::error(
                Exit::NoSuchAgent,
                format!("no such agent: {} (no log at {})", args.id, path.display()),
            ));
        }
        // An agent that has printed nothing yet: its supervisor creates the log at the first
        // output, or 50 ms after the start.
        if !(args.follow && wait_for_log(ctx, &args.id, &path)) {
            return Ok(Exit::Ok);
        }
    }
    let mut out = std::io::stdout().lock();
    let offset = match args.lines {
        Some(n) => tail_offset(&path, n)?,
        None => 0,
    };
    let mut follower = Follower::open(&path, offset)?;
    follower.copy_new(&mut out)?;
    if args.follow {
        while agent_alive(ctx, &args.id) {
            std::thread::sleep(FOLLOW_INTERVAL);
            follower.copy_new(&mut out)?;
        }
        follower.copy_new(&mut out)?;
    }
    Ok(Exit::Ok)
}

/// Waits while the agent runs for its log to appear; false if it never did.
fn wait_for_log(ctx: &Ctx, id: &AgentId, path: &Path) -> bool {
    while !path.exists() && agent_alive(ctx, id) {
        std::thread::sleep(FOLLOW_INTERVAL);
    }
    path.exists()
}

fn agent_alive(ctx: &Ctx, id: &AgentId) -> bool {
    view::load_one(ctx, id).ok().flatten().is_some_and(|v| v.supervised)
}

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

/// Reads a growing log from an offset, and starts over when it is rotated.
struct Follower {
    path: std::path::PathBuf,
    file: File,
    inode: u64,
}

impl Follower {
    fn open(path: &Path, offset: u64) -> Result<Follower> {
        let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        file.seek(SeekFrom::Start(offset))?;
        let inode = file.metadata()?.ino();
        Ok(Follower { path: path.to_path_buf(), file, inode })
    }

    fn copy_new(&mut self, out: &mut impl Write) -> Result<()> {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf)?;
        out.write_all(&buf)?;
        // Rotated: the path now names a new file; the rest of the old one was read above.
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() != self.inode) {
            *self = Follower::open(&self.path.clone(), 0)?;
            self.copy_new(out)?;
        }
        out.flush()?;
        Ok(())
    }
}

/// The byte offset where the last `n` lines of the file begin.
fn tail_offset(path: &Path, n: usize) -> Result<u64> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if n == 0 {
        return Ok(data.len() as u64);
    }
    let body = data.strip_suffix(b"\n").unwrap_or(&data);
    let start = body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(n - 1).map(|(i, _)| i + 1).unwrap_or(0);
    Ok(start as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_finds_the_last_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a.log");
        std::fs::write(&path, "one\ntwo\nthree\n").expect("write");
        assert_eq!(tail_offset(&path, 1).expect("tail"), 8);
        assert_eq!(tail_offset(&path, 2).expect("tail"), 4);
        assert_eq!(tail_offset(&path, 9).expect("tail"), 0);
        assert_eq!(tail_offset(&path, 0).expect("tail"), 14);
    }
}
