//! Rendering is pure: the sampler builds the reports (`agent::sample`), these functions turn
//! them into a table or exposition text, and commands print the result. `--json` serializes
//! the same structs the tables are made from.

pub mod columns;
#[cfg(test)]
mod fixtures;
pub mod memory;
pub mod metrics;
pub mod queue;
pub mod relief;
pub mod shell;
pub mod status;

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

/// A table in fleetctl's house style: borders only, fitted to the terminal when there is one.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    // Tests compare whole tables, whatever terminal runs them: as when output is piped.
    #[cfg(test)]
    t.force_no_tty();
    t
}
