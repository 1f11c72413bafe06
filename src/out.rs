//! Standard output for commands: every write returns its error instead of panicking.
//!
//! `println!` panics when stdout cannot be written (`fleetctl status > /dev/full`, a full
//! disk under `metrics > file.prom`), which aborts with a backtrace hint and exit 101 or 134.
//! Commands write through [`outln!`] and [`out!`] instead, which flush at once, so a failed
//! write becomes one error line and exit 1 from `main`. A reader that went away still ends
//! the process quietly through SIGPIPE (see `main`).

use anyhow::{Context, Result};
use std::{fmt, io::Write};

/// What a failed write to stdout says, for every command.
pub const UNWRITTEN: &str = "cannot write the output";

/// Writes `args` to stdout and flushes, so the error (if any) belongs to this write.
pub fn write(args: fmt::Arguments<'_>) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).and_then(|()| stdout.flush()).context(UNWRITTEN)
}

/// Writes `value` as pretty JSON and a newline to stdout, serialised straight into a
/// buffered stdout rather than built as one string first: `status --json` over 1,000
/// agents is over a megabyte, and the string, its growth and its copy cost more than the
/// writes.
pub fn json(value: &impl serde::Serialize) -> Result<()> {
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut stdout, value)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .context(UNWRITTEN)
}

/// `println!` that returns `anyhow::Result<()>` instead of panicking.
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that returns `anyhow::Result<()>` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

pub(crate) use {out, outln};
