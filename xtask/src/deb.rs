//! `cargo xtask deb`: the Debian package hosts install, `target/deb/fleetctl_<version>_amd64.deb`.
//!
//! The static musl binary (`dist.rs`), the watcher's unit (`packaging/fleetctl.service` with
//! its `@FLEETCTL@` made `/usr/bin/fleetctl`) and `/etc/fleet/fleet.toml` as a conffile (both
//! texts from `fleet_core::host::packaging`, as setup-host writes them), bash, zsh and fish
//! completions and gzipped man pages (generated from the clap definition, as `cargo xtask
//! codegen` writes them). The maintainer scripts are `packaging/deb/`. The tree is staged under `target/deb/root` and packed by
//! `dpkg-deb --root-owner-group --build` (docs/decisions.md: dpkg-deb rather than cargo-deb).

use anyhow::{Context, Result, ensure};
use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Where the package puts the binary; the unit runs it from there.
const EXE: &str = fleet_core::host::packaging::PACKAGED_EXE;
/// The completions' standard places, by the file `codegen` writes under `completions/`.
const COMPLETIONS: [(&str, &str); 3] = [
    ("completions/fleetctl.bash", "usr/share/bash-completion/completions/fleetctl"),
    ("completions/_fleetctl", "usr/share/zsh/vendor-completions/_fleetctl"),
    ("completions/fleetctl.fish", "usr/share/fish/vendor_completions.d/fleetctl.fish"),
];
const CONFIG: &str = "etc/fleet/fleet.toml";
const UNIT: &str = "lib/systemd/system/fleetctl.service";

pub fn run(root: &Path) -> Result<()> {
    let deb = build(root)?;
    println!("{}", deb.display());
    Ok(())
}

/// Builds the static binary, stages the tree and packs it; returns the .deb's path.
pub fn build(root: &Path) -> Result<PathBuf> {
    let binary = crate::dist::build(root)?;
    let out = root.join("target/deb");
    let tree = out.join("root");
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("cannot remove the old {}", tree.display()))?;
    }
    let version = env!("CARGO_PKG_VERSION");
    // Stripped for the package (Debian's rule; dist keeps its symbols for benchmarks).
    fs::create_dir_all(&out)?;
    let stripped = out.join("fleetctl");
    fs::copy(&binary, &stripped)?;
    let strip = Command::new("strip")
        .arg("--strip-all")
        .arg(&stripped)
        .status()
        .context("cannot run strip: apt-get install binutils")?;
    ensure!(strip.success(), "strip {} failed", stripped.display());
    stage(root, &stripped, &tree, version)?;
    let deb = out.join(format!("fleetctl_{version}_amd64.deb"));
    let packed = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb)
        .stdout(Stdio::null())
        .status()
        .context("cannot run dpkg-deb: apt-get install dpkg")?;
    ensure!(packed.success(), "dpkg-deb --build {} failed", tree.display());
    Ok(deb)
}

/// Writes the package's tree under `tree`: every file it installs, and `DEBIAN/`.
pub fn stage(root: &Path, binary: &Path, tree: &Path, version: &str) -> Result<()> {
    let put = |rel: &str, bytes: &[u8], mode: u32| -> Result<()> {
        let path = tree.join(rel);
        fs::create_dir_all(path.parent().context("a staged file has a directory")?)?;
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let read = |rel: &str| fs::read(root.join(rel)).with_context(|| format!("cannot read {rel}"));
    put(
        EXE.trim_start_matches('/'),
        &fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?,
        0o755,
    )?;
    // One source with setup-host's: a default setup-host after install changes neither.
    put(UNIT, fleet_core::host::packaging::packaged_unit().as_bytes(), 0o644)?;
    put(CONFIG, fleet_core::host::packaging::packaged_config().as_bytes(), 0o644)?;
    put("usr/share/doc/fleetctl/copyright", &read("LICENSE")?, 0o644)?;
    put("usr/share/doc/fleetctl/changelog.gz", &gzip(changelog(root, version).as_bytes())?, 0o644)?;
    let generated = crate::codegen::generate_all()?;
    for (from, to) in COMPLETIONS {
        let (_, bytes) = generated
            .iter()
            .find(|(path, _)| path == Path::new(from))
            .with_context(|| format!("codegen makes no {from}"))?;
        put(to, bytes, 0o644)?;
    }
    for (path, bytes) in generated.iter().filter(|(p, _)| p.extension().is_some_and(|e| e == "1")) {
        let name = path.file_name().context("a man page's name")?.to_string_lossy();
        put(&format!("usr/share/man/man1/{name}.gz"), &gzip(bytes)?, 0o644)?;
    }
    for script in ["postinst", "prerm", "postrm"] {
        put(&format!("DEBIAN/{script}"), &read(&format!("packaging/deb/{script}"))?, 0o755)?;
    }
    put("DEBIAN/conffiles", format!("/{CONFIG}\n").as_bytes(), 0o644)?;
    put("DEBIAN/control", control(version, installed_kib(tree)?).as_bytes(), 0o644)?;
    Ok(())
}

/// The package's control file. A static binary depends on nothing; systemd is recommended
/// (the fleet's scope and its guard), not required (fleetctl runs without it).
fn control(version: &str, installed_kib: u64) -> String {
    format!(
        "Package: fleetctl\nVersion: {version}\nArchitecture: amd64\nMaintainer: fleetctl developers <dev@fleetctl.invalid>\n\
         Installed-Size: {installed_kib}\nRecommends: systemd\nSection: admin\nPriority: optional\n\
         Description: {}\n {}\n",
        "run hundreds of coding agents on one host without running out of memory",
        "Each agent runs in its own memory-limited cgroup under a tiny supervisor;\n \
         a guard service kills the right agent before the host runs out of memory."
    )
}

/// A native package's changelog: one entry for this version, dated by the commit it is
/// built from (the same tree packs to the same bytes).
fn changelog(root: &Path, version: &str) -> String {
    let date = Command::new("git")
        .args(["log", "-1", "--format=%aD"])
        .current_dir(root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".to_string());
    format!(
        "fleetctl ({version}) unstable; urgency=medium\n\n  * Built by `cargo xtask deb`; the changes are in the \
         repository's history.\n\n -- fleetctl developers <dev@fleetctl.invalid>  {date}\n"
    )
}

/// gzip -9n: no name or time stamp inside, so the same page packs to the same bytes.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("gzip")
        .arg("-9n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run gzip")?;
    // Written from a thread: a page larger than the pipe would deadlock against our read.
    let mut stdin = child.stdin.take().context("gzip's stdin")?;
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer.join().map_err(|_| anyhow::anyhow!("gzip writer panicked"))??;
    ensure!(out.status.success(), "gzip failed");
    Ok(out.stdout)
}

/// The staged files' size in KiB, as Installed-Size wants it.
fn installed_kib(dir: &Path) -> Result<u64> {
    let mut bytes = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == "DEBIAN" {
            continue;
        }
        let meta = entry.metadata()?;
        bytes += if meta.is_dir() { installed_kib(&entry.path())? * 1024 } else { meta.len() };
    }
    Ok(bytes.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, under: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, under, out);
            } else {
                out.push(path.strip_prefix(under).unwrap().display().to_string());
            }
        }
    }

    /// The staged tree holds every file the package promises, each where Debian looks for it:
    /// the binary, the unit made for /usr/bin, the three completions, one gzipped man page per
    /// visible command, the conffile, and the maintainer scripts, executable.
    #[test]
    fn the_staged_tree_has_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let binary = tmp.path().join("fleetctl");
        fs::write(&binary, b"\x7fELF not really").unwrap();
        let tree = tmp.path().join("root");
        stage(&crate::root(), &binary, &tree, "1.2.3").unwrap();
        let mut staged = Vec::new();
        files(&tree, &tree, &mut staged);
        let pages = crate::codegen::generate_all()
            .unwrap()
            .into_iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "1"));
        let doc = ["usr/share/doc/fleetctl/copyright", "usr/share/doc/fleetctl/changelog.gz"];
        let mut want: Vec<String> = [EXE.trim_start_matches('/'), UNIT, CONFIG]
            .into_iter()
            .chain(doc)
            .chain(COMPLETIONS.map(|(_, to)| to))
            .chain(["DEBIAN/control", "DEBIAN/conffiles", "DEBIAN/postinst", "DEBIAN/prerm", "DEBIAN/postrm"])
            .map(String::from)
            .chain(pages.map(|(p, _)| format!("usr/share/man/man1/{}.gz", p.file_name().unwrap().to_string_lossy())))
            .collect();
        want.sort();
        staged.sort();
        assert_eq!(staged, want);
        assert!(staged.contains(&"usr/share/man/man1/fleetctl-spawn.1.gz".to_string()), "{staged:?}");

        let unit = fs::read_to_string(tree.join(UNIT)).unwrap();
        assert!(unit.contains("ExecStart=/usr/bin/fleetctl watch") && !unit.contains("@FLEETCTL@"), "{unit}");
        assert_eq!(fs::read_to_string(tree.join("DEBIAN/conffiles")).unwrap(), "/etc/fleet/fleet.toml\n");
        // The conffile names no fleet root: the built-in one follows the host, so the same
        // package works where systemd does not run.
        let config = fs::read_to_string(tree.join(CONFIG)).unwrap();
        assert!(!config.lines().any(|l| l.trim_start().starts_with("cgroup_parent")), "{config}");
        assert!(config.contains("[fleet]\n") && config.contains("memory_max = \"max\""), "{config}");
        let control = fs::read_to_string(tree.join("DEBIAN/control")).unwrap();
        assert!(control.contains("Version: 1.2.3\n") && control.contains("Recommends: systemd\n"), "{control}");
        assert!(!control.contains("Depends:"), "a static binary depends on nothing: {control}");
        let page = fs::read(tree.join("usr/share/man/man1/fleetctl.1.gz")).unwrap();
        assert_eq!(&page[..2], b"\x1f\x8b", "man pages are gzipped");
        for script in ["postinst", "prerm", "postrm"] {
            let mode = fs::metadata(tree.join("DEBIAN").join(script)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{script}");
        }
        assert_eq!(fs::metadata(tree.join("usr/bin/fleetctl")).unwrap().permissions().mode() & 0o777, 0o755);
    }
}
