//! `Cargo.lock` after an upgrade. It is not merged as text (two resolutions interleaved line by
//! line are neither): Rampart's new lockfile is the base, since its pins are what Rampart tested
//! and audited and security fixes often arrive as exactly such bumps. Two kinds of the project's
//! entries are kept over it: packages only the project knows (its own additions), and versions
//! newer than Rampart's within the same semver-compatible range (an owner's `cargo update -p`,
//! often itself a security fix, which taking Rampart's pin would silently undo). Then cargo
//! resolves the merged manifests against it, adding what is missing and dropping what nothing
//! uses; the upgrade lists every package that moved, and names each one that went back.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use semver::Version;

/// The lockfile: Rampart's, with the project's newer compatible versions in place of Rampart's,
/// plus the project's entries for packages Rampart's does not name.
pub fn combined(rampart: &str, project: &str) -> String {
    let rampart_entries: Vec<(&str, &str, &str)> = packages(rampart).collect();
    let mut text = rampart.to_owned();
    let mut appended = String::new();
    for (name, version, entry) in packages(project) {
        let same_range = rampart_entries
            .iter()
            .find(|(other_name, other_version, _)| {
                *other_name == name && compatible(other_version, version)
            });
        match same_range {
            Some((_, locked, rampart_entry)) if is_newer(version, locked) => {
                text = text.replacen(rampart_entry.trim_end(), entry.trim_end(), 1);
                // Entries that name this version explicitly (when several are locked) follow it.
                text = text.replace(
                    &format!("\"{name} {locked}\""),
                    &format!("\"{name} {version}\""),
                );
            }
            Some(_) => {}
            None if rampart_entries.iter().any(|(other, _, _)| *other == name) => {}
            None => {
                appended.push_str("\n\n");
                appended.push_str(entry.trim_end());
            }
        }
    }
    let mut text = text.trim_end().to_owned();
    text.push_str(&appended);
    text.push('\n');
    text
}

/// Whether cargo would accept either version for the same requirement (`^`): the same major
/// version, or for 0.x the same minor, or for 0.0.x the same patch.
fn compatible(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (Version::parse(a), Version::parse(b)) else {
        return a == b;
    };
    match (a.major, a.minor) {
        (0, 0) => (b.major, b.minor, b.patch) == (0, 0, a.patch),
        (0, minor) => b.major == 0 && b.minor == minor,
        (major, _) => b.major == major,
    }
}

/// Whether `candidate` is a later version than `locked`.
fn is_newer(candidate: &str, locked: &str) -> bool {
    matches!(
        (Version::parse(candidate), Version::parse(locked)),
        (Ok(candidate), Ok(locked)) if candidate > locked
    )
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

/// Whether a change listed by [`version_changes`] took a package back to an older version.
pub fn is_downgrade(before: &str, after: &str) -> bool {
    is_newer(before, after)
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
    fn a_newer_compatible_version_the_owners_locked_is_not_taken_back() {
        let project = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.3\"\n\n\
                       [[package]]\nname = \"b\"\nversion = \"3.0.0\"\n\n\
                       [[package]]\nname = \"uses-a\"\nversion = \"0.1.0\"\n\
                       dependencies = [\n \"a 1.0.3\",\n]\n";
        let rampart = format!(
            "{RAMPART}\n[[package]]\nname = \"uses-a\"\nversion = \"0.1.0\"\n\
             dependencies = [\n \"a 1.0.1\",\n]\n"
        );
        let lock = combined(&rampart, project);
        // a: the owners' 1.0.3 stays, and what named Rampart's 1.0.1 names it.
        assert!(lock.contains("name = \"a\"\nversion = \"1.0.3\""), "{lock}");
        assert!(!lock.contains("1.0.1"), "{lock}");
        // b: 3.0.0 is another major version: Rampart's 2.0.0 is kept and the project's dropped
        // (cargo re-resolves what the merged manifests ask for).
        assert!(lock.contains("name = \"b\"\nversion = \"2.0.0\""), "{lock}");
        assert!(!lock.contains("3.0.0"), "{lock}");
    }

    #[test]
    fn an_older_version_the_owners_locked_gives_way_to_rampart_s_pin() {
        assert!(combined(RAMPART, PROJECT).contains("name = \"a\"\nversion = \"1.0.1\""));
    }

    #[test]
    fn compatibility_follows_cargo_s_caret_rules() {
        assert!(compatible("1.2.3", "1.9.0"));
        assert!(!compatible("1.2.3", "2.0.0"));
        assert!(compatible("0.4.1", "0.4.9"));
        assert!(!compatible("0.4.1", "0.5.0"));
        assert!(!compatible("0.0.1", "0.0.2"));
        assert!(is_downgrade("1.0.3", "1.0.1"));
        assert!(!is_downgrade("1.0.1", "1.0.3"));
    }

    #[test]
    fn version_changes_name_each_package_that_moved() {
        assert_eq!(
            version_changes(PROJECT, RAMPART),
            vec![("a".to_owned(), "1.0.0".to_owned(), "1.0.1".to_owned())]
        );
    }
}
