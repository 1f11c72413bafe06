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
    value
        .serialize(&mut serde_json::Serializer::with_formatter(&mut stdout, Pretty::default()))
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .context(UNWRITTEN)
}

/// serde_json's pretty layout (two-space indents), each line break written with its comma
/// and indent at once: serde_json's own `PrettyFormatter` writes the indent two bytes at a
/// time, 130,000 small writes for `status --json` over 1,000 agents.
#[derive(Default)]
struct Pretty {
    depth: usize,
    has_value: bool,
}

/// A comma, a line break and the deepest indent written at once; deeper ones are rare.
const BREAK: &[u8] = b",\n                                                                ";

impl Pretty {
    /// A line break at the current depth, after a comma unless `first`.
    fn line<W: ?Sized + Write>(&self, w: &mut W, first: bool) -> std::io::Result<()> {
        let (start, end) = (usize::from(first), 2 + 2 * self.depth);
        if end <= BREAK.len() {
            return w.write_all(&BREAK[start..end]);
        }
        w.write_all(&BREAK[start..2])?;
        (0..self.depth).try_for_each(|_| w.write_all(b"  "))
    }

    fn begin<W: ?Sized + Write>(&mut self, w: &mut W, open: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(open)
    }

    fn end<W: ?Sized + Write>(&mut self, w: &mut W, close: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.line(w, true)?;
        }
        w.write_all(close)
    }
}

impl serde_json::ser::Formatter for Pretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.line(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.line(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[test]
    fn the_layout_is_serde_json_s_pretty_one() {
        let deep = (0..40).fold(serde_json::json!("bottom"), |v, i| serde_json::json!({ format!("k{i}"): [v, {}] }));
        let value = serde_json::json!({
            "schema": 1, "empty": [], "none": {}, "agents": [{"id": "a1", "labels": {}, "command": ["sleep", "1"]}, 2, null],
            "deep": deep,
        });
        let mut ours = Vec::new();
        value.serialize(&mut serde_json::Serializer::with_formatter(&mut ours, Pretty::default())).expect("ours");
        assert_eq!(String::from_utf8(ours).expect("utf-8"), serde_json::to_string_pretty(&value).expect("theirs"));
    }
}
