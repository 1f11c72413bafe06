//! A writer for the cpio "newc" format, the one the kernel unpacks as an initramfs.
//!
//! Written here rather than piped through cpio(1): entries come straight from the host's files
//! under the names the guest needs, `/dev/console` is made without root (no mknod), and the
//! output is the same bytes for the same inputs (owner root, time zero). The format is the
//! kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`; archives can be
//! concatenated, which lets a cached base and a per-run payload be joined without repacking.

use std::collections::BTreeSet;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// One archive being built in memory; paths are relative to the guest's `/` (no leading slash).
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    dirs: BTreeSet<String>,
    next_inode: u32,
}

impl Archive {
    /// A directory and any parents not yet in this archive.
    pub fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_string());
        self.entry(path, S_IFDIR | 0o755, 2, &[], (0, 0));
    }

    /// A regular file with `permissions` (e.g. 0o755), its parent directories made first:
    /// the kernel does not create them.
    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) {
        let path = path.trim_start_matches('/');
        self.parents(path);
        self.entry(path, S_IFREG | (permissions & 0o7777), 1, data, (0, 0));
    }

    /// A character device node, such as `dev/console` (5, 1).
    pub fn char_device(&mut self, path: &str, permissions: u32, major: u32, minor: u32) {
        let path = path.trim_start_matches('/');
        self.parents(path);
        self.entry(path, S_IFCHR | (permissions & 0o7777), 1, &[], (major, minor));
    }

    /// The archive's bytes, closed by the trailer entry.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, 1, &[], (0, 0));
        self.bytes
    }

    fn parents(&mut self, path: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
    }

    fn entry(&mut self, name: &str, mode: u32, links: u32, data: &[u8], (rdev_major, rdev_minor): (u32, u32)) {
        self.next_inode += 1;
        let size = u32::try_from(data.len()).expect("a cpio newc entry holds at most 4 GiB");
        let name_size = u32::try_from(name.len() + 1).expect("a short path");
        let inode = if name == TRAILER { 0 } else { self.next_inode };
        // inode, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check: thirteen fields of eight hex digits each.
        let fields = [inode, mode, 0, 0, links, 0, size, 0, 0, rdev_major, rdev_minor, name_size, 0];
        self.bytes.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Header plus name, and the data, each end on a four-byte boundary.
    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, rdev, data) of one entry.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Each entry but the trailer, read back as the kernel reads them.
    fn entries(mut bytes: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(offset % 4, 0, "entries start on a four-byte boundary");
            assert_eq!(&bytes[..6], MAGIC.as_bytes());
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap()
            };
            let (mode, size, rdev, name_size) =
                (field(1), field(6) as usize, (field(9), field(10)), field(11) as usize);
            let name = String::from_utf8(bytes[110..110 + name_size - 1].to_vec()).unwrap();
            assert_eq!(bytes[110 + name_size - 1], 0, "names end with NUL");
            let data_at = (110 + name_size).next_multiple_of(4);
            let next = (data_at + size).next_multiple_of(4);
            if name == TRAILER {
                assert_eq!(bytes.len(), next, "nothing after the trailer");
                return out;
            }
            out.push((name, mode, rdev, bytes[data_at..data_at + size].to_vec()));
            bytes = &bytes[next..];
            offset += next;
        }
    }

    #[test]
    fn files_come_after_their_parent_directories_each_made_once() {
        let mut archive = Archive::default();
        archive.file("/lib/x86_64-linux-gnu/libc.so.6", 0o755, b"elf");
        archive.file("lib/x86_64-linux-gnu/libgcc_s.so.1", 0o644, b"12345");
        archive.dir("lib");
        let read = entries(&archive.finish());
        let names: Vec<&str> = read.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["lib", "lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libgcc_s.so.1"]
        );
        assert_eq!(read[0].1, S_IFDIR | 0o755);
        assert_eq!((read[2].1, read[2].3.as_slice()), (S_IFREG | 0o755, b"elf".as_slice()));
        assert_eq!((read[3].1, read[3].3.as_slice()), (S_IFREG | 0o644, b"12345".as_slice()));
    }

    #[test]
    fn a_device_node_carries_its_numbers_and_no_data() {
        let mut archive = Archive::default();
        archive.char_device("dev/console", 0o600, 5, 1);
        let read = entries(&archive.finish());
        assert_eq!(read.len(), 2);
        assert_eq!((read[1].0.as_str(), read[1].1, read[1].2), ("dev/console", S_IFCHR | 0o600, (5, 1)));
        assert!(read[1].3.is_empty());
    }

    #[test]
    fn an_empty_archive_is_just_the_trailer_and_archives_concatenate_on_a_boundary() {
        let empty = Archive::default().finish();
        assert!(entries(&empty).is_empty());
        assert_eq!(empty.len() % 4, 0, "a second archive appended to this one starts aligned");
    }
}
