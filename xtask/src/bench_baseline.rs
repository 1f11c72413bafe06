//! `bench --baseline-rev REV`: a build of fleetctl from this repository's history that the
//! scale run times `status` and `memory` against, on the same fleet, each run interleaved
//! with this tree's, and whose agents' starts it pairs with this tree's (`bench_pair`). This
//! shared host's speed moves by a third within minutes; the ratio to a build measured in the
//! same minutes holds where an absolute figure does not.

use anyhow::{Context, Result, ensure};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The other build, ready to run.
pub struct Baseline {
    /// The revision's short hash, as the rows name it.
    pub name: String,
    /// Its static binary, installed into the bench's directory as `install_copy` does.
    pub bin: PathBuf,
    /// An empty config: an older build refuses keys it does not know, `status` and `memory`
    /// need none, and its paired spawns name their user on the command line.
    pub config: PathBuf,
}

/// Builds `rev` as `cargo xtask dist` builds this tree: its sources exported once into
/// `target/bench-baseline/<hash>` (kept, so the next run only checks them), built there, and
/// installed into `tmp`.
pub fn build(root: &Path, rev: &str, tmp: &Path) -> Result<Baseline> {
    let hash = git(root, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
        .with_context(|| format!("bench: --baseline-rev {rev} is not a commit of this repository"))?;
    let src = root.join("target/bench-baseline").join(&hash);
    if !src.is_dir() {
        // Unpacked beside it and renamed into place whole: an unpack cut short is not taken
        // for the sources next time.
        let partial = src.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)?;
        let tar = src.with_extension("tar");
        git(root, &["archive", "--format=tar", "-o", &tar.to_string_lossy(), &hash])?;
        let unpacked = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&partial).status()?;
        let _ = std::fs::remove_file(&tar);
        ensure!(unpacked.success(), "bench: could not unpack {hash} into {}", partial.display());
        std::fs::rename(&partial, &src)?;
    }
    let built = crate::dist::build(&src).with_context(|| format!("bench: building the baseline {rev}"))?;
    let bin = tmp.join("fleetctl-baseline");
    crate::bench::install_copy(&built, &bin)?;
    let config = tmp.join("baseline.toml");
    std::fs::write(&config, "")?;
    Ok(Baseline { name: hash[..7].to_string(), bin, config })
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git").args(args).current_dir(root).output()?;
    ensure!(out.status.success(), "git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
