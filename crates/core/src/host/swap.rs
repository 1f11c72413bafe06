//! Swap devices: what is active (`<proc>/swaps`), and turning one off or on.

use crate::{Error, Result};
use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// Active swap areas, from `<proc_root>/swaps`.
pub fn active(proc_root: &Path) -> Result<Vec<PathBuf>> {
    let p = proc_root.join("swaps");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
    // "Filename  Type  Size  Used  Priority"; the kernel escapes spaces in names as \040.
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|f| PathBuf::from(f.replace("\\040", " ")))
        .collect())
}

/// `swapoff(2)`. The kernel refuses when the pages in swap do not fit in memory (ENOMEM)
/// or the caller lacks CAP_SYS_ADMIN (EPERM).
pub fn off(device: &Path) -> Result<()> {
    call(device, "turn off swap on", |c| unsafe { libc::swapoff(c) })
}

/// `swapon(2)` with default flags.
pub fn on(device: &Path) -> Result<()> {
    call(device, "turn on swap on", |c| unsafe { libc::swapon(c, 0) })
}

fn call(device: &Path, op: &'static str, f: impl FnOnce(*const libc::c_char) -> i32) -> Result<()> {
    let c = CString::new(device.as_os_str().as_bytes())
        .map_err(|_| Error::Unsupported(format!("{} has a NUL byte", device.display())))?;
    // The closures above are the only callers; each passes the pointer straight to the kernel.
    if f(c.as_ptr()) != 0 {
        return Err(Error::io(op, device, std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_swaps() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            tmp.path().join("swaps"),
            "Filename\tType\tSize\tUsed\tPriority\n/swapfile  file  1048572  0  -2\n/dev/my\\040disk partition 10 0 -3\n",
        )
        .expect("seed");
        assert_eq!(active(tmp.path()).expect("parse"), vec![PathBuf::from("/swapfile"), PathBuf::from("/dev/my disk")]);
    }
}
