//! The one place the scaffold edits existing files: each edit names a well-known item by the
//! text that opens it (a [`Locator`]) and says what to insert there (an [`Insertion`]).
//!
//! When a file moves or an item is renamed, only its locator changes. When an item cannot be
//! found, the edit fails with the file, the item and the text to add by hand; nothing is
//! written unless every edit found its place.

use anyhow::{Result, bail};

/// A well-known item of a project file: `anchors` are searched for in turn, each at the start of
/// a line after the previous one's (so `["fn migrations()", "vec!["]` is the `vec![` inside
/// `migrations`). The item's block is the last bracket left open on the last anchor's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locator {
    /// The file, from the project's root.
    pub file: &'static str,
    pub anchors: &'static [&'static str],
    /// What the item is, for messages: "the scope catalogue".
    pub item: &'static str,
}

/// What to insert at a located item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insertion {
    /// Items at the end of the block (a list, an enum, a struct, a match), one per line,
    /// indented one level deeper than the block's closing line.
    AppendToBlock(Vec<String>),
    /// A line among the consecutive lines starting with the anchor (`pub mod `), in order.
    SortedLine(String),
    /// Lines at the end of the rows right after the anchor line: a Markdown table's rows.
    AppendToTable(Vec<String>),
    /// Key lines at the end of the TOML section whose header is the anchor line (`[rate_limit]`),
    /// before the blank and comment lines that lead into the next section.
    AppendToTomlSection(Vec<String>),
    /// Adds this much to the array length `; N]` on the anchor's line.
    GrowArrayLength(usize),
}

impl Locator {
    /// The byte range of the last anchor's line in `text`. An anchor matches the start of a
    /// line, after its indentation, so a mention in a comment never does.
    fn find(&self, text: &str) -> Option<std::ops::Range<usize>> {
        let mut lines = text.split_inclusive('\n').scan(0, |start, line| {
            let range = *start..*start + line.trim_end_matches('\n').len();
            *start += line.len();
            Some((range, line))
        });
        let mut found = None;
        for anchor in self.anchors {
            found = Some(
                lines
                    .by_ref()
                    .find(|(_, line)| line.trim_start().starts_with(anchor))?
                    .0,
            );
        }
        found
    }
}

/// `text` with `insertion` made at the item `locator` names.
pub fn insert(text: &str, locator: &Locator, insertion: &Insertion) -> Result<String> {
    let Some(line) = locator.find(text) else {
        bail!(
            "{}: cannot find {} (`{}`); add by hand:\n{}",
            locator.file,
            locator.item,
            locator.anchors.join("` … `"),
            insertion.lines().join("\n")
        );
    };
    let edited = match insertion {
        Insertion::AppendToBlock(items) => append_to_block(text, line, items),
        Insertion::SortedLine(new) => Some(sorted_line(text, line, locator.anchors, new)?),
        Insertion::AppendToTable(rows) => Some(after_lines(text, line.end, rows, |row| {
            row.starts_with('|')
        })),
        Insertion::AppendToTomlSection(keys) => Some(toml_section(text, line.end, keys)),
        Insertion::GrowArrayLength(extra) => grow_array_length(text, line, *extra),
    };
    match edited {
        Some(edited) => Ok(edited),
        None => bail!(
            "{}: {} (`{}`) is not shaped as expected; add by hand:\n{}",
            locator.file,
            locator.item,
            locator.anchors.join("` … `"),
            insertion.lines().join("\n")
        ),
    }
}

impl Insertion {
    /// The lines it adds, as a person would add them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::AppendToBlock(lines)
            | Self::AppendToTable(lines)
            | Self::AppendToTomlSection(lines) => lines.clone(),
            Self::SortedLine(line) => vec![line.clone()],
            Self::GrowArrayLength(extra) => vec![format!("(the array length, {extra} more)")],
        }
    }
}

fn append_to_block(text: &str, line: std::ops::Range<usize>, items: &[String]) -> Option<String> {
    // A list written on one line (rustfmt joins a short one) opens and closes there: its last
    // bracket is the list.
    let on_line = &text[line.clone()];
    let open = last_unclosed_opener(on_line).or_else(|| last_opener(on_line))? + line.start;
    let close = matching_closer(text, open)?;
    let before = text[..close].trim_end();
    let separator = match before.chars().last() {
        Some(',' | '{' | '(' | '[') => "",
        _ => ",",
    };
    let closing_line_start = text[..close].rfind('\n').map_or(0, |newline| newline + 1);
    let closing_indent: String = text[closing_line_start..close]
        .chars()
        .take_while(|c| *c == ' ')
        .collect();
    let closing_indent = if text[closing_line_start..close].trim().is_empty() {
        closing_indent
    } else {
        // The block closes on a line with other text: indent from the opener's line.
        text[line.start..]
            .chars()
            .take_while(|c| *c == ' ')
            .collect()
    };
    let indented: Vec<String> = items
        .iter()
        .map(|item| {
            if item.is_empty() {
                String::new()
            } else {
                format!("{closing_indent}    {item}")
            }
        })
        .collect();
    Some(format!(
        "{before}{separator}\n{}\n{closing_indent}{}",
        indented.join("\n"),
        &text[close..]
    ))
}

/// The byte offset of the last bracket `line` opens and does not close.
fn last_unclosed_opener(line: &str) -> Option<usize> {
    let mut open = Vec::new();
    for (at, c) in code_chars(line) {
        match c {
            '{' | '(' | '[' => open.push(at),
            '}' | ')' | ']' => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

/// The byte offset of the last bracket `line` opens, closed or not.
fn last_opener(line: &str) -> Option<usize> {
    code_chars(line)
        .into_iter()
        .rev()
        .find(|(_, c)| matches!(c, '{' | '(' | '['))
        .map(|(at, _)| at)
}

/// The byte offset of the bracket closing the one at `open`.
fn matching_closer(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in code_chars(&text[open..]) {
        match c {
            '{' | '(' | '[' => depth += 1,
            '}' | ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + at);
                }
            }
            _ => {}
        }
    }
    None
}

/// The characters of Rust source that are code: string literals, character literals and line
/// comments are skipped, so a `{id}` in a path or a `[section]` in a comment is no bracket.
fn code_chars(text: &str) -> Vec<(usize, char)> {
    let characters: Vec<(usize, char)> = text.char_indices().collect();
    let mut code = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        let (at, c) = characters[index];
        let next = characters.get(index + 1).map(|(_, c)| *c);
        match c {
            '"' => {
                index += 1;
                while index < characters.len() && characters[index].1 != '"' {
                    if characters[index].1 == '\\' {
                        index += 1;
                    }
                    index += 1;
                }
            }
            '/' if next == Some('/') => {
                while index < characters.len() && characters[index].1 != '\n' {
                    index += 1;
                }
            }
            // A character literal ('x' or '\x'), not a lifetime ('static).
            '\'' if next == Some('\\')
                || characters.get(index + 2).map(|(_, c)| *c) == Some('\'') =>
            {
                index += 1;
                while index < characters.len() && characters[index].1 != '\'' {
                    if characters[index].1 == '\\' {
                        index += 1;
                    }
                    index += 1;
                }
            }
            _ => code.push((at, c)),
        }
        index += 1;
    }
    code
}

fn sorted_line(
    text: &str,
    line: std::ops::Range<usize>,
    anchors: &[&str],
    new: &str,
) -> Result<String> {
    let prefix = anchors.last().copied().unwrap_or_default();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let first = text[..line.start].matches('\n').count();
    let group_end = first
        + lines[first..]
            .iter()
            .take_while(|existing| existing.starts_with(prefix))
            .count();
    if lines[first..group_end]
        .iter()
        .any(|existing| existing.trim_end() == new)
    {
        bail!("`{new}` is there already");
    }
    let position = lines[first..group_end]
        .iter()
        .position(|existing| existing.trim_end() > new)
        .map_or(group_end, |offset| first + offset);
    let mut edited: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
    if position == lines.len() && !edited.last().is_some_and(|last| last.ends_with('\n')) {
        edited.push("\n".to_owned());
    }
    edited.insert(position, format!("{new}\n"));
    Ok(edited.concat())
}

/// `rows` inserted after the consecutive lines following `from` that `belongs` accepts.
fn after_lines(text: &str, from: usize, rows: &[String], belongs: impl Fn(&str) -> bool) -> String {
    let mut end = from;
    for line in text[from..].split_inclusive('\n').skip(1) {
        if !belongs(line.trim_start()) {
            break;
        }
        end += line.len();
    }
    insert_lines_after(text, end, rows)
}

fn toml_section(text: &str, header_end: usize, keys: &[String]) -> String {
    let indent: String = text[..header_end]
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .take_while(|c| *c == ' ')
        .collect();
    // The section's last key line: before the next header (or the end of an embedded string),
    // and before the blank and comment lines that introduce it.
    let mut end = header_end;
    let mut last_key_end = header_end;
    for line in text[header_end..].split_inclusive('\n').skip(1) {
        let trimmed = line.trim();
        if trimmed.starts_with('[') || trimmed.contains('"') && !trimmed.contains('=') {
            break;
        }
        end += line.len();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            last_key_end = end;
        }
    }
    let indented: Vec<String> = keys.iter().map(|key| format!("{indent}{key}")).collect();
    insert_lines_after(text, last_key_end, &indented)
}

/// `lines` inserted after the line ending at `end` (its newline excluded).
fn insert_lines_after(text: &str, end: usize, lines: &[String]) -> String {
    let end = if end == 0 {
        0
    } else {
        text[end..]
            .find('\n')
            .map_or(text.len(), |newline| end + newline)
    };
    format!("{}\n{}{}", &text[..end], lines.join("\n"), &text[end..])
}

fn grow_array_length(text: &str, line: std::ops::Range<usize>, extra: usize) -> Option<String> {
    change_array_length(text, line, |length| length.checked_add(extra))
}

/// `text` with the array length `; N]` on `line` changed by `change` (none if it cannot).
fn change_array_length(
    text: &str,
    line: std::ops::Range<usize>,
    change: impl Fn(usize) -> Option<usize>,
) -> Option<String> {
    let content = &text[line.clone()];
    let semicolon = content.rfind("; ")?;
    let digits_start = semicolon + 2;
    let digits: String = content[digits_start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let length = change(digits.parse().ok()?)?;
    let start = line.start + digits_start;
    Some(format!(
        "{}{}{}",
        &text[..start],
        length,
        &text[start + digits.len()..]
    ))
}

/// What to take out of a located item: the scaffold in reverse.
/// Lines are compared without their indentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// These consecutive lines: the first such run from the anchor's line to the end of its
    /// block (or of the file, when the anchor's line opens no block).
    Lines(&'static [&'static str]),
    /// The first such run of lines there, replaced by the second (indented as the run's first).
    Replace(&'static [&'static str], &'static [&'static str]),
    /// Takes this much from the array length `; N]` on the anchor's line.
    ShrinkArrayLength(usize),
}

impl Removal {
    /// What it takes out, as a person would say it.
    pub fn describe(&self) -> Vec<String> {
        match self {
            Self::Lines(lines) => lines.iter().map(|line| format!("- {line}")).collect(),
            Self::Replace(from, to) => from
                .iter()
                .map(|line| format!("- {line}"))
                .chain(to.iter().map(|line| format!("+ {line}")))
                .collect(),
            Self::ShrinkArrayLength(less) => vec![format!("(the array length, {less} less)")],
        }
    }
}

/// `text` with `removal` made at the item `locator` names; fails, naming the file, the item and
/// the lines, when the item or the lines are not there as expected.
pub fn remove(text: &str, locator: &Locator, removal: &Removal) -> Result<String> {
    let Some(line) = locator.find(text) else {
        bail!(
            "{}: cannot find {} (`{}`); remove by hand:\n{}",
            locator.file,
            locator.item,
            locator.anchors.join("` … `"),
            removal.describe().join("\n")
        );
    };
    let block_end = last_unclosed_opener(&text[line.clone()])
        .and_then(|open| matching_closer(text, line.start + open))
        .unwrap_or(text.len());
    let region = line.start..block_end;
    let edited = match removal {
        Removal::Lines(lines) => replace_run(text, &region, lines, &[]),
        Removal::Replace(from, to) => replace_run(text, &region, from, to),
        Removal::ShrinkArrayLength(less) => {
            change_array_length(text, line, |length| length.checked_sub(*less))
        }
    };
    match edited {
        Some(edited) => Ok(edited),
        None => bail!(
            "{}: {} (`{}`) does not hold what is to be removed; remove by hand:\n{}",
            locator.file,
            locator.item,
            locator.anchors.join("` … `"),
            removal.describe().join("\n")
        ),
    }
}

/// `text` with the first run of lines equal to `run` (without indentation) that starts inside
/// `region` replaced by `replacement` (none: taken out), indented as the run's first line.
fn replace_run(
    text: &str,
    region: &std::ops::Range<usize>,
    run: &[&str],
    replacement: &[&str],
) -> Option<String> {
    let mut starts = Vec::new();
    let mut offset = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for line in &lines {
        starts.push(offset);
        offset += line.len();
    }
    let first = (0..lines.len()).find(|&index| {
        region.contains(&starts[index])
            && index + run.len() <= lines.len()
            && run
                .iter()
                .zip(&lines[index..])
                .all(|(wanted, line)| line.trim() == wanted.trim())
    })?;
    let mut edited: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
    let removed: Vec<String> = edited.drain(first..first + run.len()).collect();
    let indent: String = removed.first()?.chars().take_while(|c| *c == ' ').collect();
    let ends_with_newline = removed.last()?.ends_with('\n');
    for (offset, line) in replacement.iter().enumerate() {
        let last = offset + 1 == replacement.len();
        let newline = if last && !ends_with_newline { "" } else { "\n" };
        let indent = if line.is_empty() { "" } else { indent.as_str() };
        edited.insert(first + offset, format!("{indent}{line}{newline}"));
    }
    Some(edited.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locator(anchors: &'static [&'static str]) -> Locator {
        Locator {
            file: "src/lib.rs",
            anchors,
            item: "the test item",
        }
    }

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn a_run_of_lines_is_removed_from_the_block_the_anchor_line_opens_only() {
        let text = "const A: &[Scope] = &[\n    Scope::One,\n    Scope::Two,\n];\nconst B: &[Scope] = &[\n    Scope::Three,\n];\n";
        let edited = remove(
            text,
            &locator(&["const A"]),
            &Removal::Lines(&["Scope::Two,"]),
        )
        .expect("found");
        assert_eq!(
            edited,
            "const A: &[Scope] = &[\n    Scope::One,\n];\nconst B: &[Scope] = &[\n    Scope::Three,\n];\n"
        );
        // A line of another block is not the located item's.
        let error = remove(
            text,
            &locator(&["const A"]),
            &Removal::Lines(&["Scope::Three,"]),
        )
        .expect_err("outside the block");
        assert!(format!("{error}").contains("remove by hand"), "{error}");
    }

    #[test]
    fn a_run_is_replaced_keeping_its_indentation_and_array_lengths_shrink() {
        let text = "fn f() -> [u8; 3] {\n    // one\n    // two\n    [1, 2, 3]\n}\n";
        let edited = remove(
            text,
            &locator(&["fn f()"]),
            &Removal::Replace(&["// one", "// two"], &["// both"]),
        )
        .expect("found");
        assert_eq!(
            edited,
            "fn f() -> [u8; 3] {\n    // both\n    [1, 2, 3]\n}\n"
        );
        let shrunk = remove(
            &edited,
            &locator(&["fn f()"]),
            &Removal::ShrinkArrayLength(1),
        )
        .expect("found");
        assert!(shrunk.starts_with("fn f() -> [u8; 2] {"), "{shrunk}");
    }

    #[test]
    fn items_are_appended_to_a_list_written_on_one_line() {
        let text = "const A: &[Scope] = &[Scope::One, Scope::Two];\nconst B: &[Scope] = &[];\n";
        let edited = insert(
            text,
            &locator(&["const A"]),
            &Insertion::AppendToBlock(lines(&["Scope::Three,"])),
        )
        .expect("found");
        assert_eq!(
            edited,
            "const A: &[Scope] = &[Scope::One, Scope::Two,\n    Scope::Three,\n];\nconst B: &[Scope] = &[];\n"
        );
        let empty = insert(
            text,
            &locator(&["const B"]),
            &Insertion::AppendToBlock(lines(&["Scope::One,"])),
        )
        .expect("found");
        assert!(
            empty.ends_with("const B: &[Scope] = &[\n    Scope::One,\n];\n"),
            "{empty}"
        );
    }

    #[test]
    fn items_are_appended_to_the_block_the_anchor_line_opens() {
        let text = "const A: &[Scope] = &[\n    Scope::One,\n    Scope::Two,\n];\nconst B: &[Scope] = &[];\n";
        let edited = insert(
            text,
            &locator(&["const A"]),
            &Insertion::AppendToBlock(lines(&["Scope::Three,"])),
        )
        .expect("found");
        assert_eq!(
            edited,
            "const A: &[Scope] = &[\n    Scope::One,\n    Scope::Two,\n    Scope::Three,\n];\nconst B: &[Scope] = &[];\n"
        );
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_end_the_block() {
        let text = "pub const OPS: &[(&str, Tier)] = &[\n    // see [rate_limit]\n    (\"POST /v1/keys/{id}/rotate\", Tier::Keys),\n];\n";
        let edited = insert(
            text,
            &locator(&["pub const OPS"]),
            &Insertion::AppendToBlock(lines(&["(\"POST /v1/widgets\", Tier::Widgets),"])),
        )
        .expect("found");
        assert!(
            edited.ends_with("Tier::Keys),\n    (\"POST /v1/widgets\", Tier::Widgets),\n];\n"),
            "{edited}"
        );
    }

    #[test]
    fn a_later_anchor_finds_an_inner_block_and_a_missing_comma_is_added() {
        let text = "fn migrations() -> Vec<Box<dyn M>> {\n    vec![\n        Box::new(a::Migration)\n    ]\n}\n";
        let edited = insert(
            text,
            &locator(&["fn migrations()", "vec!["]),
            &Insertion::AppendToBlock(lines(&["Box::new(b::Migration),"])),
        )
        .expect("found");
        assert_eq!(
            edited,
            "fn migrations() -> Vec<Box<dyn M>> {\n    vec![\n        Box::new(a::Migration),\n        Box::new(b::Migration),\n    ]\n}\n"
        );
    }

    #[test]
    fn a_lifetime_is_no_character_literal() {
        let text = "fn quotas(&self) -> [(&'static str, Q); 2] {\n    [\n        (\"a\", self.a),\n        (\"b\", self.b),\n    ]\n}\n";
        let grown = insert(
            text,
            &locator(&["fn quotas("]),
            &Insertion::GrowArrayLength(1),
        )
        .expect("found");
        let edited = insert(
            &grown,
            &locator(&["fn quotas(", "["]),
            &Insertion::AppendToBlock(lines(&["(\"c\", self.c),"])),
        )
        .expect("found");
        assert_eq!(
            edited,
            "fn quotas(&self) -> [(&'static str, Q); 3] {\n    [\n        (\"a\", self.a),\n        (\"b\", self.b),\n        (\"c\", self.c),\n    ]\n}\n"
        );
    }

    #[test]
    fn a_line_goes_in_order_among_its_group() {
        let text = "//! Doc.\n\npub mod alpha;\npub mod gamma;\n\nuse std::sync::Arc;\n";
        let locator = locator(&["pub mod "]);
        let middle = insert(
            text,
            &locator,
            &Insertion::SortedLine("pub mod beta;".into()),
        )
        .expect("found");
        assert_eq!(
            middle,
            "//! Doc.\n\npub mod alpha;\npub mod beta;\npub mod gamma;\n\nuse std::sync::Arc;\n"
        );
        let last = insert(
            text,
            &locator,
            &Insertion::SortedLine("pub mod zeta;".into()),
        )
        .expect("found");
        assert!(
            last.contains("pub mod gamma;\npub mod zeta;\n\nuse"),
            "{last}"
        );
        let twice = insert(
            text,
            &locator,
            &Insertion::SortedLine("pub mod alpha;".into()),
        );
        assert!(format!("{:#}", twice.expect_err("twice")).contains("there already"));
    }

    #[test]
    fn a_toml_key_goes_at_the_end_of_its_section_before_the_next_ones_comments() {
        let text = "[rate_limit]\n# general\na = 1\nb = 2\n\n# next\n[auth]\nc = 3\n";
        let edited = insert(
            text,
            &locator(&["[rate_limit]"]),
            &Insertion::AppendToTomlSection(lines(&["# widgets", "w = 4"])),
        )
        .expect("found");
        assert_eq!(
            edited,
            "[rate_limit]\n# general\na = 1\nb = 2\n# widgets\nw = 4\n\n# next\n[auth]\nc = 3\n"
        );
    }

    #[test]
    fn a_toml_section_inside_a_rust_string_keeps_its_indent_and_stays_inside() {
        let text = "let toml = \"\n    [rate_limit]\n    a = 1\n    \";\n";
        let edited = insert(
            text,
            &locator(&["[rate_limit]"]),
            &Insertion::AppendToTomlSection(lines(&["w = 4"])),
        )
        .expect("found");
        assert_eq!(
            edited,
            "let toml = \"\n    [rate_limit]\n    a = 1\n    w = 4\n    \";\n"
        );
    }

    #[test]
    fn a_row_goes_at_the_end_of_the_table() {
        let text = "| event | outcomes |\n|---|---|\n| `a` | allowed |\n\nAfter.\n";
        let edited = insert(
            text,
            &locator(&["| event | outcomes |"]),
            &Insertion::AppendToTable(lines(&["| `b` | denied |"])),
        )
        .expect("found");
        assert_eq!(
            edited,
            "| event | outcomes |\n|---|---|\n| `a` | allowed |\n| `b` | denied |\n\nAfter.\n"
        );
    }

    #[test]
    fn a_missing_item_names_the_file_the_item_and_what_to_add() {
        let error = insert(
            "pub struct Other {}\n",
            &locator(&["pub enum Scope {"]),
            &Insertion::AppendToBlock(lines(&["WidgetsRead,"])),
        )
        .expect_err("missing");
        let message = format!("{error:#}");
        for part in [
            "src/lib.rs",
            "the test item",
            "pub enum Scope {",
            "WidgetsRead,",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }
}
