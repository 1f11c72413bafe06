//! Letting go of the calling process's code and read-only data before a long sleep.

use std::{
    ffi::{c_int, c_void},
    fs::File,
    os::unix::fs::FileExt,
    path::Path,
};

/// Unmaps, from the calling process's page tables, the pages of its code and read-only
/// data: of every loaded object (the program, and a dynamically linked build's libraries),
/// the segments it was loaded with no write permission, except any that holds a page
/// written since. Returns the bytes advised.
///
/// Starting a supervisor touches much of fleetctl's and libc's code and constants, and the
/// kernel maps 64 KiB around every fault; the supervisor then sleeps in `poll(2)` for
/// minutes or hours, and would count all of it as resident. `MADV_DONTNEED` on a private
/// file mapping only drops our page-table entries: the next access faults the same bytes
/// back from the page cache. That is safe only for pages never written. The ranges come
/// from the objects' program headers (`dl_iterate_phdr(3)`), as the loader mapped them:
/// - the loader writes no whole page of a segment without write permission, except in an
///   object with text relocations, none of which is released (glibc's zeroes the tail of
///   a segment's last page past its file's bytes: only whole pages of those bytes count);
/// - what relocation does write, RELRO (the data made read-only after it), lies in a
///   writable segment, never taken, and no range may overlap it;
/// - the vDSO is the kernel's, not a file's: never released.
///
/// What else writes such a page makes it an anonymous copy: a debugger's breakpoint, a
/// uprobe (perf, bpftrace), a write through `/proc/<pid>/mem`. Dropping it would quietly
/// take the breakpoint or the probe away, so a segment holding one is kept
/// (`<proc_root>/self/pagemap` tells; one set in the microseconds between that look and
/// the advice is lost, and without pagemap nothing is let go of). The process must be
/// single-threaded: no object may be loaded or unloaded between the look and the advice.
pub fn release_clean_file_pages(proc_root: &Path) -> u64 {
    let Segments { mut ranges, count, .. } = read_only_segments();
    let mut kept = 0;
    {
        let Ok(pagemap) = File::open(proc_root.join("self/pagemap")) else { return 0 };
        for i in 0..count {
            if !holds_copies(&pagemap, ranges[i]).unwrap_or(true) {
                ranges[kept] = ranges[i];
                kept += 1;
            }
        }
    }
    // Nothing is allocated, freed or closed from here on: code that ran after the advice,
    // such as the allocator's, would fault back in and stay.
    let mut released = 0;
    for &(start, end) in coalesce(&mut ranges[..kept]) {
        // SAFETY: the range is whole pages of segments loaded read-only from their files,
        // none written since (above): dropping them loses nothing, and they fault back
        // unchanged.
        let rc = unsafe { libc::madvise(start as *mut c_void, (end - start) as usize, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += end - start;
        }
    }
    released
}

/// Whether any page of `start..end` in this process is an anonymous copy of the file's (a
/// written page, resident or swapped out), per its entry in `pagemap`
/// (Documentation/admin-guide/mm/pagemap.rst). Linux 6.7's `PAGEMAP_SCAN`, which stops at
/// the first such page, cost the supervisor's start about as much here (3.1 % of its CPU
/// against 3.7 %), and older kernels lack it.
fn holds_copies(pagemap: &File, (start, end): (u64, u64)) -> std::io::Result<bool> {
    let page_size = crate::size::page_size();
    let mut buf = [0u8; 4096];
    let mut page = start / page_size;
    while page < end.div_ceil(page_size) {
        let count = (end.div_ceil(page_size) - page).min(buf.len() as u64 / 8) as usize;
        let bytes = &mut buf[..count * 8];
        pagemap.read_exact_at(bytes, page * 8)?;
        let mut entries = bytes.chunks_exact(8).map(|e| u64::from_ne_bytes(e.try_into().unwrap_or_default()));
        if !entries.all(page_is_the_files) {
            return Ok(true);
        }
        page += count as u64;
    }
    Ok(false)
}

/// One pagemap entry: not mapped at all, or the file's page (bit 61), present (bit 63) or
/// not (bit 62: swapped out, or, a file's page, being migrated), and not an anonymous copy.
fn page_is_the_files(entry: u64) -> bool {
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    const FILE: u64 = 1 << 61;
    entry & (PRESENT | SWAPPED) == 0 || entry & FILE != 0
}

/// At most this many ranges are released (a static build has three, a dynamic one a few
/// per library); any past them stay resident.
const MAX_RANGES: usize = 64;

/// The ranges found so far, in an array of the stack: the look allocates nothing.
struct Segments {
    ranges: [(u64, u64); MAX_RANGES],
    count: usize,
    /// Where the kernel mapped the vDSO (0: none).
    vdso: u64,
    page_size: u64,
}

/// Every loaded object's read-only ranges ([`Object::read_only_ranges`]).
fn read_only_segments() -> Segments {
    // SAFETY: getauxval only reads the auxiliary vector.
    let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    let mut found = Segments { ranges: [(0, 0); MAX_RANGES], count: 0, vdso, page_size: crate::size::page_size() };
    // SAFETY: the callback reads only what the C library hands it for the call's duration
    // and writes only to `found`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each_object), (&raw mut found).cast()) };
    found
}

/// `dl_iterate_phdr`'s callback: adds one object's read-only ranges to the `Segments` at
/// `data`. Returns 0: go on to the next object.
unsafe extern "C" fn each_object(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: the C library passes an `info` valid for the call, and `data` is the
    // `Segments` `read_only_segments` passed it.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Segments>()) };
    // `dlpi_phdr` is an `Elf64_Phdr` pointer on 64-bit targets, the only ones fleetctl has.
    let phdrs = match info.dlpi_phdr.is_null() {
        true => &[][..],
        // SAFETY: the loader keeps an object's `dlpi_phnum` program headers while it is loaded.
        false => unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) },
    };
    let mut object = Object { bias: info.dlpi_addr, phdrs, text_relocated: false, vdso: found.vdso };
    // Where the C library says the object is must hold its own program headers (static
    // musl finds the program's place without a PT_PHDR): else nothing of it is read or taken.
    if !object.holds(info.dlpi_phdr as u64) {
        return 0;
    }
    // SAFETY: the object is loaded where its headers say (just checked), so its dynamic
    // section is mapped where its program header puts it.
    object.text_relocated = unsafe { has_text_relocations(info.dlpi_addr, phdrs) };
    object.read_only_ranges(found.page_size, &mut |range| {
        if let Some(slot) = found.ranges.get_mut(found.count) {
            *slot = range;
            found.count += 1;
        }
    });
    0
}

/// Whether the object loaded at `bias` with these program headers has text relocations
/// (`DT_TEXTREL`, or `DF_TEXTREL` in `DT_FLAGS`): the loader wrote into its code.
///
/// # Safety
/// The object must be loaded: its `PT_DYNAMIC` segment is read in place.
unsafe fn has_text_relocations(bias: u64, phdrs: &[libc::Elf64_Phdr]) -> bool {
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else { return false };
    let mut entry = bias.wrapping_add(dynamic.p_vaddr) as *const [u64; 2];
    loop {
        // SAFETY: the dynamic section is an array of (tag, value) pairs ending in DT_NULL,
        // mapped while the object is loaded (the caller's promise); `entry` is at most at
        // that last pair.
        let [tag, value] = unsafe { entry.read() };
        match tag {
            DT_NULL => return false,
            DT_TEXTREL => return true,
            DT_FLAGS if value & DF_TEXTREL != 0 => return true,
            // SAFETY: this pair was not DT_NULL, so another follows.
            _ => entry = unsafe { entry.add(1) },
        }
    }
}

const DT_NULL: u64 = 0;
const DT_TEXTREL: u64 = 22;
const DT_FLAGS: u64 = 30;
const DF_TEXTREL: u64 = 0x4;

/// One loaded object, as `dl_iterate_phdr` describes it.
struct Object<'a> {
    /// Where it was loaded: its segments' addresses are this plus their `p_vaddr`.
    bias: u64,
    phdrs: &'a [libc::Elf64_Phdr],
    text_relocated: bool,
    /// Where the kernel mapped the vDSO (0: none).
    vdso: u64,
}

impl Object<'_> {
    /// Hands `push` every whole page of this object's read-only segments, as `(start, end)`,
    /// unless the object is the vDSO or has text relocations; a segment that overlaps
    /// RELRO's pages gives none.
    fn read_only_ranges(&self, page_size: u64, push: &mut dyn FnMut((u64, u64))) {
        let loads = || self.phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        let is_vdso = self.vdso != 0 && self.holds(self.vdso);
        if self.text_relocated || is_vdso {
            return;
        }
        let relro = self.phdrs.iter().find(|p| p.p_type == PT_GNU_RELRO).map(|p| {
            (self.at(p.p_vaddr) / page_size * page_size, self.at(p.p_vaddr + p.p_memsz).next_multiple_of(page_size))
        });
        for p in loads().filter(|p| p.p_flags & libc::PF_W == 0) {
            // Whole pages only, of what was read from the file: a page this segment shares
            // with another, or its zero-filled tail, is not taken.
            let start = self.at(p.p_vaddr).next_multiple_of(page_size);
            let end = self.at(p.p_vaddr + p.p_filesz) / page_size * page_size;
            let overlaps_relro = relro.is_some_and(|(low, high)| start < high && low < end);
            if start < end && !overlaps_relro {
                push((start, end));
            }
        }
    }

    /// Whether `address` is in one of this object's loaded segments.
    fn holds(&self, address: u64) -> bool {
        let mut loads = self.phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        loads.any(|p| (self.at(p.p_vaddr)..self.at(p.p_vaddr + p.p_memsz)).contains(&address))
    }

    /// Where `vaddr` of this object is in memory.
    fn at(&self, vaddr: u64) -> u64 {
        self.bias.wrapping_add(vaddr)
    }
}

/// `PT_GNU_RELRO` (libc has it only for some targets).
const PT_GNU_RELRO: u32 = 0x6474_e552;

/// Merges, in place, ranges that follow each other without a gap (a binary's code and its
/// read-only data), and returns the merged ones: one madvise(2) for each. Every call ends
/// in a flush of this process's TLB entries, which also interrupts the other CPUs it ran on
/// lately.
fn coalesce(ranges: &mut [(u64, u64)]) -> &[(u64, u64)] {
    let mut merged = 0;
    for i in 0..ranges.len() {
        if merged > 0 && ranges[merged - 1].1 == ranges[i].0 {
            ranges[merged - 1].1 = ranges[i].1;
        } else {
            ranges[merged] = ranges[i];
            merged += 1;
        }
    }
    &ranges[..merged]
}

#[cfg(test)]
#[path = "release_tests.rs"]
mod tests;
