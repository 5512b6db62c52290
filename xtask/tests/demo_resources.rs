//! `cargo xtask new` without the demo resources (its default) and with them: the project it
//! leaves has no trace of notes or payments, records the option, and is the same every time
//! (`cargo xtask upgrade` takes the demo out of two renderings and merges their difference).
//! The project building and passing its suite is checked by `cargo xtask ci`, on the project
//! the upgrade test generates this way (`rampart_xtask::ci::owned_project_dir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rampart_xtask::provenance::Provenance;
use rampart_xtask::{new, repository_root};

/// The security crate is a library whose unit tests route requests of their own through its
/// middleware (`/notes/{id}`, a `payment` tier): fixtures of the tests, not the project's API.
const NOT_THE_PROJECTS_API: &str = "crates/security";

/// Every text file of the project, by relative path.
fn text_files(project: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(base: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let relative = path.strip_prefix(base).expect("inside").to_path_buf();
            if relative.starts_with(".git") || relative.starts_with("target") {
                continue;
            }
            if path.is_dir() {
                walk(base, &path, files);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                files.insert(relative, text);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(project, project, &mut files);
    files
}

/// The places `text` names a demo resource: the words note(s) and payment(s), alone or opening
/// an identifier (`NotesApi`, `PaymentsWrite`, `payment_id`), and idempotency keys.
fn demo_mentions(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let lower = line.to_lowercase();
        let names_demo = lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| {
                word == "note"
                    || word.starts_with("notes")
                    || word.starts_with("payment")
                    || word.starts_with("idempoten")
            });
        if names_demo {
            found.push(format!("{}: {line}", number + 1));
        }
    }
    found
}

fn create(defines: &[&str], parent: &Path) -> PathBuf {
    let defines: Vec<String> = defines.iter().map(|&define| define.to_owned()).collect();
    new::create(&repository_root(), "plain-service", &defines, parent, false)
        .unwrap_or_else(|error| panic!("{error:#}"))
}

#[test]
fn a_new_project_has_no_demo_resources_and_no_reference_to_them() {
    let parent = tempfile::tempdir().expect("tempdir");
    let project = create(&[], parent.path());
    let files = text_files(&project);

    let mentions: Vec<String> = files
        .iter()
        .filter(|(path, _)| !path.starts_with(NOT_THE_PROJECTS_API))
        .flat_map(|(path, text)| {
            demo_mentions(text)
                .into_iter()
                .map(move |mention| format!("{}:{mention}", path.display()))
        })
        .collect();
    assert!(
        mentions.is_empty(),
        "the demo resources are still named:\n{}",
        mentions.join("\n")
    );
    for file in xtask::remove_demo::removals::DEMO_FILES {
        assert!(!project.join(file).exists(), "{file} is left");
    }
    let record = Provenance::read(&project).expect("the record");
    assert_eq!(
        record.options.get("demo_resources").map(String::as_str),
        Some("false")
    );
    // Nothing is left to remove, and the command says so.
    let again = xtask::remove_demo::plan(&project, None).expect_err("removed already");
    assert!(format!("{again}").contains("removed already"), "{again}");
}

#[test]
fn the_same_options_give_the_same_project_every_time() {
    let (first, second) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (first, second) = (create(&[], first.path()), create(&[], second.path()));
    let (first, second) = (text_files(&first), text_files(&second));
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (path, text) in &first {
        assert!(&second[path] == text, "{} differs", path.display());
    }
}

#[test]
fn demo_resources_true_keeps_the_demo_and_records_it() {
    let parent = tempfile::tempdir().expect("tempdir");
    let project = create(&["demo_resources=true"], parent.path());
    for file in xtask::remove_demo::removals::DEMO_FILES {
        assert!(project.join(file).exists(), "{file} is missing");
    }
    let record = Provenance::read(&project).expect("the record");
    assert_eq!(
        record.options.get("demo_resources").map(String::as_str),
        Some("true")
    );
    // The demo is there to be named, so the scan above can find it.
    let api = std::fs::read_to_string(project.join("crates/app/src/api/mod.rs")).expect("read");
    assert!(!demo_mentions(&api).is_empty());
}
