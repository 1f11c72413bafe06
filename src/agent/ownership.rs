//! The agent's directories: whose they are for its run, and where in its workspace it starts.

use crate::exit::{Exit, Fail};
use anyhow::{Context, Result};
use nix::{
    dir::Dir,
    fcntl::{AT_FDCWD, OFlag, openat},
    sys::stat::{FileStat, Mode, SFlag, fchmod, fstat},
    unistd::{Gid, Uid, fchownat},
};
use std::{
    ffi::CString,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

/// Makes `dir` and everything under it `uid`:`gid`'s, and `dir` theirs alone (0700).
///
/// The tree may be an earlier agent's, which may still be changing it (an agent of the slot's
/// uid whose supervisor died), so the walk goes by descriptors, never by path: each entry is
/// opened (`O_PATH|O_NOFOLLOW`) from its directory's descriptor and changed through that
/// descriptor, so a directory swapped for a symlink mid-walk is the symlink, changed itself
/// and never followed. It stays on `dir`'s filesystem (a mount inside is left alone), and a
/// non-directory with more than one link is left as it is: another name of the same file
/// may be outside the tree (a hard link to a file of root's, planted where
/// `protected_hardlinks` is off), and the uid the slot's files already have is the slot's.
pub fn make_own(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    let context = || format!("cannot give {} to uid {uid}", dir.display());
    let top = openat(AT_FDCWD, dir, DIRECTORY, Mode::empty()).with_context(context)?;
    chown_tree(top, Uid::from_raw(uid), Gid::from_raw(gid)).with_context(context)
}

/// How a directory is opened to be read: never through a symlink.
const DIRECTORY: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

fn chown_tree(top: OwnedFd, uid: Uid, gid: Gid) -> nix::Result<()> {
    let device = fstat(&top)?.st_dev;
    give(&top, uid, gid)?;
    fchmod(&top, Mode::from_bits_truncate(0o700))?;
    // Depth first, one open directory per level, so a wide tree holds few descriptors.
    let mut stack = vec![(entries(&top)?.into_iter(), top)];
    while let Some((names, parent)) = stack.last_mut() {
        let Some(name) = names.next() else {
            stack.pop();
            continue;
        };
        let entry = match openat(
            &*parent,
            name.as_c_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Gone since the listing: an agent still at work.
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let stat = fstat(&entry)?;
        if stat.st_dev != device {
            continue;
        }
        if is_dir(&stat) {
            // Reopened through its own descriptor: the very directory just checked.
            let sub = openat(&entry, ".", DIRECTORY, Mode::empty())?;
            give(&sub, uid, gid)?;
            let names = entries(&sub)?;
            stack.push((names.into_iter(), sub));
        } else if stat.st_nlink <= 1 {
            give(&entry, uid, gid)?;
        }
    }
    Ok(())
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// Changes the owner of the file `fd` refers to (a symlink itself, when it is one).
fn give(fd: &OwnedFd, uid: Uid, gid: Gid) -> nix::Result<()> {
    fchownat(fd, "", Some(uid), Some(gid), nix::fcntl::AtFlags::AT_EMPTY_PATH)
}

/// The names in directory `dir`, read through a description of its own.
fn entries(dir: &OwnedFd) -> nix::Result<Vec<CString>> {
    let mut listing = Dir::openat(dir, ".", DIRECTORY, Mode::empty())?;
    Ok(listing
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect())
}

/// Whether `who` (the caller itself when `None`) may create files in `dir`, as the kernel
/// decides for that user (mode bits, groups, ACLs): asked by a child that becomes the user
/// and calls access(2), which `spawn` waits for, unless the caller is that user already.
pub fn writable_by(who: Option<&super::identity::Credentials>, dir: &Path) -> std::io::Result<bool> {
    use nix::unistd::{AccessFlags, access};
    // A caller that already is the user (root spawning for `--user root`) gets the child's
    // answer by asking itself: access(2) decides by the real ids and the groups.
    let Some(who) = who.filter(|who| !caller_is(who)) else {
        return Ok(access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_ok());
    };
    let path = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    // SAFETY (both): access(2) on a string made before the clone is all the child does;
    // spawn has installed no signal handler yet.
    unsafe { super::identity::in_child_as(who, || libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0) }
}

/// Whether the caller's real and effective ids and its groups are `who`'s.
fn caller_is(who: &super::identity::Credentials) -> bool {
    use nix::unistd::{getegid, geteuid, getgid, getgroups, getuid};
    let ids = [getuid().as_raw(), geteuid().as_raw(), getgid().as_raw(), getegid().as_raw()];
    if ids != [who.uid, who.uid, who.gid, who.gid] {
        return false;
    }
    let Ok(groups) = getgroups() else { return false };
    // The primary group counts as a member's whether or not it is also listed (initgroups
    // lists it; a login shell's root may not).
    let set = |groups: &mut Vec<u32>| {
        groups.push(who.gid);
        groups.sort_unstable();
        groups.dedup();
    };
    let mut groups: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
    let mut wanted = who.groups.clone();
    set(&mut groups);
    set(&mut wanted);
    groups == wanted
}

/// `--cwd DIR`: relative to `workspace` or absolute inside it, an existing directory once
/// symlinks are resolved. The error is the one line for exit 2.
pub fn resolve_cwd(workspace: &Path, given: &Path) -> Result<PathBuf> {
    let joined = workspace.join(given);
    let inside = |dir: &Path| std::fs::canonicalize(workspace).is_ok_and(|ws| dir.starts_with(ws));
    match std::fs::canonicalize(&joined) {
        Ok(dir) if dir.is_dir() && inside(&dir) => Ok(dir),
        Ok(dir) if dir.is_dir() => Err(Fail::error(
            Exit::Usage,
            format!(
                "--cwd {}: {} is outside the workspace {}; give a directory inside it",
                given.display(),
                dir.display(),
                workspace.display()
            ),
        )),
        _ => Err(Fail::error(
            Exit::Usage,
            format!(
                "--cwd {}: no directory {} in the workspace; create it, or give an existing one",
                given.display(),
                joined.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_is_a_user_only_with_the_same_ids_and_groups() {
        use super::super::identity::Credentials;
        use nix::unistd::{getgid, getgroups, getuid};
        let groups: Vec<u32> = getgroups().expect("groups").iter().map(|g| g.as_raw()).collect();
        let me = Credentials { uid: getuid().as_raw(), gid: getgid().as_raw(), groups };
        assert!(caller_is(&me));
        assert!(!caller_is(&Credentials { gid: me.gid ^ 1, ..me.clone() }), "another group");
        assert!(!caller_is(&Credentials { uid: me.uid ^ 1, ..me.clone() }), "another user");
        let mut more = me.clone();
        let other = (3_999_903..).find(|g| *g != me.gid && !me.groups.contains(g)).expect("a group not ours");
        more.groups.push(other);
        assert!(!caller_is(&more), "more groups");
        let mut listed = me.clone();
        listed.groups.push(me.gid);
        assert!(caller_is(&listed), "the primary group listed too");
    }

    #[test]
    fn cwd_stays_inside_the_workspace() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(ws.join("sub/deeper")).expect("dirs");
        std::fs::write(ws.join("file"), "").expect("file");
        std::os::unix::fs::symlink(tmp.path(), ws.join("escape")).expect("link");
        let real = std::fs::canonicalize(&ws).expect("canonical");
        assert_eq!(resolve_cwd(&ws, Path::new("sub/deeper")).expect("relative"), real.join("sub/deeper"));
        assert_eq!(resolve_cwd(&ws, &ws.join("sub")).expect("absolute inside"), real.join("sub"));
        for (bad, why) in [
            ("..", "outside"),
            ("escape", "outside"),
            ("/", "outside"),
            ("file", "no directory"),
            ("nope", "no directory"),
        ] {
            let err = format!("{:#}", resolve_cwd(&ws, Path::new(bad)).expect_err(bad));
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_tree_becomes_the_users_without_following_links() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let (dir, outside) = (tmp.path().join("slot"), tmp.path().join("outside"));
        std::fs::create_dir_all(dir.join("a/b")).expect("dirs");
        std::fs::write(dir.join("a/b/f"), "x").expect("file");
        std::fs::write(&outside, "").expect("outside");
        std::os::unix::fs::symlink(&outside, dir.join("link")).expect("link");
        make_own(&dir, 3_999_902, 3_999_903).expect("own");
        use std::os::unix::fs::MetadataExt;
        for p in [dir.clone(), dir.join("a/b"), dir.join("a/b/f"), dir.join("link")] {
            let m = std::fs::symlink_metadata(&p).expect("meta");
            assert_eq!((m.uid(), m.gid()), (3_999_902, 3_999_903), "{}", p.display());
        }
        assert_eq!(std::fs::metadata(&dir).expect("meta").mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&outside).expect("meta").uid(), 0, "the link's target is not changed");
    }

    #[test]
    fn a_hard_link_and_a_symlinked_top_are_left_alone() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let (dir, outside) = (tmp.path().join("slot"), tmp.path().join("outside"));
        std::fs::create_dir_all(dir.join("sub")).expect("dirs");
        std::fs::write(&outside, "root's").expect("outside");
        std::fs::hard_link(&outside, dir.join("sub/planted")).expect("hard link");
        make_own(&dir, 3_999_902, 3_999_903).expect("own");
        assert_eq!(std::fs::metadata(&outside).expect("meta").uid(), 0, "another name of the file is outside");
        assert_eq!(std::fs::metadata(dir.join("sub")).expect("meta").uid(), 3_999_902);
        let link = tmp.path().join("link-to-outside-dir");
        std::os::unix::fs::symlink(tmp.path(), &link).expect("link");
        assert!(make_own(&link, 3_999_902, 3_999_903).is_err(), "a symlink is not a slot");
        assert_eq!(std::fs::metadata(tmp.path()).expect("meta").uid(), 0);
    }
}
