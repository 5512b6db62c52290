//! The edits a plan makes to the project's shared files, gathered in memory before anything is
//! written (the scaffold's registrations, and `remove-demo`'s removals): each at the item a
//! [`Locator`] names, in the file as the earlier edits left it. An edit that does not find its
//! place is recorded with what it says, so a plan lists every miss at once.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::locate::Locator;

/// The shared files' edits so far.
#[derive(Debug, Default)]
pub struct Edits {
    /// Path from the project's root, and the edited contents.
    pub edited: BTreeMap<String, String>,
    /// `file: item` of each edit, in order, with the lines it adds or takes out.
    pub made: Vec<(String, Vec<String>)>,
    /// Documents the owners deleted, whose edits are left out.
    pub skipped: Vec<String>,
    /// What each edit that did not find its place says.
    pub misses: Vec<String>,
}

impl Edits {
    /// Makes `edit` in `locator.file` of the project at `root`, recording it as `lines`. A
    /// document (`.md`) the owners deleted is theirs to go without and is skipped; code and
    /// configuration must be complete, so a missing one fails the plan.
    pub fn make(
        &mut self,
        root: &Path,
        locator: &Locator,
        lines: Vec<String>,
        edit: impl FnOnce(&str) -> Result<String>,
    ) -> Result<()> {
        if locator.file.ends_with(".md") && !root.join(locator.file).exists() {
            if !self.skipped.iter().any(|file| file == locator.file) {
                self.skipped.push(locator.file.to_owned());
            }
            return Ok(());
        }
        let text = match self.edited.remove(locator.file) {
            Some(text) => text,
            None => std::fs::read_to_string(root.join(locator.file))
                .with_context(|| format!("reading {}", locator.file))?,
        };
        match edit(&text) {
            Ok(edited) => {
                self.made
                    .push((format!("{}: {}", locator.file, locator.item), lines));
                self.edited.insert(locator.file.to_owned(), edited);
            }
            Err(error) => {
                self.misses.push(format!("{error:#}"));
                self.edited.insert(locator.file.to_owned(), text);
            }
        }
        Ok(())
    }
}
