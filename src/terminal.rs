//! The terminal stdout writes to: its size, for the tables and the live view to fit.

use crate::render::columns::Layout;
use std::io::IsTerminal;

/// Rows and columns of the terminal on stdout; `None` when stdout is not one.
pub fn size() -> Option<(usize, usize)> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    // A terminal that does not say its size is taken as the classic 80x24.
    Some(if ok && ws.ws_col > 0 && ws.ws_row > 0 { (usize::from(ws.ws_row), usize::from(ws.ws_col)) } else { (24, 80) })
}

/// The width output is fitted to: `COLUMNS` when it is a number (as `ls` and `ps` take
/// it, also into a pipe), else the terminal's; `None` (no limit) for a pipe or file.
pub fn width() -> Option<usize> {
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<usize>().ok()).filter(|&c| c > 0);
    columns.or_else(|| size().map(|(_, cols)| cols))
}

/// The layout of a `status` or `memory` table from `-o wide` and `--no-headers`.
pub fn layout(wide: bool, no_headers: bool) -> Layout {
    Layout { width: width(), wide, no_headers }
}
