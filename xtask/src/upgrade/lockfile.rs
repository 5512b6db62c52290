//! `Cargo.lock` after an upgrade. It is not merged as text (two resolutions interleaved line by
//! line are neither): Rampart's new lockfile is taken whole, since its pins are what Rampart
//! tested and audited and security fixes often arrive as exactly such bumps; the entries of
//! packages only the project's old lockfile knows (its own additions) are appended so they keep
//! their versions; then cargo resolves the merged manifests against it, adding what is missing
//! and dropping what nothing uses.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

/// The lockfile: Rampart's, plus the project's entries for packages Rampart's does not name.
pub fn combined(rampart: &str, project: &str) -> String {
    let rampart_names: Vec<&str> = packages(rampart).map(|(name, _, _)| name).collect();
    let mut text = rampart.trim_end().to_owned();
    for (name, _, entry) in packages(project) {
        if !rampart_names.contains(&name) {
            text.push_str("\n\n");
            text.push_str(entry.trim_end());
        }
    }
    text.push('\n');
    text
}

/// Resolves the project's dependencies with `cargo metadata`, which writes the lockfile.
pub fn resolve(project: &Path) -> Result<()> {
    let output = xtask::cmd::cargo()
        .current_dir(project)
        .args(["metadata", "--format-version", "1"])
        .output()
        .context("cannot start cargo")?;
    if !output.status.success() {
        anyhow::bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Packages whose versions differ between two lockfiles: name, then the versions before and
/// after (several when the lockfile holds several).
pub fn version_changes(before: &str, after: &str) -> Vec<(String, String, String)> {
    let versions = |text: &str| {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, version, _) in packages(text) {
            by_name
                .entry(name.to_owned())
                .or_default()
                .push(version.to_owned());
        }
        by_name
    };
    let (before, after) = (versions(before), versions(after));
    after
        .iter()
        .filter_map(|(name, now)| {
            let earlier = before.get(name)?;
            (earlier != now).then(|| (name.clone(), earlier.join(", "), now.join(", ")))
        })
        .collect()
}

/// Each `[[package]]` entry of a lockfile: its name, version and text.
fn packages(lockfile: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    let starts: Vec<usize> = lockfile
        .match_indices("[[package]]")
        .map(|(start, _)| start)
        .collect();
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .copied()
        .chain([lockfile.len()])
        .collect();
    starts.into_iter().zip(ends).filter_map(|(start, end)| {
        let entry = &lockfile[start..end];
        let value = |key: &str| {
            entry.lines().find_map(|line| {
                line.strip_prefix(key)?
                    .trim_start()
                    .strip_prefix('=')?
                    .trim()
                    .strip_prefix('"')?
                    .strip_suffix('"')
            })
        };
        Some((value("name")?, value("version")?, entry))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAMPART: &str = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.1\"\n\n\
                           [[package]]\nname = \"b\"\nversion = \"2.0.0\"\n";
    const PROJECT: &str = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\n\
                           [[package]]\nname = \"own\"\nversion = \"0.3.0\"\n";

    #[test]
    fn rampart_pins_win_and_the_projects_own_packages_are_kept() {
        assert_eq!(
            combined(RAMPART, PROJECT),
            format!(
                "{}\n\n[[package]]\nname = \"own\"\nversion = \"0.3.0\"\n",
                RAMPART.trim_end()
            )
        );
    }

    #[test]
    fn version_changes_name_each_package_that_moved() {
        assert_eq!(
            version_changes(PROJECT, RAMPART),
            vec![("a".to_owned(), "1.0.0".to_owned(), "1.0.1".to_owned())]
        );
    }
}
