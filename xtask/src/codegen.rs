//! Completions and man pages, generated from `fleet_cli::command()` and committed, so users
//! get them without building, and a test fails when they drift from the definition.

use anyhow::{Context, Result, bail};
use clap_complete::{Shell, generate};
use std::path::{Path, PathBuf};

/// Every generated file, as (path relative to the root, contents).
pub fn generate_all() -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    for (shell, name) in [(Shell::Bash, "fleetctl.bash"), (Shell::Zsh, "_fleetctl"), (Shell::Fish, "fleetctl.fish")] {
        let mut buf = Vec::new();
        generate(shell, &mut fleet_cli::command(), "fleetctl", &mut buf);
        files.push((PathBuf::from("completions").join(name), buf));
    }
    let cmd = fleet_cli::command();
    let mut pages = vec![(PathBuf::from("docs/man/fleetctl.1"), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("fleetctl-{}", sub.get_name());
        pages.push((PathBuf::from(format!("docs/man/{name}.1")), sub.clone().name(name)));
    }
    for (path, page) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf).context("render man page")?;
        files.push((path, buf));
    }
    Ok(files)
}

/// Writes the files, or with `check` compares them.
pub fn run(root: &Path, check: bool) -> Result<()> {
    let mut stale = Vec::new();
    for (rel, contents) in generate_all()? {
        let path = root.join(&rel);
        if check {
            if std::fs::read(&path).ok().as_deref() != Some(contents.as_slice()) {
                stale.push(rel.display().to_string());
            }
        } else {
            std::fs::create_dir_all(path.parent().unwrap_or(root))?;
            std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
            println!("wrote {}", rel.display());
        }
    }
    if !stale.is_empty() {
        bail!("generated files are stale: {}; run `cargo xtask codegen` and commit", stale.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Repository rule: completions and man pages match the clap definition.
    #[test]
    fn generated_files_are_fresh() {
        if let Err(e) = super::run(&crate::root(), true) {
            panic!("{e:#}");
        }
    }
}
