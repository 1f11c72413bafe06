//! Tests of letting go of read-only segments: the program-header arithmetic on made-up
//! layouts, and, on this very process, that what it would let go of was never written.

use super::*;
use crate::own_pages::file_ranges;
use std::{fs::File, io::Write, path::Path};

/// Private and not writable, as the maps file says: what the release may take.
fn private_read_only(perms: &str) -> bool {
    perms.len() == 4 && !perms.contains('w') && perms.ends_with('p')
}

/// Whether no page of `start..end` was written.
fn never_written(pagemap: &File, start: u64, end: u64) -> bool {
    !holds_copies(pagemap, (start, end)).expect("read pagemap")
}

fn phdr(p_type: u32, p_flags: u32, p_vaddr: u64, p_filesz: u64, p_memsz: u64) -> libc::Elf64_Phdr {
    libc::Elf64_Phdr {
        p_type,
        p_flags,
        p_offset: p_vaddr,
        p_vaddr,
        p_paddr: p_vaddr,
        p_filesz,
        p_memsz,
        p_align: 0x1000,
    }
}

/// A static-pie's program headers, laid out as fleetctl's are: headers and read-only
/// data, code, more read-only data, then data whose first part is RELRO.
fn static_pie() -> Vec<libc::Elf64_Phdr> {
    let (r, rx, rw) = (libc::PF_R, libc::PF_R | libc::PF_X, libc::PF_R | libc::PF_W);
    vec![
        phdr(libc::PT_LOAD, r, 0, 0x1d000, 0x1d000),
        phdr(libc::PT_LOAD, rx, 0x1d000, 0x2ee000, 0x2ee000),
        phdr(libc::PT_LOAD, r, 0x30b000, 0x7f000, 0x7f000),
        phdr(libc::PT_LOAD, rw, 0x38b100, 0x13000, 0x19000),
        phdr(libc::PT_DYNAMIC, rw, 0x39c000, 0x1a0, 0x1a0),
        phdr(PT_GNU_RELRO, libc::PF_R, 0x38b100, 0x12f00, 0x12f00),
    ]
}

fn ranges(object: &Object) -> Vec<(u64, u64)> {
    ranges_in_pages_of(object, 0x1000)
}

fn ranges_in_pages_of(object: &Object, page_size: u64) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    object.read_only_ranges(page_size, &mut |range| found.push(range));
    found
}

#[test]
fn every_segment_loaded_without_write_permission_is_taken_and_nothing_else() {
    let phdrs = static_pie();
    let base = 0x7f00_0000_0000;
    let object = Object { bias: base, phdrs: &phdrs, text_relocated: false, vdso: 0x7ffd_0000_0000 };
    assert_eq!(
        ranges(&object),
        [(base, base + 0x1d000), (base + 0x1d000, base + 0x30b000), (base + 0x30b000, base + 0x38a000)]
    );
}

#[test]
fn nothing_of_the_vdso_or_of_an_object_with_text_relocations_is_taken() {
    let phdrs = static_pie();
    let base = 0x7f00_0000_0000;
    let relocated = Object { bias: base, phdrs: &phdrs, text_relocated: true, vdso: 0 };
    assert_eq!(ranges(&relocated), []);
    let vdso = Object { bias: base, phdrs: &phdrs, text_relocated: false, vdso: base + 0x1000 };
    assert_eq!(ranges(&vdso), []);
    // What the C library says of an object is believed only if the place it gives holds
    // the object's own headers.
    assert!(vdso.holds(base + 0x40) && vdso.holds(base + 0x3a40ff));
    assert!(!vdso.holds(base + 0x3a4100) && !vdso.holds(0x40));
}

#[test]
fn only_whole_pages_read_from_the_file_are_taken_and_none_on_relro_s() {
    let r = libc::PF_R;
    // On 4 KiB pages.
    let phdrs = [
        // Starts and ends inside pages: the whole pages between.
        phdr(libc::PT_LOAD, r, 0x1800, 0x3000, 0x3000),
        // Its last page holds zero fill past the file's bytes.
        phdr(libc::PT_LOAD, r, 0x10000, 0x1800, 0x4000),
        // Read-only, but on a page RELRO reaches.
        phdr(libc::PT_LOAD, r, 0x20000, 0x2000, 0x2000),
        phdr(PT_GNU_RELRO, r, 0x1f000, 0x1800, 0x1800),
    ];
    let object = Object { bias: 0x40_0000, phdrs: &phdrs, text_relocated: false, vdso: 0 };
    assert_eq!(ranges(&object), [(0x40_2000, 0x40_4000), (0x41_0000, 0x41_1000)]);
    // On 16 KiB pages.
    let phdrs = [
        // 4 KiB aligned: only the whole 16 KiB pages inside.
        phdr(libc::PT_LOAD, r, 0x1000, 0xa000, 0xa000),
        // Nothing read from the file, or less than a page.
        phdr(libc::PT_LOAD, r, 0x10000, 0, 0x1000),
        phdr(libc::PT_LOAD, r, 0x14000, 0x800, 0x800),
        // Starts on the page where RELRO ends: on none of RELRO's pages.
        phdr(PT_GNU_RELRO, r, 0x18000, 0x4000, 0x4000),
        phdr(libc::PT_LOAD, r, 0x1c000, 0x4000, 0x4000),
    ];
    let object = Object { bias: 0, phdrs: &phdrs, text_relocated: false, vdso: 0 };
    assert_eq!(ranges_in_pages_of(&object, 0x4000), [(0x4000, 0x8000), (0x1c000, 0x20000)]);
}

#[test]
fn no_vdso_is_no_vdso_even_for_an_object_loaded_at_zero() {
    let phdrs = static_pie();
    let object = Object { bias: 0, phdrs: &phdrs, text_relocated: false, vdso: 0 };
    assert_eq!(ranges(&object).len(), 3);
}

#[test]
fn a_data_page_this_process_wrote_is_a_copy_and_its_code_is_not() {
    let pagemap = File::open("/proc/self/pagemap").expect("pagemap");
    // Written for certain: a page of our own data (initialized, so the file's until
    // written: copied on write now).
    static mut TOUCHED: [u8; 64] = [7; 64];
    // SAFETY: only this test touches it, through a raw pointer.
    let here = unsafe {
        std::ptr::addr_of_mut!(TOUCHED).write_volatile([1; 64]);
        std::ptr::addr_of!(TOUCHED) as u64
    };
    let page = here & !(crate::size::page_size() - 1);
    assert!(!never_written(&pagemap, page, page + crate::size::page_size()), "a written data page");
    let code = a_data_page_this_process_wrote_is_a_copy_and_its_code_is_not as fn() as usize as u64;
    let Segments { ranges, count, .. } = read_only_segments();
    let &(start, end) = ranges[..count].iter().find(|&&(s, e)| (s..e).contains(&code)).expect("our code's segment");
    assert!(never_written(&pagemap, start, end), "our code");
}

#[test]
fn text_relocations_are_read_from_the_dynamic_section() {
    let dynamic = |entries: &[[u64; 2]]| {
        let phdrs = [phdr(libc::PT_DYNAMIC, libc::PF_R, entries.as_ptr() as u64, 16, 16)];
        // SAFETY: the "dynamic section" is `entries`, which ends in DT_NULL, at bias 0.
        unsafe { has_text_relocations(0, &phdrs) }
    };
    assert!(!dynamic(&[[DT_FLAGS, 0x8], [DT_NULL, 0]]), "DF_BIND_NOW alone");
    assert!(dynamic(&[[DT_FLAGS, 0x8 | DF_TEXTREL], [DT_NULL, 0]]));
    assert!(dynamic(&[[7, 0], [DT_TEXTREL, 0], [DT_NULL, 0]]));
    assert!(!dynamic(&[[DT_NULL, 0], [DT_TEXTREL, 0]]), "nothing past DT_NULL");
    // SAFETY: no PT_DYNAMIC: nothing is read.
    assert!(!unsafe { has_text_relocations(0, &static_pie()[..4]) });
}

#[test]
fn ranges_without_a_gap_between_them_are_released_together() {
    let mut ranges = [(0x1000, 0x2000), (0x2000, 0x5000), (0x5000, 0x6000), (0x8000, 0x9000), (0x9000, 0xa000)];
    assert_eq!(coalesce(&mut ranges), [(0x1000, 0x6000), (0x8000, 0xa000)]);
    assert_eq!(coalesce(&mut []), []);
    let mut apart = [(0x1000, 0x2000), (0x3000, 0x4000)];
    assert_eq!(coalesce(&mut apart), [(0x1000, 0x2000), (0x3000, 0x4000)]);
}

#[test]
fn a_page_copied_on_write_resident_or_swapped_out_is_not_the_files() {
    let (present, swapped, file) = (1u64 << 63, 1u64 << 62, 1u64 << 61);
    assert!(page_is_the_files(0), "never touched");
    assert!(page_is_the_files(present | file | 42), "the file's page, mapped");
    assert!(page_is_the_files(swapped | file | 42), "the file's page, being migrated");
    // RELRO after relocation: an anonymous copy, resident, then swapped out.
    assert!(!page_is_the_files(present | 42));
    assert!(!page_is_the_files(swapped | 7));
}

#[test]
fn every_range_this_process_would_release_is_an_unwritten_read_only_file_mapping() {
    // RELRO, data and anything else written are anonymous copies, which pagemap tells apart
    // from the file's pages: no range the program headers give may hold one.
    let Segments { ranges, count, .. } = read_only_segments();
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let mappings = file_ranges(&maps, private_read_only);
    let pagemap = File::open("/proc/self/pagemap").expect("pagemap");
    for &(start, end) in &ranges[..count] {
        // A segment may span several mappings (the loader maps some in parts): every page
        // of it must be in one.
        let mut at = start;
        while at < end {
            let &(_, to) = mappings.iter().find(|&&(s, e)| (s..e).contains(&at)).unwrap_or_else(|| {
                panic!("{at:#x} of {start:#x}-{end:#x} is in no private read-only file mapping:\n{maps}")
            });
            at = to.min(end);
        }
        assert!(never_written(&pagemap, start, end), "{start:#x}-{end:#x} holds a written page:\n{maps}");
    }
    let code = every_range_this_process_would_release_is_an_unwritten_read_only_file_mapping as fn() as usize as u64;
    assert!(ranges[..count].iter().any(|&(s, e)| (s..e).contains(&code)), "our own code is among them");
    // The proof is not empty: the code running now is present, and the file's.
    let page = code & !(crate::size::page_size() - 1);
    let mut entry = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&pagemap, &mut entry, page / crate::size::page_size() * 8).expect("read");
    let entry = u64::from_ne_bytes(entry);
    assert!(entry & (1 << 63) != 0 && entry & (1 << 61) != 0, "our code's page is present and the file's: {entry:#x}");
}

#[test]
fn releasing_clean_pages_keeps_the_process_working() {
    // Nothing may be loaded or unloaded between the release's look and its advice, and
    // libtest runs other tests in threads of this process: the test runs itself alone, in
    // a process of its own.
    const ALONE: &str = "FLEET_CORE_TEST_RELEASE_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let name = "own_pages::release::tests::releasing_clean_pages_keeps_the_process_working";
        let exe = std::env::current_exe().expect("test binary");
        let run = std::process::Command::new(exe)
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env(ALONE, "1")
            .output()
            .expect("run the test alone");
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success() && out.contains("1 passed"), "{out}{}", String::from_utf8_lossy(&run.stderr));
        let _ = std::io::stderr().write_all(&run.stderr);
        return;
    }
    // A debugger's way into a read-only page: a write through /proc/self/mem, the bytes it
    // holds written back. The segment it is in must stay as it is, copy and all, and every
    // other one be let go of.
    static PROBED: [u64; 4] = [2, 7, 1, 8];
    let page_size = crate::size::page_size();
    let at = std::ptr::addr_of!(PROBED) as u64;
    let probed = at & !(page_size - 1);
    let Segments { ranges, count, .. } = read_only_segments();
    let ranges = &ranges[..count];
    let &segment =
        ranges.iter().find(|&&(s, e)| (s..e).contains(&at)).expect("PROBED is in a segment the let-go takes");
    let others: u64 = ranges.iter().filter(|&&r| r != segment).map(|&(s, e)| e - s).sum();
    let write = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .and_then(|mem| std::os::unix::fs::FileExt::write_all_at(&mem, &2u64.to_ne_bytes(), at));
    if let Err(e) = write {
        // A kernel that allows such writes only to a tracer (proc_mem.force_override) refuses
        // it. Straight to the terminal: the parent passes this process's stderr on.
        let _ = std::io::stderr().write_all(format!("SKIPPED the written-page half: /proc/self/mem: {e}\n").as_bytes());
        assert_eq!(release_clean_file_pages(Path::new("/proc")), others + (segment.1 - segment.0));
        assert_eq!(format!("{:?}", vec![1, 2, 3]), "[1, 2, 3]");
        return;
    }
    let pagemap = File::open("/proc/self/pagemap").expect("pagemap");
    assert!(!never_written(&pagemap, probed, probed + page_size), "the write made a copy");
    let released = release_clean_file_pages(Path::new("/proc"));
    assert_eq!(released, others, "every segment but PROBED's was let go of");
    assert!(!never_written(&pagemap, probed, probed + page_size), "the copy was kept");
    assert_eq!(std::hint::black_box(&PROBED).iter().sum::<u64>(), 18);
    // Code is run on: every page dropped faults back from the page cache.
    assert_eq!(format!("{:?}", vec![1, 2, 3]), "[1, 2, 3]");
}
