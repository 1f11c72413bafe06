//! fleetctl: run hundreds of coding agents on one Linux host without running out of memory.

mod agent;
mod commands;
mod config;
mod context;
mod exit;
mod failpoint;
mod out;
mod render;
mod settings;
mod setup;
mod supervisor;
mod systemd;
mod terminal;

use exit::{Exit, exit_for};
use fleet_cli::{Cli, Command};
use settings::Resolve;

/// The installed build is static musl (`cargo xtask dist`), which starts without glibc's
/// CPUID-heavy set-up; musl's own allocator is slow under the threads `status` and `memory`
/// use, so that build brings mimalloc (docs/decisions.md).
#[cfg(all(target_env = "musl", not(test)))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Unit tests count allocations, for the tests that show a hot path allocates nothing.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: fleet_core::alloc_count::Counting = fleet_core::alloc_count::Counting;

/// Ends the process now with `exit`'s code, for the one place that cannot return to
/// `main`: a second Ctrl-C, from inside the signal handler's thread.
pub fn end_process_now(exit: Exit) -> ! {
    // Not `end`: stdout's lock may be held by a main thread stuck writing to a stalled
    // terminal or a full pipe, which is when a second Ctrl-C comes.
    // SAFETY: _exit(2) ends the process at once.
    unsafe { libc::_exit(exit.code()) }
}

/// Ends the process with `code` once stdout is flushed, without running exit handlers. The
/// one there is, mimalloc's, gives the whole heap back to the kernel page by page (an
/// madvise over what it reserved), which the process's exit does anyway: some 3 % of a
/// spawn's time, for nothing.
fn end(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: _exit(2) ends the process; every output is flushed (stderr has no buffer).
    unsafe { libc::_exit(code) }
}

fn main() {
    // Like every Unix filter: a reader that goes away (`fleetctl status | head`) ends us
    // quietly, instead of a panic in the middle of a table. (Supervisors ignore it again.)
    // SAFETY: installing SIG_DFL runs no handler code; no other thread exists yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // The fleet scope's anchor (started by the watcher through systemd-run) is not a command
    // for people: it is not in clap's definition, so no help, completion or man page shows it,
    // and it needs no settings, so a config being edited cannot stop it.
    if systemd::scope::is_anchor_call(std::env::args_os()) {
        let code = systemd::scope::anchor().map_or_else(
            |e| {
                eprintln!("fleetctl: {}", exit::describe(&e));
                exit_for(&e).code()
            },
            Exit::code,
        );
        end(code);
    }
    let cli = match fleet_cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            end(0);
        }
        Err(err) => {
            eprintln!("fleetctl: {}", one_line(&err.render().to_string()));
            end(Exit::Usage.code());
        }
    };
    let code = match run(cli) {
        Ok(exit) => exit.code(),
        Err(err) => {
            if is_broken_pipe(&err) {
                0
            } else {
                eprintln!("fleetctl: {}", exit::describe(&err));
                exit_for(&err).code()
            }
        }
    };
    end(code);
}

/// Dispatches to the one entry function of each subcommand.
fn run(cli: Cli) -> anyhow::Result<Exit> {
    // Stopping an agent must not wait for a config fix (settings.rs, `Resolve`).
    let mode = match cli.command {
        Command::Kill(_) | Command::Relief(_) | Command::Gc(_) => Resolve::Stopping,
        _ => Resolve::Strict,
    };
    let ctx = context::Ctx::resolve(&cli.global, mode)?;
    match cli.command {
        Command::Spawn(args) => commands::spawn::run(&ctx, args),
        Command::Kill(args) => commands::kill::run(&ctx, args),
        Command::Restart(args) => commands::restart::run(&ctx, args),
        Command::Logs(args) => commands::logs::run(&ctx, args),
        Command::Status(args) => commands::status::run(&ctx, args),
        Command::Memory(args) => commands::memory::run(&ctx, args),
        Command::Queue(args) => commands::queue::run(&ctx, args),
        Command::Events(args) => commands::events::run(&ctx, args),
        Command::Relief(args) => commands::relief::run(&ctx, args),
        Command::Metrics => commands::metrics::run(&ctx),
        Command::Watch(args) => commands::watch::run(&ctx, args),
        Command::Gc(args) => commands::gc::run(&ctx, args),
        Command::SetupHost(args) => commands::setup_host::run(&ctx, args),
        Command::Doctor(args) => commands::doctor::run(&ctx, args),
        Command::CgroupCreate(args) => commands::cgroup_create::run(&ctx, args),
        Command::RunInCgroup(args) => commands::run_in_cgroup::run(&ctx, args),
    }
}

/// Folds clap's multi-line usage error into the one line fleetctl prints for every error:
/// the message, then where to look for the rule.
fn one_line(rendered: &str) -> String {
    // clap's "tip: to pass '-1' as a value, use '-- -1'" would make the value (or a mistyped
    // flag) the agent's command: leave it out.
    let rendered: String =
        rendered.lines().filter(|l| !l.trim_start().starts_with("tip:")).collect::<Vec<_>>().join("\n");
    let rendered = rendered.as_str();
    let message = rendered.split("\n\nUsage:").next().unwrap_or(rendered);
    let message = message.split("\n\nFor more information").next().unwrap_or(message);
    let message = message.trim().trim_start_matches("error: ");
    let words: Vec<&str> = message.split_whitespace().collect();
    format!("{} (see --help)", words.join(" "))
}

/// A reader that went away (`fleetctl status | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
