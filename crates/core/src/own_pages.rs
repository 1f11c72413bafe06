//! The calling process's own pages: what a process that sleeps for hours lets go of, and
//! what a guard that must act when memory is short locks in.

use crate::{Error, Result};
use std::{
    io::{BufRead, BufReader},
    path::Path,
};

/// Unmaps, from the calling process's page tables, every page of a file mapping that still
/// holds what was read from the file: its code and read-only data. Returns the bytes
/// advised.
///
/// Starting a supervisor touches much of fleetctl's and libc's code and constants, and the
/// kernel maps 64 KiB around every fault; the supervisor then sleeps in `poll(2)` for
/// minutes or hours, and would count all of it as resident. `MADV_DONTNEED` on a private
/// file mapping only drops our page-table entries: the next access faults the same bytes
/// back from the page cache. That is safe only for pages never written, so the mappings
/// are taken from `<proc_root>/self/smaps` as they are now, and only private ones that are
/// not writable and hold no page copied on write, resident or swapped out, qualify. That
/// leaves out data, RELRO (written during relocation and then made read-only), pages a
/// debugger patched, and anonymous memory. The process must be single-threaded: nothing
/// may map or unmap between the read and the advice.
pub fn release_clean_file_pages(proc_root: &Path) -> Result<u64> {
    let path = proc_root.join("self/smaps");
    let file = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    // Read line by line: the whole file is some 25 KiB, which the heap would keep resident.
    let ranges = clean_file_ranges(BufReader::with_capacity(4096, file)).map_err(|e| Error::io("read", &path, e))?;
    let mut released = 0;
    for (start, end) in ranges {
        // SAFETY: the range is a whole private file mapping of this process, as mapped now,
        // never writable and without an anonymous page, so every page matches the file:
        // dropping them loses nothing, and they fault back unchanged.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, (end - start) as usize, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += end - start;
        }
    }
    Ok(released)
}

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
    for (start, end) in file_ranges(&maps) {
        // SAFETY: mlock(2) only pins the pages of a range this process has mapped.
        if unsafe { libc::mlock(start as *const libc::c_void, (end - start) as usize) } == 0 {
            locked += end - start;
        }
    }
    Ok(locked)
}

/// One mapping's header line of a maps or smaps file: its range, and whether it is a file's
/// (a path, not `[vdso]` or anonymous) and how it is mapped (`r-xp`, ...).
fn mapping(line: &str) -> Option<(u64, u64, &str, bool)> {
    let mut fields = line.split_whitespace();
    let (range, perms) = (fields.next()?, fields.next()?);
    let (start, end) = range.split_once('-')?;
    let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
    let is_file = fields.nth(3).is_some_and(|path| path.starts_with('/'));
    Some((start, end, perms, is_file))
}

/// The file-backed ranges of a maps file.
fn file_ranges(maps: &str) -> Vec<(u64, u64)> {
    maps.lines().filter_map(mapping).filter(|&(.., is_file)| is_file).map(|(start, end, ..)| (start, end)).collect()
}

/// The ranges of an smaps file whose pages all match their file: private file mappings, not
/// writable, whose `Anonymous:` and `Swap:` lines both say 0 kB. A page copied on write
/// counts as anonymous while resident and as swap once swapped out (a relocated RELRO page
/// of a supervisor asleep for hours, on a host with swap), so both must be nothing. A block
/// that lacks either line does not qualify.
fn clean_file_ranges(mut smaps: impl BufRead) -> std::io::Result<Vec<(u64, u64)>> {
    /// A candidate mapping, and which of its two counts were seen at 0 kB so far.
    struct Block {
        range: (u64, u64),
        anonymous_none: bool,
        swap_none: bool,
    }
    let close = |block: Option<Block>, clean: &mut Vec<(u64, u64)>| {
        if let Some(b) = block.filter(|b| b.anonymous_none && b.swap_none) {
            clean.push(b.range);
        }
    };
    let (mut clean, mut block, mut line) = (Vec::new(), None::<Block>, String::new());
    while {
        line.clear();
        smaps.read_line(&mut line)? > 0
    } {
        let line = line.trim_end();
        let none = |value: &str| value.trim() == "0 kB";
        if let (Some(value), Some(b)) = (line.strip_prefix("Anonymous:"), block.as_mut()) {
            b.anonymous_none = none(value);
        } else if let (Some(value), Some(b)) = (line.strip_prefix("Swap:"), block.as_mut()) {
            b.swap_none = none(value);
        } else if let Some((start, end, perms, is_file)) = mapping(line) {
            close(block.take(), &mut clean);
            let private_read_only = perms.len() == 4 && !perms.contains('w') && perms.ends_with('p');
            block = (is_file && private_read_only).then_some(Block {
                range: (start, end),
                anonymous_none: false,
                swap_none: false,
            });
        }
    }
    close(block, &mut clean);
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An smaps block: its header line, some counts, and its `Anonymous:` and `Swap:` lines.
    fn block_with(header: &str, anonymous_kb: u64, swap_kb: u64) -> String {
        format!(
            "{header}\nSize:                100 kB\nRss:                  40 kB\nAnonymous:      {anonymous_kb:>8} kB\nSwap:           {swap_kb:>8} kB\nVmFlags: rd ex mr mw me\n"
        )
    }

    fn block(header: &str, anonymous_kb: u64) -> String {
        block_with(header, anonymous_kb, 0)
    }

    #[test]
    fn only_private_read_only_file_mappings_without_copied_pages_are_released() {
        let smaps = [
            block("55d0a0000000-55d0a0100000 r--p 00000000 fd:01 123 /usr/bin/fleetctl", 0),
            block("55d0a0100000-55d0a0300000 r-xp 00100000 fd:01 123 /usr/bin/fleetctl", 0),
            // RELRO: written during relocation, then made read-only; resident, then swapped out.
            block("55d0a0300000-55d0a0310000 r--p 00300000 fd:01 123 /usr/bin/fleetctl", 8),
            block_with("55d0a0310000-55d0a0320000 r--p 00310000 fd:01 123 /usr/bin/fleetctl", 0, 8),
            block("55d0a0400000-55d0a0410000 rw-p 00400000 fd:01 123 /usr/bin/fleetctl", 0),
            block("7f0000000000-7f0000021000 rw-p 00000000 00:00 0 ", 0),
            block("7f0000100000-7f0000200000 r-xp 00028000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6", 0),
            block("7f0000300000-7f0000301000 r--s 00000000 fd:01 789 /dev/shm/shared", 0),
            block("7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]", 0),
        ]
        .concat();
        assert_eq!(
            clean_file_ranges(smaps.as_bytes()).unwrap(),
            vec![(0x55d0a0000000, 0x55d0a0100000), (0x55d0a0100000, 0x55d0a0300000), (0x7f0000100000, 0x7f0000200000)]
        );
        // A kernel whose smaps does not count anonymous or swapped pages: nothing is known clean.
        let header = "55d0a0100000-55d0a0300000 r-xp 00100000 fd:01 123 /usr/bin/fleetctl\n";
        for counts in ["Rss: 40 kB\n", "Anonymous: 0 kB\n", "Swap: 0 kB\n"] {
            assert_eq!(clean_file_ranges(format!("{header}{counts}").as_bytes()).unwrap(), vec![], "{counts}");
        }
    }

    #[test]
    fn every_file_mapping_is_locked() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 123 /usr/bin/fleetctl
55d0a0400000-55d0a0410000 rw-p 00400000 fd:01 123 /usr/bin/fleetctl
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(file_ranges(maps), vec![(0x55d0a0000000, 0x55d0a0100000), (0x55d0a0400000, 0x55d0a0410000)]);
    }

    #[test]
    fn releasing_clean_pages_keeps_the_process_working() {
        // Nothing may map or unmap between the release's read of smaps and its advice, and
        // libtest runs other tests in threads of this process: the test runs itself alone,
        // in a process of its own.
        const ALONE: &str = "FLEET_CORE_TEST_RELEASE_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let name = "own_pages::tests::releasing_clean_pages_keeps_the_process_working";
            let exe = std::env::current_exe().expect("test binary");
            let run = std::process::Command::new(exe)
                .args(["--exact", name, "--test-threads=1", "--nocapture"])
                .env(ALONE, "1")
                .output()
                .expect("run the test alone");
            let out = String::from_utf8_lossy(&run.stdout);
            assert!(run.status.success() && out.contains("1 passed"), "{out}{}", String::from_utf8_lossy(&run.stderr));
            return;
        }
        static TABLE: [u64; 4] = [3, 1, 4, 1];
        let released = release_clean_file_pages(Path::new("/proc")).expect("release");
        assert!(released > 0);
        // Code and constants are read on: every page we dropped faults back from the page cache.
        assert_eq!(format!("{:?}", vec![1, 2, 3]), "[1, 2, 3]");
        assert_eq!(std::hint::black_box(&TABLE).iter().sum::<u64>(), 9);
    }
}
