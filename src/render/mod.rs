//! Rendering is pure: commands build report structs, these functions turn them into a table
//! or JSON, and commands print the result. `--json` and the table come from the same structs.

pub mod memory;
pub mod metrics;
pub mod relief;
pub mod status;

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

/// A table in fleetctl's house style: borders only, fitted to the terminal when there is one.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    t
}
