//! The calling process's own pages: what a process that sleeps for hours lets go of, and
//! what a guard that must act when memory is short locks in.

use crate::{Error, Result};
use std::{fs::File, os::unix::fs::FileExt, path::Path};

/// Unmaps, from the calling process's page tables, every page of a file mapping that still
/// holds what was read from the file: its code and read-only data. Returns the bytes
/// advised.
///
/// Starting a supervisor touches much of fleetctl's and libc's code and constants, and the
/// kernel maps 64 KiB around every fault; the supervisor then sleeps in `poll(2)` for
/// minutes or hours, and would count all of it as resident. `MADV_DONTNEED` on a private
/// file mapping only drops our page-table entries: the next access faults the same bytes
/// back from the page cache. That is safe only for pages never written, so the mappings
/// are taken from `<proc_root>/self/maps` as they are now, private, not writable and of a
/// file, and one qualifies only when `<proc_root>/self/pagemap` shows none of its pages
/// copied on write, resident or swapped out. That leaves out data,
/// RELRO (written during relocation and then made read-only), pages a debugger patched,
/// and anonymous memory. (`smaps` says the same per mapping, but costs five times the
/// time: it walks every mapping's pages, the allocator's whole arena among them.) The
/// process must be single-threaded: nothing may map or unmap between the reads and the
/// advice.
pub fn release_clean_file_pages(proc_root: &Path) -> Result<u64> {
    let (clean, count) = clean_file_ranges(proc_root)?;
    // Nothing is freed or closed from here on: code that ran after the advice, such as the
    // allocator's, would fault back in and stay.
    let mut released = 0;
    for &(start, end) in &clean[..count] {
        // SAFETY: the range is a whole private file mapping of this process, as mapped now,
        // not writable, and none of its pages was copied on write: every page matches the
        // file, so dropping them loses nothing, and they fault back unchanged.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, (end - start) as usize, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += end - start;
        }
    }
    Ok(released)
}

/// At most this many ranges are released (a static build has four, a dynamic one a few per
/// library).
const MAX_RANGES: usize = 64;

/// The ranges [`release_clean_file_pages`] may release, in an array of the stack, and how
/// many there are.
fn clean_file_ranges(proc_root: &Path) -> Result<([(u64, u64); MAX_RANGES], usize)> {
    let maps_path = proc_root.join("self/maps");
    let maps = std::fs::read_to_string(&maps_path).map_err(|e| Error::io("read", &maps_path, e))?;
    let pagemap_path = proc_root.join("self/pagemap");
    let pagemap = File::open(&pagemap_path).map_err(|e| Error::io("open", &pagemap_path, e))?;
    let (mut clean, mut count) = ([(0, 0); MAX_RANGES], 0);
    for (start, end) in file_ranges(&maps, private_read_only).into_iter().take(MAX_RANGES) {
        if never_written(&pagemap, start, end).map_err(|e| Error::io("read", &pagemap_path, e))? {
            clean[count] = (start, end);
            count += 1;
        }
    }
    Ok((clean, count))
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

/// Private and not writable: the candidates for [`release_clean_file_pages`].
fn private_read_only(perms: &str) -> bool {
    perms.len() == 4 && !perms.contains('w') && perms.ends_with('p')
}

/// Whether no page of `start..end` in this process was copied on write: per `pagemap` (one
/// 64-bit entry per page of the kernel's size), none is swapped out, and every one present
/// is the file's.
fn never_written(pagemap: &File, start: u64, end: u64) -> std::io::Result<bool> {
    let page_size = crate::size::page_size();
    let mut buf = [0u8; 4096];
    let mut page = start / page_size;
    while page < end.div_ceil(page_size) {
        let count = (end.div_ceil(page_size) - page).min(buf.len() as u64 / 8) as usize;
        let bytes = &mut buf[..count * 8];
        pagemap.read_exact_at(bytes, page * 8)?;
        let mut entries = bytes.chunks_exact(8).map(|e| u64::from_ne_bytes(e.try_into().unwrap_or_default()));
        if !entries.all(page_is_the_files) {
            return Ok(false);
        }
        page += count as u64;
    }
    Ok(true)
}

/// One pagemap entry (Documentation/admin-guide/mm/pagemap.rst): not swapped out (bit 62),
/// and either not present (bit 63) or a file page (bit 61), not an anonymous copy.
fn page_is_the_files(entry: u64) -> bool {
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    const FILE: u64 = 1 << 61;
    entry & SWAPPED == 0 && (entry & PRESENT == 0 || entry & FILE != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_read_only_file_mappings_are_candidates() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 123 /usr/bin/fleetctl
55d0a0100000-55d0a0300000 r-xp 00100000 fd:01 123 /usr/bin/fleetctl
55d0a0400000-55d0a0410000 rw-p 00400000 fd:01 123 /usr/bin/fleetctl
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7f0000100000-7f0000200000 r-xp 00028000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000301000 r--s 00000000 fd:01 789 /dev/shm/shared
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(
            file_ranges(maps, private_read_only),
            vec![(0x55d0a0000000, 0x55d0a0100000), (0x55d0a0100000, 0x55d0a0300000), (0x7f0000100000, 0x7f0000200000)]
        );
    }

    #[test]
    fn a_page_copied_on_write_resident_or_swapped_out_is_not_the_files() {
        let (present, swapped, file) = (1u64 << 63, 1u64 << 62, 1u64 << 61);
        assert!(page_is_the_files(0), "never touched");
        assert!(page_is_the_files(present | file | 42), "the file's page, mapped");
        // RELRO after relocation: an anonymous copy, resident, then swapped out.
        assert!(!page_is_the_files(present | 42));
        assert!(!page_is_the_files(swapped | 7));
    }

    #[test]
    fn a_data_page_this_process_wrote_is_not_the_files_and_its_code_is() {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let pagemap = File::open("/proc/self/pagemap").expect("pagemap");
        // Written for certain: a page of our own data (initialized, so the file's until
        // written: copied on write now).
        static mut TOUCHED: [u8; 64] = [7; 64];
        // SAFETY: only this test touches it, through a raw pointer.
        let here = unsafe {
            std::ptr::addr_of_mut!(TOUCHED).write_volatile([1; 64]);
            std::ptr::addr_of!(TOUCHED) as u64
        };
        let page_size = crate::size::page_size();
        let page = here & !(page_size - 1);
        assert!(!never_written(&pagemap, page, page + page_size).expect("read"), "a written data page");
        // The code running now: the file's, as mapped.
        let code = a_data_page_this_process_wrote_is_not_the_files_and_its_code_is as fn() as usize as u64;
        let (start, end) = file_ranges(&maps, private_read_only)
            .into_iter()
            .find(|&(s, e)| (s..e).contains(&code))
            .expect("our code is a private read-only file mapping");
        assert!(never_written(&pagemap, start, end).expect("read"), "our code was never written");
    }

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

    #[test]
    fn releasing_clean_pages_keeps_the_process_working() {
        // Nothing may map or unmap between the release's read of the maps and its advice, and
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
