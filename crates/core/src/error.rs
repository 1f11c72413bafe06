//! The one error type of the core crate: every variant says which file and which operation.

use std::{io, path::PathBuf};

/// A failure in core, carrying the path and the operation so the binary can print one clear
/// line without adding context of its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on a path failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What we tried to do: "read", "write", "create", "remove" ...
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A cgroup interface file the kernel should have made is missing: the controller is not
    /// enabled (or not built) for that cgroup. Writes never create files, so this is an error.
    #[error("{} is missing: the {controller} controller is not available there; {fix}", path.display())]
    MissingController {
        /// The interface file we expected.
        path: PathBuf,
        /// The controller that provides it.
        controller: &'static str,
        /// What the operator can do about it.
        fix: String,
    },
    /// A kernel or state file did not have the shape we expected.
    #[error("cannot parse {}: {detail}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// The host lacks something fleetctl needs.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// Wraps an [`io::Error`] with the operation and path it came from.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    /// The OS error number underneath, if this is an I/O failure.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The `io::ErrorKind` underneath, if this is an I/O failure.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// Whether the cgroup whose file failed is gone: removed, or being removed this instant.
    pub fn cgroup_gone(&self) -> bool {
        matches!(self, Error::Io { source, .. } if cgroup_gone(source))
    }
}

/// Whether a cgroup file's error means the cgroup is gone: removed (not found), or being
/// removed this instant (kernfs answers ENODEV). A supervisor removes its agent's cgroup the
/// moment the last process ends, so whoever else looks may find it so.
pub(crate) fn cgroup_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// Core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
