//! Reading and writing cgroup interface files. Writes never create files: a file the kernel
//! did not make means its controller is missing, and that is reported as such.

use crate::{Error, Result};
use std::{fs, io, io::Write, path::Path};

/// Reads a whole interface file: open, read, close. `fs::read_to_string` would first stat
/// the file to size its buffer, and cgroup files report size 4096 whatever they hold, so
/// that is a wasted system call on the hottest path of `status` and `memory`.
pub(crate) fn read(path: &Path) -> Result<String> {
    read_file(open_read(path), path)
}

/// Reads an interface file the kernel shows as one record (one `seq_show`: a number, the
/// `key value` files, `memory.pressure`; not a list such as `cgroup.procs`): such a file
/// comes whole in one read when it fits the buffer, so a read shorter than the buffer is its
/// end and the second read that would return 0 is skipped. On `status`'s path that is one
/// system call fewer per file, five per agent.
pub(crate) fn read_record(path: &Path) -> Result<String> {
    read_file_with(open_read(path), path, true)
}

/// Opens `path` for reading through `openat(AT_FDCWD, …)`: musl's `open`, which `File::open`
/// calls, follows every `O_CLOEXEC` open with an `fcntl(F_SETFD)`; its `openat` does not.
pub(crate) fn open_read(path: &Path) -> io::Result<fs::File> {
    use nix::{fcntl::OFlag, sys::stat::Mode};
    nix::fcntl::openat(nix::fcntl::AT_FDCWD, path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map(fs::File::from)
        .map_err(io::Error::from)
}

/// Reads a small file the kernel renders whole for its first `read(2)` (`/proc/<pid>/stat`)
/// into `buf`, in that one read: open, read, close. A file that fills `buf` is refused
/// rather than cut.
pub fn read_once<'b>(path: &Path, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    use std::io::Read;
    let mut file = open_read(path)?;
    let n = loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other?,
        }
    };
    if n == buf.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is longer than expected", path.display())));
    }
    Ok(&buf[..n])
}

/// Reads a whole regular file (an agent's record): `openat`, reads to the end, close; no
/// `fstat` to size the buffer first and no `fcntl`, which `fs::read` adds on musl. It stops
/// early when `whole` says what was read so far is all there is (for a record written whole
/// and renamed into place, that it parses: no prefix of a JSON object is one), so a 1 KiB
/// record takes one read, not a second to find its end.
pub fn read_whole_unless(path: &Path, mut whole: impl FnMut(&[u8]) -> bool) -> io::Result<Vec<u8>> {
    use std::io::Read;
    // Not `File::read_to_end`, which asks `fstat` and `lseek` how much is left first.
    let mut file = open_read(path)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let start = buf.len();
        buf.resize(start + 4096, 0);
        match file.read(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                if n == 0 || whole(&buf) {
                    return Ok(buf);
                }
            }
            Err(e) => {
                buf.truncate(start);
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Reads a file holding one unsigned number.
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    parse_u64(&read_record(path)?, path)
}

/// Reads `key value` lines (memory.events, memory.stat, memory.oom_control, pids.events).
pub(crate) fn read_keyed(path: &Path) -> Result<Vec<(String, u64)>> {
    Ok(parse_keyed(&read_record(path)?))
}

/// A cgroup directory whose files are read by name: by path ([`Dir::at`], for one read), or
/// through the directory held open ([`Dir::open`], for several). `openat(dir, name)`
/// resolves one path component where `open(path)` resolves all of them, and kernfs
/// revalidates and permission-checks each one, so several reads in one directory are cheaper
/// through it. It also skips the
/// `fcntl(F_SETFD)` that musl's `open` adds after every `O_CLOEXEC` open (its `openat` does
/// not).
pub(crate) struct Dir<'a> {
    fd: Option<std::os::fd::OwnedFd>,
    /// A parent directory held open and this directory's name in it ([`Dir::under`]).
    under: Option<(std::os::fd::BorrowedFd<'a>, &'a std::ffi::OsStr)>,
    path: &'a Path,
}

impl<'a> Dir<'a> {
    pub(crate) fn at(path: &'a Path) -> Dir<'a> {
        Dir { fd: None, under: None, path }
    }

    /// The directory `path`, whose parent is held open as `parent`: its files are opened as
    /// `openat(parent, "<name>/<file>")`, two path components walked instead of all of
    /// them, and no descriptor of its own to open and close.
    pub(crate) fn under(parent: std::os::fd::BorrowedFd<'a>, path: &'a Path) -> Dir<'a> {
        match path.file_name() {
            Some(name) => Dir { fd: None, under: Some((parent, name)), path },
            None => Dir::at(path),
        }
    }

    pub(crate) fn open(path: &'a Path) -> Result<Dir<'a>> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())
            .map_err(|e| Error::io("open", path, io::Error::from(e)))?;
        Ok(Dir { fd: Some(fd), under: None, path })
    }

    /// The path of `name` in this directory, for messages.
    pub(crate) fn path(&self, name: &str) -> std::path::PathBuf {
        self.path.join(name)
    }

    /// Reads an interface file of one record ([`read_record`]): every file read by name
    /// here is one.
    pub(crate) fn read(&self, name: &str) -> Result<String> {
        use nix::{fcntl::OFlag, sys::stat::Mode};
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let file = match (&self.fd, self.under) {
            (Some(fd), _) => nix::fcntl::openat(fd, name, flags, Mode::empty()),
            (None, Some((parent, dir))) => nix::fcntl::openat(parent, &Path::new(dir).join(name), flags, Mode::empty()),
            (None, None) => return read_record(&self.path(name)),
        };
        read_file_with(file.map(fs::File::from).map_err(io::Error::from), &self.path(name), true)
    }

    pub(crate) fn read_u64(&self, name: &str) -> Result<u64> {
        parse_u64(&self.read(name)?, &self.path(name))
    }

    pub(crate) fn read_keyed(&self, name: &str) -> Result<Vec<(String, u64)>> {
        Ok(parse_keyed(&self.read(name)?))
    }
}

/// The rest of [`read`], once the file is open (or not).
fn read_file(file: io::Result<fs::File>, path: &Path) -> Result<String> {
    read_file_with(file, path, false)
}

/// Reads `file` to its end; with `one_record`, a short read is the end ([`read_record`]).
fn read_file_with(file: io::Result<fs::File>, path: &Path, one_record: bool) -> Result<String> {
    use std::io::Read;
    let mut file = file.map_err(|e| Error::io("read", path, e))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if one_record && n < chunk.len() => {
                buf.extend_from_slice(&chunk[..n]);
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    String::from_utf8(buf).map_err(|_| Error::Parse { path: path.into(), detail: "not UTF-8".into() })
}

pub(crate) fn parse_u64(text: &str, path: &Path) -> Result<u64> {
    text.trim()
        .parse()
        .map_err(|_| Error::Parse { path: path.into(), detail: format!("expected a number, found '{}'", text.trim()) })
}

/// Parses `key value` lines, skipping any that do not fit.
pub(crate) fn parse_keyed(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Looks up one key of [`parse_keyed`] output.
pub(crate) fn keyed(pairs: &[(String, u64)], key: &str) -> Option<u64> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// Writes `value` into an existing interface file in one `write(2)`, as the kernel expects.
/// `controller` names what provides the file, for the error when it is missing.
pub(crate) fn write(path: &Path, value: &str, controller: &'static str) -> Result<()> {
    let mut file = match fs::OpenOptions::new().write(true).create(false).truncate(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing(path, controller)),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    file.write_all(value.as_bytes()).map_err(|e| Error::io("write", path, e).with_value(value))
}

/// The error for an interface file that is not there.
pub(crate) fn missing(path: &Path, controller: &'static str) -> Error {
    let parent_exists = path.parent().is_some_and(Path::is_dir);
    let fix = if !parent_exists {
        "the cgroup does not exist; create it first (fleetctl cgroup-create)".to_string()
    } else if controller == "memory (swap accounting)" {
        "the kernel does not account swap (boot with swapaccount=1), or pass --swap-max max".to_string()
    } else {
        format!(
            "enable it for the fleet root (add +{} to its parent's cgroup.subtree_control, which `sudo fleetctl setup-host` does)",
            controller.split(' ').next().unwrap_or(controller)
        )
    };
    Error::MissingController { path: path.into(), controller, fix }
}

impl Error {
    /// Adds the value we tried to write to an I/O error's operation, so "invalid argument"
    /// says what was invalid.
    fn with_value(self, value: &str) -> Error {
        match self {
            Error::Io { path, source, .. } if source.kind() == io::ErrorKind::InvalidInput => Error::Io {
                op: "write",
                path: path.with_file_name(format!(
                    "{} (value '{}')",
                    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    value.trim()
                )),
                source,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        let pairs = parse_keyed("low 0\nhigh 3\nmax 12\noom 1\noom_kill 1\nbroken\n");
        assert_eq!(keyed(&pairs, "high"), Some(3));
        assert_eq!(keyed(&pairs, "oom_kill"), Some(1));
        assert_eq!(keyed(&pairs, "nope"), None);
    }

    #[test]
    fn whole_files_and_one_read_files_are_read_as_they_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("record");
        let text: String = (0..3000).map(|i| format!("{i}\n")).collect();
        fs::write(&path, &text).expect("seed");
        assert_eq!(read_whole_unless(&path, |_| false).expect("read"), text.as_bytes(), "past one 4 KiB read");
        let reads = std::cell::Cell::new(0);
        let first = read_whole_unless(&path, |_| {
            reads.set(reads.get() + 1);
            true
        });
        assert_eq!((first.expect("read").len(), reads.get()), (4096, 1), "stops where told");
        let mut buf = [0u8; 64];
        fs::write(&path, "12 (x) S 1\n").expect("seed");
        assert_eq!(read_once(&path, &mut buf).expect("read"), b"12 (x) S 1\n");
        fs::write(&path, [b'x'; 64]).expect("seed");
        assert!(read_once(&path, &mut buf).is_err(), "a file that fills the buffer may be cut");
        assert_eq!(
            read_whole_unless(&dir.path().join("missing"), |_| false).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn writes_never_create_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("memory.max");
        let err = write(&path, "4096", "memory").unwrap_err();
        assert!(matches!(err, Error::MissingController { controller: "memory", .. }), "{err}");
        assert!(!path.exists(), "a write must not create the file");
        assert!(err.to_string().contains("subtree_control"), "{err}");
    }

    #[test]
    fn writes_existing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pids.max");
        fs::write(&path, "max\n").expect("seed");
        write(&path, "512", "pids").expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "512");
    }
}
