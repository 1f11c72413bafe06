//! Debian packages for the VM tier, from the mirror the host is already configured with.
//!
//! apt runs with private lists and a private download cache under `target/vm/apt`, so
//! `/etc/apt` is never changed and the host's own lists are never refreshed behind its back.
//! Only what a tier asks for is installed on the host (qemu, busybox); kernels are downloaded
//! and unpacked, never installed (see `kernel.rs`). Nothing here runs unless something is missing.

use anyhow::{Context, Result, anyhow, bail};
use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Where a package comes from: the host's release, or its backports suite.
#[derive(Clone, Copy, PartialEq)]
pub enum Suite {
    Release,
    Backports,
}

/// apt with its own lists and cache in `dir`; the lists are fetched once, on first use.
pub struct Apt {
    dir: PathBuf,
    codename: String,
    updated: bool,
}

impl Apt {
    pub fn new(dir: PathBuf) -> Apt {
        let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
        // Without a codename (not Debian) the tier still needs Debian packages: the release
        // the VM tier was measured on.
        let codename = codename_in(&os_release).unwrap_or_else(|| "bookworm".to_string());
        Apt { dir, codename, updated: false }
    }

    /// Installs `packages` on the host (they are tools the tier runs, such as qemu).
    pub fn install(&mut self, packages: &[&str], suite: Suite) -> Result<()> {
        self.update()?;
        let mut args: Vec<String> = ["install", "-y", "--no-install-recommends"].map(String::from).to_vec();
        if suite == Suite::Backports {
            args.extend(["-t".to_string(), format!("{}-backports", self.codename)]);
        }
        args.extend(packages.iter().map(|p| p.to_string()));
        self.run("apt-get", &args, None, &format!("install {}", packages.join(" ")))?;
        Ok(())
    }

    /// Downloads `package`'s .deb into `into` (no install, no maintainer scripts) and returns its path.
    pub fn download(&mut self, package: &str, into: &Path) -> Result<PathBuf> {
        self.update()?;
        fs::create_dir_all(into)?;
        self.run(
            "apt-get",
            &["download".to_string(), package.to_string()],
            Some(into),
            &format!("download {package}"),
        )?;
        find_deb(into, &format!("{package}_"))?
            .with_context(|| format!("apt-get download {package} left no .deb in {}", into.display()))
    }

    /// The first dependency of `package` whose name starts with `prefix`: the versioned
    /// package a Debian metapackage such as `linux-image-cloud-amd64` stands for.
    pub fn dependency(&mut self, package: &str, prefix: &str) -> Result<String> {
        self.update()?;
        let text =
            self.run("apt-cache", &["depends".to_string(), package.to_string()], None, &format!("depends {package}"))?;
        dependency_in(&text, prefix).with_context(|| format!("apt-cache depends {package} names no {prefix}* package"))
    }

    fn update(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        let mirror = mirror()?;
        let signed = if Path::new(KEYRING).exists() { format!(" [signed-by={KEYRING}]") } else { String::new() };
        let suites =
            [self.codename.clone(), format!("{}-updates", self.codename), format!("{}-backports", self.codename)];
        let list: String = suites.iter().map(|s| format!("deb{signed} {mirror} {s} main\n")).collect();
        for dir in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(self.dir.join(dir))?;
        }
        fs::write(self.dir.join("sources.list"), list)?;
        self.run("apt-get", &["update".to_string()], None, &format!("update from {mirror}"))?;
        self.updated = true;
        Ok(())
    }

    /// Runs an apt tool with the private directories; on failure, one line with apt's own
    /// last complaint and what to do.
    fn run(&self, tool: &str, args: &[String], cwd: Option<&Path>, what: &str) -> Result<String> {
        let dir = |name: &str| self.dir.join(name).into_os_string();
        let mut options: Vec<OsString> = Vec::new();
        for (key, value) in [
            ("Dir::Etc::sourcelist", dir("sources.list")),
            ("Dir::Etc::sourceparts", "-".into()),
            ("Dir::State::lists", dir("lists")),
            ("Dir::Cache", dir("cache")),
            // The lists and downloads are root's files under target/, which apt's _apt user
            // could not write.
            ("APT::Sandbox::User", "root".into()),
        ] {
            let mut option = OsString::from(format!("{key}="));
            option.push(value);
            options.extend(["-o".into(), option]);
        }
        let mut command = Command::new(tool);
        command.args(&options).arg("-qq").args(args).env("DEBIAN_FRONTEND", "noninteractive");
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let out = command.output().map_err(|e| {
            anyhow!("cannot run {tool} ({e}): the VM tier fetches Debian packages; on a host without apt, install qemu and busybox-static yourself")
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let cause = stderr
                .lines()
                .rev()
                .find(|l| l.starts_with("E:"))
                .or(stderr.lines().rev().find(|l| !l.trim().is_empty()));
            bail!(
                "{tool} {what} failed ({}): check this host's network and its Debian mirror in /etc/apt, then run again",
                cause.unwrap_or("no message").trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The host's Debian mirror (its first non-security archive in /etc/apt), which the VM tier
/// fetches packages and guest images from.
pub fn mirror() -> Result<String> {
    let deb822 = fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sources"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .collect::<Vec<_>>()
        .join("\n\n");
    let one_line = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    mirror_in(&deb822, &one_line)
        .context("no Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources: add one (the VM tier fetches its packages from it)")
}

/// Whether dpkg has `package` installed on the host.
pub fn is_installed(package: &str) -> bool {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", package]).output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).ends_with("ok installed"))
}

/// Whether `command` is an executable file on `PATH`.
pub fn on_path(command: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .any(|dir| fs::metadata(dir.join(command)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A .deb in `dir` whose name starts with `prefix`, if one was downloaded before.
pub fn find_deb(dir: &Path, prefix: &str) -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(None) };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".deb") {
            return Ok(Some(dir.join(name)));
        }
    }
    Ok(None)
}

fn codename_in(os_release: &str) -> Option<String> {
    let value = os_release.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME="))?;
    Some(value.trim_matches('"').to_string()).filter(|c| !c.is_empty())
}

/// The first Debian archive (not the security one, which has no backports) in deb822
/// stanzas or one-line `deb` entries.
fn mirror_in(deb822: &str, one_line: &str) -> Option<String> {
    let not_security = |uri: &&str| !uri.contains("security");
    let from_stanzas = deb822.split("\n\n").find_map(|stanza| {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let is_binary = field("Types:").is_none_or(|t| t.split_whitespace().any(|t| t == "deb"));
        field("URIs:")?.split_whitespace().find(not_security).filter(|_| is_binary)
    });
    let from_lines = || {
        one_line.lines().find_map(|line| {
            let mut words = line.split_whitespace().skip_while(|w| *w != "deb").skip(1);
            let mut uri = words.next()?;
            if uri.starts_with('[') {
                uri = words.find(|w| w.starts_with("http") || w.starts_with("file:"))?;
            }
            Some(uri).filter(not_security)
        })
    };
    from_stanzas.or_else(from_lines).map(|uri| uri.trim_end_matches('/').to_string())
}

fn dependency_in(apt_cache_depends: &str, prefix: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Depends: ")?
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with(prefix))
            .map(String::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_the_first_non_security_archive() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                      Types: deb\n# a snapshot comment\nURIs: http://deb.debian.org/debian/\nSuites: bookworm bookworm-updates\n";
        assert_eq!(mirror_in(deb822, "").as_deref(), Some("http://deb.debian.org/debian"));
        let sources_list = "# comment\ndeb-src http://src.example/debian bookworm main\n\
                            deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(mirror_in("", sources_list).as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(mirror_in("Types: deb-src\nURIs: http://src.example/debian\n", "").as_deref(), None);
        assert_eq!(mirror_in("", "deb http://security.debian.org/debian-security bookworm-security main\n"), None);
    }

    #[test]
    fn the_codename_comes_from_os_release() {
        assert_eq!(codename_in("NAME=\"Debian\"\nVERSION_CODENAME=bookworm\n").as_deref(), Some("bookworm"));
        assert_eq!(codename_in("ID=arch\n"), None);
        assert_eq!(codename_in("VERSION_CODENAME=\n"), None);
    }

    #[test]
    fn a_metapackage_resolves_to_its_versioned_kernel() {
        let depends = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-50-cloud-amd64\n  Depends: other\n";
        assert_eq!(dependency_in(depends, "linux-image-").as_deref(), Some("linux-image-6.1.0-50-cloud-amd64"));
        assert_eq!(dependency_in("x\n  Depends: libc6\n", "linux-image-"), None);
    }
}
