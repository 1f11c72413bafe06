//! The agent's directories: whose they are for its run, and where in its workspace it starts.

use crate::exit::{Exit, Fail};
use anyhow::{Context, Result};
use std::{
    os::unix::fs::{PermissionsExt, lchown},
    path::{Path, PathBuf},
};

/// Makes `dir` and everything under it `uid`:`gid`'s, and `dir` theirs alone (0700).
/// Symlinks are changed themselves, never followed: a link an earlier agent left pointing
/// elsewhere must not hand that place over.
pub fn make_own(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    chown_tree(dir, uid, gid).with_context(|| format!("cannot give {} to uid {uid}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (mode 0700)", dir.display()))
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    lchown(dir, Some(uid), Some(gid))?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let entry = entry?;
            let path = entry.path();
            lchown(&path, Some(uid), Some(gid))?;
            if entry.file_type()?.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
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
}
