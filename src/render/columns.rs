//! Tables as `status` and `memory` print them: plain columns two spaces apart, one line per
//! row, fitted to a width. Where the width is short, the column a table ranks least useful
//! goes first, and the one flexible column (a cause, a path) is cut with "…" before any column
//! it outranks goes; `-o wide` shows every column and fits nothing.

/// How a table is laid out: decided by the command from its flags and the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// The width to fit (`COLUMNS`, else the terminal's); `None`: no limit (a pipe).
    pub width: Option<usize>,
    /// `-o wide`: every column, nothing dropped or cut.
    pub wide: bool,
    /// `--no-headers`: rows only, for scripts.
    pub no_headers: bool,
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its header.
    pub header: &'static str,
    /// When it goes as the width runs out: the highest first; 0 never.
    pub drop: u8,
    /// Cut with "…" down to [`FLEX_MIN`] before columns ranked below it go.
    pub flex: bool,
    /// Numbers: aligned right.
    pub right: bool,
    /// Shown with `-o wide` only.
    pub wide_only: bool,
}

impl Column {
    /// A left-aligned column that goes at rank `drop` (0: never).
    pub const fn new(header: &'static str, drop: u8) -> Column {
        Column { header, drop, flex: false, right: false, wide_only: false }
    }

    /// Aligned right.
    pub const fn right(self) -> Column {
        Column { right: true, ..self }
    }

    /// Cut before it goes.
    pub const fn flex(self) -> Column {
        Column { flex: true, ..self }
    }

    /// With `-o wide` only.
    pub const fn wide(self) -> Column {
        Column { wide_only: true, ..self }
    }
}

/// The narrowest a flexible column is cut to: still enough for "OOM-killed at its…".
pub const FLEX_MIN: usize = 16;

/// Between two columns.
const GAP: usize = 2;

/// `rows` (one cell per column of `columns`) under their headers, fitted as `layout` says.
pub fn render(columns: &[Column], rows: &[Vec<String>], layout: Layout) -> String {
    let len = |s: &str| s.chars().count();
    let natural: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let header = if layout.no_headers { 0 } else { len(c.header) };
            rows.iter().map(|r| r.get(i).map_or(0, |s| len(s))).max().unwrap_or(0).max(header)
        })
        .collect();
    let mut shown: Vec<usize> = (0..columns.len()).filter(|&i| layout.wide || !columns[i].wide_only).collect();
    let mut widths = natural.clone();
    if let (Some(width), false) = (layout.width, layout.wide) {
        let least =
            |i: usize| if columns[i].flex { natural[i].min(FLEX_MIN.max(len(columns[i].header))) } else { natural[i] };
        loop {
            let need: usize = shown.iter().map(|&i| least(i)).sum::<usize>() + GAP * shown.len().saturating_sub(1);
            if need <= width {
                // What is left goes to the flexible columns, up to their natural width.
                let mut spare = width - need;
                for &i in shown.iter().filter(|&&i| columns[i].flex) {
                    let more = (natural[i] - least(i)).min(spare);
                    widths[i] = least(i) + more;
                    spare -= more;
                }
                break;
            }
            let victim = shown.iter().copied().filter(|&i| columns[i].drop > 0).max_by_key(|&i| columns[i].drop);
            match victim {
                Some(v) => shown.retain(|&i| i != v),
                // Only the columns that never go are left: show them whole.
                None => break,
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = (usize, &str)>| {
        let mut text = String::new();
        for (n, (i, cell)) in cells.enumerate() {
            if n > 0 {
                text.push_str(&" ".repeat(GAP));
            }
            let cell = cut(cell, widths[i]);
            let pad = " ".repeat(widths[i].saturating_sub(len(&cell)));
            if columns[i].right { text.extend([pad, cell]) } else { text.extend([cell, pad]) }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    if !layout.no_headers {
        line(&mut shown.iter().map(|&i| (i, columns[i].header)));
    }
    for row in rows {
        line(&mut shown.iter().map(|&i| (i, row.get(i).map_or("", String::as_str))));
    }
    out
}

/// `text` in at most `width` characters, its end replaced by "…" when cut.
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 4] = [
        Column::new("ID", 0),
        Column::new("SIZE", 2).right(),
        Column::new("NOTE", 1).flex(),
        Column::new("X", 3).wide(),
    ];

    fn rows() -> Vec<Vec<String>> {
        let row = |cells: [&str; 4]| cells.map(String::from).to_vec();
        vec![row(["a2", "10", "a note long enough to be cut somewhere", "x"]), row(["a10", "2000", "short", "y"])]
    }

    #[test]
    fn a_pipe_gets_every_default_column_aligned_and_no_borders() {
        let text = render(&COLUMNS, &rows(), Layout::default());
        assert_eq!(
            text,
            "ID   SIZE  NOTE\n\
             a2     10  a note long enough to be cut somewhere\n\
             a10  2000  short\n"
        );
    }

    #[test]
    fn a_short_width_cuts_the_flexible_column_then_drops_by_rank() {
        let text = render(&COLUMNS, &rows(), Layout { width: Some(30), ..Layout::default() });
        assert_eq!(text, "ID   SIZE  NOTE\na2     10  a note long enough…\na10  2000  short\n");
        assert!(text.lines().all(|l| l.chars().count() <= 30));
        let text = render(&COLUMNS, &rows(), Layout { width: Some(22), ..Layout::default() });
        assert_eq!(text, "ID   NOTE\na2   a note long enou…\na10  short\n", "SIZE goes before NOTE");
        let text = render(&COLUMNS, &rows(), Layout { width: Some(3), ..Layout::default() });
        assert_eq!(text, "ID\na2\na10\n", "what never goes stays whole");
    }

    #[test]
    fn wide_shows_every_column_whatever_the_width_and_no_headers_only_rows() {
        let layout = Layout { width: Some(10), wide: true, no_headers: true };
        let text = render(&COLUMNS, &rows(), layout);
        assert_eq!(
            text,
            "a2     10  a note long enough to be cut somewhere  x\na10  2000  short                                   y\n"
        );
    }
}
