//! Letting go of the calling process's code and read-only data before a long sleep.

use std::ffi::{c_int, c_void};

/// Unmaps, from the calling process's page tables, the pages of its code and read-only
/// data: of every loaded object (the program, and a dynamically linked build's libraries),
/// the segments it was loaded with no write permission. Returns the bytes advised.
///
/// Starting a supervisor touches much of fleetctl's and libc's code and constants, and the
/// kernel maps 64 KiB around every fault; the supervisor then sleeps in `poll(2)` for
/// minutes or hours, and would count all of it as resident. `MADV_DONTNEED` on a private
/// file mapping only drops our page-table entries: the next access faults the same bytes
/// back from the page cache. That is safe only for pages never written. The ranges come
/// from the objects' program headers (`dl_iterate_phdr(3)`), as the loader mapped them:
/// - a segment without write permission is never written by the loader, except in an
///   object with text relocations, none of which is released;
/// - what relocation does write, RELRO (the data made read-only after it), lies in a
///   writable segment, never taken, and no range may overlap it;
/// - the vDSO is the kernel's, not a file's: never released.
///
/// A debugger's breakpoint is the one other write such a page can have had: letting go of
/// its page puts the original code back. Finding the same ranges in `/proc/self/maps`, and
/// proving each page unwritten in `/proc/self/pagemap`, cost a third of the whole let-go
/// (docs/decisions.md). The process must be single-threaded: no object may be loaded or
/// unloaded between the look and the advice.
pub fn release_clean_file_pages() -> u64 {
    let Segments { mut ranges, count } = read_only_segments();
    // Nothing is allocated, freed or closed from here on: code that ran after the advice,
    // such as the allocator's, would fault back in and stay.
    let mut released = 0;
    for &(start, end) in coalesce(&mut ranges[..count]) {
        // SAFETY: the range is whole pages of segments loaded read-only from their files,
        // never written (above): dropping them loses nothing, and they fault back unchanged.
        let rc = unsafe { libc::madvise(start as *mut c_void, (end - start) as usize, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += end - start;
        }
    }
    released
}

/// At most this many ranges are released (a static build has three, a dynamic one a few
/// per library).
const MAX_RANGES: usize = 64;

/// The ranges found so far, in an array of the stack: the look allocates nothing.
struct Segments {
    ranges: [(u64, u64); MAX_RANGES],
    count: usize,
}

/// Every loaded object's read-only ranges ([`Object::read_only_ranges`]).
fn read_only_segments() -> Segments {
    let mut found = Segments { ranges: [(0, 0); MAX_RANGES], count: 0 };
    // SAFETY: the callback reads only what the C library hands it for the call's duration
    // and writes only to `found`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each_object), (&raw mut found).cast()) };
    found
}

/// `dl_iterate_phdr`'s callback: adds one object's read-only ranges to the `Segments` at
/// `data`. Returns 0: go on to the next object.
unsafe extern "C" fn each_object(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: the C library passes an `info` valid for the call, and `data` is the
    // `Segments` `release_clean_file_pages` passed it.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Segments>()) };
    let phdrs = match info.dlpi_phdr.is_null() {
        true => &[][..],
        // SAFETY: the loader keeps an object's `dlpi_phnum` program headers while it is loaded.
        false => unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) },
    };
    // SAFETY: a loaded object's dynamic section is mapped where its program header says.
    let text_relocated = unsafe { has_text_relocations(info.dlpi_addr, phdrs) };
    // SAFETY: getauxval only reads the auxiliary vector.
    let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    let object = Object { bias: info.dlpi_addr, phdrs, text_relocated, vdso };
    object.read_only_ranges(crate::size::page_size(), &mut |range| {
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
    let mut entry = (bias + dynamic.p_vaddr) as *const [u64; 2];
    let mut tags = std::iter::from_fn(|| {
        // SAFETY: the dynamic section is an array of (tag, value) pairs ending in DT_NULL,
        // mapped while the object is loaded (the caller's promise).
        let [tag, value] = unsafe { entry.read() };
        // SAFETY: not past DT_NULL: the iterator ends there.
        entry = unsafe { entry.add(1) };
        (tag != DT_NULL).then_some((tag, value))
    });
    tags.any(|(tag, value)| tag == DT_TEXTREL || (tag == DT_FLAGS && value & DF_TEXTREL != 0))
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
    fn read_only_ranges(&self, page: u64, push: &mut dyn FnMut((u64, u64))) {
        let loads = || self.phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        let is_vdso = loads().any(|p| (self.at(p.p_vaddr)..self.at(p.p_vaddr + p.p_memsz)).contains(&self.vdso));
        if self.text_relocated || is_vdso {
            return;
        }
        let relro = self
            .phdrs
            .iter()
            .find(|p| p.p_type == PT_GNU_RELRO)
            .map(|p| (self.at(p.p_vaddr) / page * page, self.at(p.p_vaddr + p.p_memsz).next_multiple_of(page)));
        for p in loads().filter(|p| p.p_flags & libc::PF_W == 0) {
            // Whole pages only, of what was read from the file: a page this segment shares
            // with another, or its zero-filled tail, is not taken.
            let start = self.at(p.p_vaddr).next_multiple_of(page);
            let end = self.at(p.p_vaddr + p.p_filesz) / page * page;
            let overlaps_relro = relro.is_some_and(|(low, high)| start < high && low < end);
            if start < end && !overlaps_relro {
                push((start, end));
            }
        }
    }

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
