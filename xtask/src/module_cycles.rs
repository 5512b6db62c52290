//! Import cycles among a crate's modules: a permanent check that the modules named in
//! [`CHECKED_SOURCE_FOLDERS`] import one another in one direction only, so each can be read,
//! tested and moved after the ones it depends on.
//!
//! The graph is read from the source text, without compiling: a node per module (a file, or an
//! inline `mod name { .. }`), an edge wherever a module names a path that starts with `crate::`
//! or `super::` (in `use` declarations, groups included, and in expressions and types),
//! pointing to the deepest module that path names. A module naming its own submodules by their
//! bare names (`auth::AuthApi` in `api`) declares its tree rather than importing, so that is no
//! edge, and a child may use its parent's items; `self::` paths are not followed either.
//! Comments, doc links and string literals are skipped. A crate with a `lib.rs` is read from it
//! (its `main.rs` is another crate, which reaches the library by name).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The source folders, relative to the repository's root, that must hold no import cycle.
pub const CHECKED_SOURCE_FOLDERS: &[&str] = &["template/crates/app/src", "template/xtask/src"];

/// The crate root's module path.
const ROOT: &str = "crate";

/// Every module of a crate and the modules each imports, with the first line that does.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    /// Module path (`crate`, `crate::api::auth`) to the modules it imports, each with the file
    /// and line of its first import.
    pub imports: BTreeMap<String, BTreeMap<String, String>>,
}

/// Cycles known and not yet broken, by folder and the modules they pass through (sorted). The
/// check fails on any other cycle, and on a listed one that is gone (so the list only shrinks).
pub const ACCEPTED_CYCLES: &[(&str, &[&str])] = &[(
    // A session's end revokes the API keys made in it, and a key made in a session checks
    // whether that session has ended: both sides need the other's query.
    "template/crates/app/src",
    &["crate::auth::api_keys", "crate::auth::tokens"],
)];

/// Fails, naming each cycle and where its imports are, when a checked folder has one that
/// [`ACCEPTED_CYCLES`] does not list, or when a listed one is gone.
pub fn check_all(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for folder in CHECKED_SOURCE_FOLDERS {
        let graph = ModuleGraph::read(&root.join(folder))?;
        let found = graph.cycles();
        for cycle in &found {
            let modules: BTreeSet<&str> = cycle.iter().map(String::as_str).collect();
            let accepted = ACCEPTED_CYCLES.iter().any(|(accepted_folder, accepted)| {
                accepted_folder == folder
                    && accepted.iter().copied().collect::<BTreeSet<_>>() == modules
            });
            if !accepted {
                problems.push(format!("{folder}: {}", graph.describe(cycle)));
            }
        }
        for (_, accepted) in ACCEPTED_CYCLES.iter().filter(|(at, _)| at == folder) {
            let listed: BTreeSet<&str> = accepted.iter().copied().collect();
            let still_there = found
                .iter()
                .any(|cycle| cycle.iter().map(String::as_str).collect::<BTreeSet<_>>() == listed);
            if !still_there {
                problems.push(format!(
                    "{folder}: {accepted:?} no longer import each other: remove them from \
                     ACCEPTED_CYCLES"
                ));
            }
        }
    }
    if !problems.is_empty() {
        bail!("import cycles among modules:\n{}", problems.join("\n"));
    }
    Ok(())
}

impl ModuleGraph {
    /// The graph of the crate whose sources are in `src`.
    pub fn read(src: &Path) -> Result<Self> {
        let files = module_files(src)?;
        let mut modules: BTreeSet<String> = BTreeSet::new();
        let mut parsed = Vec::new();
        for (module, file) in &files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let tokens = tokenize(&text);
            let found = paths_of(module, &tokens);
            modules.insert(module.clone());
            modules.extend(found.inline_modules.iter().cloned());
            let shown = file.strip_prefix(src).unwrap_or(file).display().to_string();
            parsed.push((shown, found.paths));
        }
        let mut graph = Self::default();
        for module in &modules {
            graph.imports.entry(module.clone()).or_default();
        }
        for (file, paths) in parsed {
            for found in paths {
                let target = deepest_module(&modules, &found.path);
                if target != found.from {
                    graph
                        .imports
                        .entry(found.from)
                        .or_default()
                        .entry(target)
                        .or_insert_with(|| format!("{file}:{}", found.line));
                }
            }
        }
        Ok(graph)
    }

    /// Every cycle, one per group of modules that reach one another (a strongly connected
    /// component), as the shortest cycle through its first module, that module repeated last.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        strongly_connected(&self.imports)
            .into_iter()
            .filter(|component| component.len() > 1)
            .filter_map(|component| self.shortest_cycle(&component))
            .collect()
    }

    /// `a -> b (a.rs:3) -> a (b.rs:7)`.
    pub fn describe(&self, cycle: &[String]) -> String {
        let mut text = cycle.first().cloned().unwrap_or_default();
        for pair in cycle.windows(2) {
            let at = self.imports[&pair[0]].get(&pair[1]).cloned();
            text.push_str(&format!(" -> {} ({})", pair[1], at.unwrap_or_default()));
        }
        text
    }

    fn shortest_cycle(&self, component: &BTreeSet<String>) -> Option<Vec<String>> {
        let start = component.first()?;
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(module) = queue.pop_front() {
            for next in self.imports[module].keys() {
                if !component.contains(next) || came_from.contains_key(next) {
                    continue;
                }
                came_from.insert(next, module);
                if next == start {
                    let mut cycle = vec![start.clone()];
                    let mut at = came_from[start];
                    while at != start {
                        cycle.push(at.clone());
                        at = came_from[at];
                    }
                    cycle.push(start.clone());
                    cycle.reverse();
                    return Some(cycle);
                }
                queue.push_back(next);
            }
        }
        None
    }
}

/// Tarjan's algorithm, iteratively: the strongly connected components of `graph`.
fn strongly_connected(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<BTreeSet<String>> {
    #[derive(Default)]
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<BTreeSet<String>>,
    }
    let mut state = State::default();
    for root in graph.keys() {
        if state.index.contains_key(root.as_str()) {
            continue;
        }
        // (module, its successors not yet visited)
        let mut work: Vec<(&str, Vec<&str>)> = Vec::new();
        let next_index = state.index.len();
        state.index.insert(root, next_index);
        state.low.insert(root, next_index);
        state.stack.push(root);
        state.on_stack.insert(root);
        work.push((root, graph[root].keys().map(String::as_str).collect()));
        while let Some((module, successors)) = work.last_mut() {
            let module = *module;
            if let Some(next) = successors.pop() {
                if !state.index.contains_key(next) {
                    let next_index = state.index.len();
                    state.index.insert(next, next_index);
                    state.low.insert(next, next_index);
                    state.stack.push(next);
                    state.on_stack.insert(next);
                    let successors = graph
                        .get(next)
                        .map(|imports| imports.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    work.push((next, successors));
                } else if state.on_stack.contains(next) {
                    let low = state.low[module].min(state.index[next]);
                    state.low.insert(module, low);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                let low = state.low[parent].min(state.low[module]);
                state.low.insert(parent, low);
            }
            if state.low[module] == state.index[module] {
                let mut component = BTreeSet::new();
                while let Some(member) = state.stack.pop() {
                    state.on_stack.remove(member);
                    component.insert(member.to_owned());
                    if member == module {
                        break;
                    }
                }
                state.components.push(component);
            }
        }
    }
    state.components
}

/// Every module file under `src` with its module path: `lib.rs` (else `main.rs`) is the root,
/// `a.rs` and `a/mod.rs` are `crate::a`, `a/b.rs` is `crate::a::b`.
fn module_files(src: &Path) -> Result<Vec<(String, PathBuf)>> {
    let root_file = ["lib.rs", "main.rs"]
        .iter()
        .map(|name| src.join(name))
        .find(|path| path.is_file())
        .with_context(|| format!("{} has neither lib.rs nor main.rs", src.display()))?;
    let mut files = vec![(ROOT.to_owned(), root_file.clone())];
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let is_crate_root = folder == src
                && matches!(
                    path.file_name().and_then(|name| name.to_str()),
                    Some("lib.rs" | "main.rs")
                );
            if path.extension().is_some_and(|extension| extension == "rs") && !is_crate_root {
                files.push((module_of(src, &path), path));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The module path of a non-root file under `src`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut segments: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segments.last().is_some_and(|last| last == "mod") {
        segments.pop();
    }
    std::iter::once(ROOT.to_owned())
        .chain(segments)
        .collect::<Vec<_>>()
        .join("::")
}

/// The deepest known module that `path` (from the crate root) names.
fn deepest_module(modules: &BTreeSet<String>, path: &[String]) -> String {
    (1..=path.len())
        .rev()
        .map(|length| path[..length].join("::"))
        .find(|candidate| modules.contains(candidate))
        .unwrap_or_else(|| ROOT.to_owned())
}

/// One token of Rust source, as far as module paths need.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSeparator,
    Punct(char),
}

/// Tokens with their line numbers; comments, strings and character literals dropped.
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut at, mut line) = (0, 1);
    let peek = |at: usize| chars.get(at).copied().unwrap_or('\0');
    while at < chars.len() {
        let c = chars[at];
        match c {
            '\n' => {
                line += 1;
                at += 1;
            }
            '/' if peek(at + 1) == '/' => {
                while at < chars.len() && chars[at] != '\n' {
                    at += 1;
                }
            }
            '/' if peek(at + 1) == '*' => {
                let mut depth = 0;
                while at < chars.len() {
                    if chars[at] == '/' && peek(at + 1) == '*' {
                        depth += 1;
                        at += 2;
                    } else if chars[at] == '*' && peek(at + 1) == '/' {
                        depth -= 1;
                        at += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        line += usize::from(chars[at] == '\n');
                        at += 1;
                    }
                }
            }
            '"' => at = skip_string(&chars, at, 0, &mut line),
            '\'' => at = skip_char_or_lifetime(&chars, at),
            ':' if peek(at + 1) == ':' => {
                tokens.push((Token::PathSeparator, line));
                at += 2;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = at;
                while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                    at += 1;
                }
                let word: String = chars[start..at].iter().collect();
                let raw_string_prefix = matches!(word.as_str(), "r" | "br" | "cr");
                if raw_string_prefix && matches!(peek(at), '"' | '#') {
                    let hashes = chars[at..].iter().take_while(|c| **c == '#').count();
                    if peek(at + hashes) == '"' {
                        at = skip_string(&chars, at + hashes, hashes, &mut line);
                        continue;
                    }
                }
                if matches!(word.as_str(), "b" | "c") && peek(at) == '"' {
                    at = skip_string(&chars, at, 0, &mut line);
                    continue;
                }
                if word == "b" && peek(at) == '\'' {
                    at = skip_char_or_lifetime(&chars, at);
                    continue;
                }
                tokens.push((Token::Ident(word), line));
            }
            c if c.is_whitespace() => at += 1,
            c => {
                tokens.push((Token::Punct(c), line));
                at += 1;
            }
        }
    }
    tokens
}

/// Past the string literal whose opening quote is at `at`, closed by a quote and `hashes` `#`
/// (a raw string when `hashes` > 0 or the caller says so; escapes only in plain strings).
fn skip_string(chars: &[char], at: usize, hashes: usize, line: &mut usize) -> usize {
    let raw = hashes > 0 || (at > 0 && chars[at - 1] == 'r');
    let mut at = at + 1;
    while at < chars.len() {
        match chars[at] {
            '\\' if !raw => at += 2,
            '"' if chars[at + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes =>
            {
                return at + 1 + hashes;
            }
            c => {
                *line += usize::from(c == '\n');
                at += 1;
            }
        }
    }
    at
}

/// Past a character literal at `at` (`'x'`, `'\n'`, `'\u{1F600}'`), or past the quote of a
/// lifetime (`'a`), whose name is then read as a word.
fn skip_char_or_lifetime(chars: &[char], at: usize) -> usize {
    match (chars.get(at + 1), chars.get(at + 2)) {
        (Some('\\'), _) => {
            let mut end = at + 3;
            while end < chars.len() && chars[end] != '\'' {
                end += 1;
            }
            end + 1
        }
        (Some(_), Some('\'')) => at + 3,
        _ => at + 1,
    }
}

/// A path found in a module, from the crate root.
#[derive(Debug)]
struct FoundPath {
    from: String,
    path: Vec<String>,
    line: usize,
}

/// What one file holds: the paths it names and its inline modules.
#[derive(Debug, Default)]
struct FileModules {
    paths: Vec<FoundPath>,
    inline_modules: Vec<String>,
}

/// The `crate::` and `super::` paths of a file whose module is `module`.
fn paths_of(module: &str, tokens: &[(Token, usize)]) -> FileModules {
    let mut found = FileModules::default();
    // The inline modules open at this point, with the brace depth each closes at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let current = |inline: &[(String, usize)]| {
        inline
            .last()
            .map_or_else(|| module.to_owned(), |(name, _)| name.clone())
    };
    let ident = |at: usize| match tokens.get(at) {
        Some((Token::Ident(word), _)) => Some(word.as_str()),
        _ => None,
    };
    let mut at = 0;
    while at < tokens.len() {
        let (token, line) = &tokens[at];
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, closes)| *closes == depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(name), Some((Token::Punct('{'), _))) =
                    (ident(at + 1), tokens.get(at + 2))
                {
                    let path = format!("{}::{name}", current(&inline));
                    found.inline_modules.push(path.clone());
                    inline.push((path, depth));
                }
            }
            Token::Ident(word)
                if (word == "crate" || word == "super")
                    && tokens.get(at + 1).map(|(token, _)| token)
                        == Some(&Token::PathSeparator)
                    && !matches!(
                        at.checked_sub(1).map(|before| &tokens[before].0),
                        Some(Token::Punct('$') | Token::PathSeparator)
                    ) =>
            {
                let from = current(&inline);
                let mut base: Vec<String> = from.split("::").map(str::to_owned).collect();
                let mut next = at;
                if word == "crate" {
                    base.truncate(1);
                    next += 2;
                } else {
                    while ident(next) == Some("super")
                        && tokens.get(next + 1).map(|(token, _)| token)
                            == Some(&Token::PathSeparator)
                    {
                        if base.len() > 1 {
                            base.pop();
                        }
                        next += 2;
                    }
                }
                let mut paths = Vec::new();
                at = use_tree(tokens, next, base, &mut paths);
                found.paths.extend(paths.into_iter().map(|path| FoundPath {
                    from: from.clone(),
                    path,
                    line: *line,
                }));
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    found
}

/// Reads the path or `use` tree starting at `at` under `prefix`, pushing every full path, and
/// returns where it ends.
fn use_tree(
    tokens: &[(Token, usize)],
    mut at: usize,
    prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix;
    loop {
        match tokens.get(at).map(|(token, _)| token) {
            Some(Token::Ident(word)) if word == "self" => {
                at += 1;
                break;
            }
            Some(Token::Ident(word)) => {
                path.push(word.clone());
                at += 1;
                if tokens.get(at).map(|(token, _)| token) == Some(&Token::PathSeparator) {
                    at += 1;
                    continue;
                }
                break;
            }
            Some(Token::Punct('{')) => {
                at += 1;
                loop {
                    match tokens.get(at).map(|(token, _)| token) {
                        None => return at,
                        Some(Token::Punct('}')) => return at + 1,
                        Some(Token::Punct(',')) => at += 1,
                        Some(_) => {
                            let before = at;
                            at = use_tree(tokens, at, path.clone(), out);
                            // `as name` and anything else a group holds: step over it.
                            while let Some((token, _)) = tokens.get(at) {
                                if matches!(token, Token::Punct(',' | '}')) {
                                    break;
                                }
                                at += 1;
                            }
                            if at == before {
                                at += 1;
                            }
                        }
                    }
                }
            }
            // `*`, or the path ends.
            Some(Token::Punct('*')) => {
                at += 1;
                break;
            }
            _ => break,
        }
    }
    out.push(path);
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary folder");
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("folder");
            std::fs::write(path, text).expect("written");
        }
        dir
    }

    fn cycles_of(files: &[(&str, &str)]) -> Vec<Vec<String>> {
        let dir = crate_with(files);
        ModuleGraph::read(dir.path()).expect("read").cycles()
    }

    #[test]
    fn a_cycle_through_crate_and_super_paths_is_found_with_its_lines() {
        let dir = crate_with(&[
            ("lib.rs", "pub mod api;\npub mod limits;\n"),
            ("api/mod.rs", "pub mod auth;\nuse crate::limits::Tier;\n"),
            ("api/auth.rs", "use super::Tags;\n"),
            (
                "limits.rs",
                "//! [`crate::nothing`]\n\n\nfn f() { crate::api::auth::login(); }\n",
            ),
        ]);
        let graph = ModuleGraph::read(dir.path()).expect("read");
        let cycles = graph.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(
            graph.describe(&cycles[0]),
            "crate::api -> crate::limits (api/mod.rs:2) -> crate::api::auth (limits.rs:4) \
             -> crate::api (api/auth.rs:1)"
        );
    }

    #[test]
    fn groups_nested_groups_and_renames_are_edges() {
        let cycles = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::{c::X as Y, b::{self, inner::Z}};\n"),
            ("b.rs", "pub mod inner;\n"),
            ("b/inner.rs", "use crate::a;\n"),
            ("c.rs", ""),
        ]);
        assert_eq!(
            cycles,
            vec![vec![
                "crate::a".to_owned(),
                "crate::b::inner".to_owned(),
                "crate::a".to_owned()
            ]]
        );
    }

    #[test]
    fn a_parent_naming_its_children_and_comments_strings_and_tests_make_no_cycle() {
        let cycles = cycles_of(&[
            ("lib.rs", "pub mod api;\npub mod policy;\n"),
            (
                "api/mod.rs",
                "pub mod auth;\nuse crate::policy::PUBLIC;\nfn f() { auth::handler(); }\n\
                 // crate::api::auth::x\nconst S: &str = \"crate::api::auth\";\n\
                 const R: &str = r#\"super::\"#;\nfn g<'a>(c: char) -> bool { c == '{' }\n",
            ),
            (
                "api/auth.rs",
                "use super::Tags;\nuse crate::policy::PUBLIC;\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::api::auth::handler;\n}\n",
            ),
            ("policy.rs", "pub const PUBLIC: &[&str] = &[];\n"),
        ]);
        assert!(cycles.is_empty(), "{cycles:?}");
    }

    #[test]
    fn the_checked_folders_hold_no_cycle() {
        check_all(&crate::repository_root()).expect("no import cycle");
    }
}
