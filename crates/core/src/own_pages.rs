//! The calling process's own pages: what a process that sleeps for hours lets go of, and
//! what a guard that must act when memory is short locks in.

mod release;

pub use release::release_clean_file_pages;

use crate::{Error, Result};
use std::path::Path;

/// Locks the calling process's file-backed mappings (its code and data, and on a dynamically
/// linked build its libraries') into memory, faulting every page in. Returns the bytes
/// locked.
///
/// For a guard that must act when memory is short: its kill path may not have run yet, and
/// must not wait on the disk then. `mlockall(MCL_CURRENT)` would do this too, but would also
/// fill what the allocator has only reserved (mimalloc reserves its arena up front).
pub fn lock_file_pages(proc_root: &Path) -> Result<u64> {
    let path = proc_root.join("self/maps");
    let maps = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let mut locked = 0;
    for (start, end) in file_ranges(&maps, |_| true) {
        // SAFETY: mlock(2) only pins the pages of a range this process has mapped.
        if unsafe { libc::mlock(start as *const libc::c_void, (end - start) as usize) } == 0 {
            locked += end - start;
        }
    }
    Ok(locked)
}

/// One line of a maps file: its range, and whether it is a file's
/// (a path, not `[vdso]` or anonymous) and how it is mapped (`r-xp`, ...).
fn mapping(line: &str) -> Option<(u64, u64, &str, bool)> {
    let mut fields = line.split_whitespace();
    let (range, perms) = (fields.next()?, fields.next()?);
    let (start, end) = range.split_once('-')?;
    let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
    let is_file = fields.nth(3).is_some_and(|path| path.starts_with('/'));
    Some((start, end, perms, is_file))
}

/// The file-backed ranges of a maps file whose permissions (`r-xp`, ...) pass `keep`.
fn file_ranges(maps: &str, keep: impl Fn(&str) -> bool) -> Vec<(u64, u64)> {
    maps.lines()
        .filter_map(mapping)
        .filter(|&(_, _, perms, is_file)| is_file && keep(perms))
        .map(|(start, end, ..)| (start, end))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_mapping_is_locked() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 123 /usr/bin/fleetctl
55d0a0400000-55d0a0410000 rw-p 00400000 fd:01 123 /usr/bin/fleetctl
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(
            file_ranges(maps, |_| true),
            vec![(0x55d0a0000000, 0x55d0a0100000), (0x55d0a0400000, 0x55d0a0410000)]
        );
    }
}
