//! `cargo xtask new` and `cargo xtask upgrade` with real git and real renders: a test Rampart
//! repository holds a copy of this repository's template (commit 1); a project is generated from
//! it and changed as its owners would change it; the template changes (commit 2); the project
//! is upgraded by the real `rampart-xtask` binary, run as from that test repository.
//!
//! The last test, ignored by a plain `cargo test` and run by `cargo xtask ci`, builds the
//! upgraded project and leaves it in `target/ownership/`, where `cargo xtask ci` scaffolds a
//! resource into it and runs its clippy and whole suite (see `rampart_xtask::ci::owned_project_dir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use rampart_xtask::{ci, demo, repository_root};

/// A line of `config/default.toml` the owners edit, and what they and Rampart make of it.
const GRACE: &str = "shutdown_grace_seconds = 30";
const OWNERS_GRACE: &str = "shutdown_grace_seconds = 10";
const RAMPARTS_GRACE: &str = "shutdown_grace_seconds = 20";

/// The owners' endpoint module and its declaration.
const ENDPOINT_FILE: &str = "crates/app/src/api/widgets.rs";
const ENDPOINT_DECLARATION: &str = "pub mod users;\npub mod widgets;\n";

/// Rampart's edit of the first line of `api/mod.rs`, far from the owners' declaration.
const API_DOC: &str = "//! The HTTP API: one module per OpenAPI tag.";
const RAMPARTS_API_DOC: &str = "//! The HTTP API of the service: one module per OpenAPI tag.";

/// Files of the scenario.
const DELETED_DOC: &str = "docs/audit-events.md";
const DELETED_DOC_RAMPART_CHANGES: &str = "docs/deployment.md";
const NEW_FILE: &str = "docs/upgrading.md";
const RETIRED_FILE: &str = "docs/retired.md";
/// A demo file Rampart changes: the project, generated without the demo, must not get it back.
const DEMO_FILE: &str = "crates/app/src/api/notes.rs";

/// A test Rampart repository and a project generated from its first commit.
struct Scenario {
    rampart: PathBuf,
    project: PathBuf,
    first: String,
    second: String,
    /// The owners' last commit in the project.
    owners_commit: String,
}

/// Builds the scenario under `parent`. With `conflicting`, Rampart also changes the owners'
/// config line and a file they deleted; without, the upgrade merges cleanly.
fn scenario(parent: &Path, conflicting: bool) -> Scenario {
    let rampart = parent.join("rampart");
    copy_tree(
        &repository_root().join("template"),
        &rampart.join("template"),
    );
    std::fs::write(
        rampart.join("template").join(RETIRED_FILE),
        "Retired later.\n",
    )
    .expect("write");
    git(&rampart, &["init", "--quiet"]);
    let first = commit_all(&rampart, "Rampart 1");

    let created = xtask(&rampart)
        .args(["new", ci::OWNED_PROJECT, "--destination"])
        .arg(parent)
        .output()
        .expect("run xtask new");
    assert_success(&created, "xtask new");
    let project = parent.join(ci::OWNED_PROJECT);
    assert_eq!(
        git(&project, &["rev-list", "--count", "HEAD"]),
        "1",
        "`new` makes one commit"
    );

    // The owners: an endpoint module, a config value, two documents they do not want.
    std::fs::write(
        project.join(ENDPOINT_FILE),
        "//! Widgets: the owners' first module of their own.\n\n\
         /// The widgets one page holds at most.\npub const MAX_WIDGETS_PER_PAGE: u32 = 50;\n",
    )
    .expect("write");
    edit(
        &project.join("crates/app/src/api/mod.rs"),
        "pub mod users;\n",
        ENDPOINT_DECLARATION,
    );
    edit(&project.join("config/default.toml"), GRACE, OWNERS_GRACE);
    std::fs::remove_file(project.join(DELETED_DOC)).expect("delete");
    if conflicting {
        std::fs::remove_file(project.join(DELETED_DOC_RAMPART_CHANGES)).expect("delete");
    }
    let owners_commit = commit_all(&project, "Our changes");

    // Rampart: a release touching the owners' files and others.
    let template = rampart.join("template");
    edit(
        &template.join("Cargo.toml.liquid"),
        "version = \"0.9.0\"",
        "version = \"0.9.1\"",
    );
    edit(
        &template.join("crates/app/src/api/mod.rs"),
        API_DOC,
        RAMPARTS_API_DOC,
    );
    edit(
        &template.join("README.md"),
        "## Layout\n",
        "## Layout\n\nUpdated by Rampart.\n",
    );
    std::fs::write(template.join(NEW_FILE), "How to take Rampart's fixes.\n").expect("write");
    append(&template.join(DEMO_FILE), "\n// Changed by Rampart.\n");
    std::fs::remove_file(template.join(RETIRED_FILE)).expect("remove");
    if conflicting {
        edit(&template.join("config/default.toml"), GRACE, RAMPARTS_GRACE);
        append(
            &template.join(DELETED_DOC_RAMPART_CHANGES),
            "\nChanged by Rampart.\n",
        );
    }
    let second = commit_all(&rampart, "Rampart 2");
    Scenario {
        rampart,
        project,
        first,
        second,
        owners_commit,
    }
}

#[test]
fn an_upgrade_merges_rampart_changes_keeps_the_owners_and_marks_conflicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario(dir.path(), true);
    let project = &scenario.project;

    let upgraded = upgrade(&scenario, &[]);
    let report = String::from_utf8_lossy(&upgraded.stderr);
    assert_eq!(
        upgraded.status.code(),
        Some(1),
        "conflicts left make the upgrade exit 1:\n{report}"
    );

    let api = read(&project.join("crates/app/src/api/mod.rs"));
    assert!(
        api.contains(RAMPARTS_API_DOC)
            && api.contains(ENDPOINT_DECLARATION)
            && !api.contains("<<<<<<<"),
        "both sides' changes to api/mod.rs merge cleanly:\n{api}"
    );
    assert!(
        project.join(ENDPOINT_FILE).is_file(),
        "the owners' own file stays"
    );
    let config = read(&project.join("config/default.toml"));
    assert!(
        config.contains("<<<<<<< project")
            && config.contains(OWNERS_GRACE)
            && config.contains(RAMPARTS_GRACE)
            && config.contains(">>>>>>> Rampart 0.9.1"),
        "the config value both changed is marked as a conflict:\n{config}"
    );
    assert!(
        report.contains("config/default.toml: CONFLICT"),
        "the conflict is listed:\n{report}"
    );
    assert!(
        !project.join(DELETED_DOC).exists(),
        "a file the owners deleted and Rampart left alone stays deleted"
    );
    // Rampart's version as a project generated now has it (by `new`: without the demo).
    let fresh = dir.path().join("fresh");
    let created = xtask(&scenario.rampart)
        .args(["new", ci::OWNED_PROJECT, "--no-git", "--destination"])
        .arg(&fresh)
        .output()
        .expect("run xtask new");
    assert_success(&created, "xtask new");
    let ramparts = read(
        &fresh
            .join(ci::OWNED_PROJECT)
            .join(DELETED_DOC_RAMPART_CHANGES),
    );
    assert!(ramparts.ends_with("Changed by Rampart.\n"), "{ramparts}");
    assert_eq!(
        read(&project.join(DELETED_DOC_RAMPART_CHANGES)),
        ramparts,
        "a deleted file Rampart changed comes back as Rampart's"
    );
    assert!(
        report.contains(&format!("{DELETED_DOC_RAMPART_CHANGES}: CONFLICT")),
        "and is listed as a conflict:\n{report}"
    );
    assert_eq!(
        read(&project.join(NEW_FILE)),
        "How to take Rampart's fixes.\n",
        "a new template file is added"
    );
    assert!(
        !project.join(RETIRED_FILE).exists(),
        "a file Rampart removed, unchanged by the owners, is removed"
    );
    assert!(
        read(&project.join("README.md")).contains("Updated by Rampart."),
        "a file the owners left as generated takes Rampart's version"
    );
    let manifest = read(&project.join("Cargo.toml"));
    assert!(
        manifest.contains("version = \"0.9.1\"")
            && manifest.contains(&format!("commit = \"{}\"", scenario.second)),
        "the record names the new version and commit:\n{manifest}"
    );
    assert_eq!(
        read(&project.join("Cargo.lock")),
        read(&scenario.rampart.join("template/Cargo.lock")),
        "the lockfile is Rampart's, resolved again (the owners added no package)"
    );
    assert_eq!(
        git(project, &["rev-parse", "HEAD"]),
        scenario.owners_commit,
        "nothing is committed"
    );
    assert!(report.contains("Nothing is committed. Next:"), "{report}");
}

#[test]
fn a_clean_upgrade_exits_zero_and_the_record_moves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario(dir.path(), false);
    let upgraded = upgrade(&scenario, &[]);
    assert_success(&upgraded, "xtask upgrade");
    let config = read(&scenario.project.join("config/default.toml"));
    assert!(config.contains(OWNERS_GRACE), "the owners' value stays");
    // `new` left the demo out and the upgrade took it out of both renderings: Rampart's change
    // to a demo file neither returns it nor conflicts.
    assert!(
        !scenario.project.join(DEMO_FILE).exists(),
        "{DEMO_FILE} came back"
    );
    assert!(read(&scenario.project.join("Cargo.toml")).contains("demo_resources = \"false\""));

    commit_all(&scenario.project, "Upgrade");
    let again = upgrade(&scenario, &[]);
    assert_success(&again, "a second upgrade");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("at this Rampart commit already"),
        "the record names the new commit, so there is nothing left to do"
    );

    // A checkout at the older release would take every file the owners left alone back.
    git(&scenario.rampart, &["checkout", "--quiet", &scenario.first]);
    let backwards = upgrade(&scenario, &[]);
    let report = String::from_utf8_lossy(&backwards.stderr);
    assert!(
        !backwards.status.success() && report.contains("does not descend from"),
        "an upgrade to an older Rampart is refused:\n{report}"
    );
    assert!(
        git(&scenario.project, &["status", "--porcelain"]).is_empty(),
        "and changes nothing"
    );
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario(dir.path(), true);
    let before = tree(&scenario.project);
    let planned = upgrade(&scenario, &["--dry-run"]);
    assert_success(&planned, "xtask upgrade --dry-run");
    let report = String::from_utf8_lossy(&planned.stderr);
    for line in [
        "config/default.toml: CONFLICT".to_owned(),
        "crates/app/src/api/mod.rs: merged".to_owned(),
        format!("{NEW_FILE}: added"),
        format!("{RETIRED_FILE}: removed"),
        format!("{DELETED_DOC}: stays deleted"),
        "Cargo.lock: resolved again".to_owned(),
    ] {
        assert!(report.contains(&line), "the plan says {line:?}:\n{report}");
    }
    assert!(
        tree(&scenario.project) == before,
        "a dry run changes no file"
    );
}

#[test]
fn an_upgrade_refuses_a_project_with_uncommitted_changes_or_without_git() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario(dir.path(), false);
    append(&scenario.project.join("README.md"), "\nWork in progress.\n");
    let before = tree(&scenario.project);
    let refused = upgrade(&scenario, &[]);
    let report = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && report.contains("has uncommitted changes")
            && report.contains("README.md"),
        "a dirty tree is refused, naming the changes:\n{report}"
    );
    assert!(
        tree(&scenario.project) == before,
        "a refusal changes no file"
    );

    let unversioned = dir.path().join("unversioned");
    copy_tree(&scenario.project, &unversioned);
    std::fs::remove_dir_all(unversioned.join(".git")).expect("remove .git");
    let refused = xtask(&scenario.rampart)
        .args(["upgrade", "--project"])
        .arg(&unversioned)
        .output()
        .expect("run xtask upgrade");
    let report = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && report.contains("is not a git repository"),
        "a folder without git is refused:\n{report}"
    );
}

#[test]
fn from_adopts_a_project_that_records_no_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario(dir.path(), false);
    let manifest_path = scenario.project.join("Cargo.toml");
    let manifest = read(&manifest_path);
    let recorded = format!(
        "commit = \"{}\"{}\n",
        scenario.first,
        rampart_xtask::provenance::COMMIT_PRAGMA
    );
    assert!(manifest.contains(&recorded), "`new` records the commit");
    std::fs::write(
        &manifest_path,
        manifest.replace(
            &recorded,
            &format!(
                "commit = \"\"{}\n",
                rampart_xtask::provenance::COMMIT_PRAGMA
            ),
        ),
    )
    .expect("write");
    commit_all(
        &scenario.project,
        "As generated before Rampart recorded commits",
    );

    let refused = upgrade(&scenario, &[]);
    let report = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && report.contains("records no Rampart commit")
            && report.contains("--from"),
        "no commit and no --from is refused, pointing at --from:\n{report}"
    );

    let adopted = upgrade(&scenario, &["--from", &scenario.first]);
    assert_success(&adopted, "xtask upgrade --from");
    assert!(
        read(&manifest_path).contains(&format!("commit = \"{}\"", scenario.second)),
        "the adopted project records the commit it was upgraded to"
    );
    assert!(read(&scenario.project.join(NEW_FILE)).contains("Rampart's fixes"));
}

/// The upgraded project of the clean scenario builds, tests included, in `target/ownership/`, on
/// the target folder the variants share. `cargo xtask ci` then scaffolds a resource into this same
/// project and runs its clippy and whole suite (`scaffold_check`), so one extra project proves both.
#[test]
#[ignore = "builds a rendered project; `cargo xtask ci` runs it, then the project's suite"]
fn an_upgraded_project_builds() {
    let root = repository_root();
    let project_dir = ci::owned_project_dir(&root);
    let parent = project_dir.parent().expect("a parent folder");
    let _ = std::fs::remove_dir_all(parent);
    std::fs::create_dir_all(parent).expect("create target/ownership");
    let scenario = scenario(parent, false);
    assert_eq!(scenario.project, project_dir);
    assert_success(&upgrade(&scenario, &[]), "xtask upgrade");

    let started = Instant::now();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .current_dir(&scenario.project)
        .env("CARGO_TARGET_DIR", demo::shared_target_dir(&root))
        .args(["build", "--locked", "--workspace", "--all-targets"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "the upgraded project does not build");
    eprintln!(
        "the upgraded project built in {} s",
        started.elapsed().as_secs()
    );
}

fn upgrade(scenario: &Scenario, extra: &[&str]) -> Output {
    xtask(&scenario.rampart)
        .args(["upgrade", "--project"])
        .arg(&scenario.project)
        .args(extra)
        .output()
        .expect("run xtask upgrade")
}

/// The real `rampart-xtask` binary, run as from the Rampart checkout at `rampart`.
fn xtask(rampart: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rampart-xtask"));
    command
        .env("CARGO_MANIFEST_DIR", rampart.join("xtask"))
        .env("CARGO_NAME", "owner");
    with_identity(&mut command);
    command
}

/// A git identity of the test's own, whatever the machine's configuration holds.
fn with_identity(command: &mut Command) {
    for (key, value) in [
        ("GIT_AUTHOR_NAME", "Owner"),
        ("GIT_AUTHOR_EMAIL", "owner@example.test"),
        ("GIT_COMMITTER_NAME", "Owner"),
        ("GIT_COMMITTER_EMAIL", "owner@example.test"),
    ] {
        command.env(key, value);
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new("git");
    command.arg("-C").arg(dir).args(args);
    with_identity(&mut command);
    let output = command.output().expect("run git");
    assert_success(&output, &format!("git {}", args.join(" ")));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "--message", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Replaces the one occurrence of `from` in the file at `path`.
fn edit(path: &Path, from: &str, to: &str) {
    let text = read(path);
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} once in {}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

fn append(path: &Path, addition: &str) {
    std::fs::write(path, read(path) + addition).expect("write");
}

/// Copies the folder `from` to `to`, without build output or local data.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("a name");
        if name == "target" || name == "data" {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(name));
        } else {
            std::fs::copy(&path, to.join(name)).expect("copy");
        }
    }
}

/// Every file under `dir` with its contents, and the commit checked out (`git status` may
/// refresh the index, so `.git` itself is not compared).
fn tree(dir: &Path) -> (String, BTreeMap<PathBuf, Vec<u8>>) {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|name| name == ".git") {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).expect("read"));
            }
        }
    }
    (git(dir, &["rev-parse", "HEAD"]), files)
}
