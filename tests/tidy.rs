//! Tidiness of the workspace's source, checked as a test (in the style of rust-analyzer's
//! `tidy.rs`): every Rust file opens with a `//!` line saying what it does, every path
//! ARCHITECTURE.md names exists, SQLite and axum stay in the layers that own them, and no source
//! file grows past 800 lines except the few listed (with the reason) below.

use std::path::{Path, PathBuf};

/// Files allowed over [`MAX_LINES`], each with why. Remove an entry when its file is split.
const LONG_FILES: &[(&str, &str)] = &[];

/// The longest a source file may be.
const MAX_LINES: usize = 800;

/// Where `rusqlite` may appear: the server's storage, the device's store and the protocol's
/// migration runner (its `sqlite` feature), and one benchmark's fixture.
const RUSQLITE_ALLOWED: &[&str] = &[
    "server/src/storage/",
    "client-core/src/store",
    "protocol/src/migrate.rs",
    // A benchmark's fixture: half a million records written straight into the server's tables,
    // which through sync would take an hour.
    "examples/bench_province.rs",
];

/// Where `axum` may appear: the server's HTTP and dashboard layers, and the field app.
const AXUM_ALLOWED: &[&str] = &[
    "app/",
    "server/src/lib.rs",
    "server/src/routes.rs",
    "server/src/sync.rs",
    "server/src/api.rs",
    "server/src/attachments.rs",
    "server/src/admin.rs",
    "server/src/auth.rs",
    "server/src/edge.rs",
    "server/src/error.rs",
    "server/src/headers.rs",
    "server/src/net.rs",
    "server/src/refusals.rs",
    "server/src/ui/",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's files whose names end with one of `extensions`, relative to its root, with
/// `/` separators, sorted; `target/`, `node_modules/` and hidden folders are skipped.
fn files_ending(extensions: &[&str]) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, extensions: &[&str], out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules") && !name.starts_with('.') {
                    walk(&path, root, extensions, out);
                }
            } else if extensions.iter().any(|ext| name.ends_with(ext)) {
                let rel = path.strip_prefix(root).expect("under the root");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &root(), extensions, &mut out);
    out.sort();
    out
}

/// Every `.rs` file of the workspace, relative to its root, with `/` separators.
fn rust_files() -> Vec<String> {
    let out = files_ending(&[".rs"]);
    assert!(
        out.iter().any(|f| f == "server/src/ingest/mod.rs"),
        "the walk found the workspace's sources"
    );
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Whether `text` uses crate `name` (a `use`, a path, an `extern crate`), ignoring comments.
fn uses_crate(text: &str, name: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
        .any(|l| {
            l.match_indices(name).any(|(at, _)| {
                let before = l[..at].chars().next_back();
                let after = &l[at + name.len()..];
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after.starts_with("::")
            })
        })
}

#[test]
fn every_rust_file_says_what_it_does_in_its_first_line() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|f| {
            let text = read(f);
            let first = text.lines().next().unwrap_or("");
            !(first.starts_with("//! ") && first.len() > 8)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they do: {missing:#?}"
    );
}

#[test]
fn no_source_file_is_longer_than_800_lines_unless_listed() {
    let files = rust_files();
    let mut long = Vec::new();
    for f in &files {
        let lines = read(f).lines().count();
        let listed = LONG_FILES.iter().any(|(name, _)| name == f);
        if lines > MAX_LINES && !listed {
            long.push(format!("{f}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "split these by concern (or list them with a reason): {long:#?}"
    );
    for (name, why) in LONG_FILES {
        assert!(
            files.iter().any(|f| f == name),
            "{name} is listed as long ({why}) but does not exist: remove it from LONG_FILES"
        );
    }
}

#[test]
fn sqlite_and_axum_stay_in_their_layers() {
    for f in rust_files() {
        if f == "tests/tidy.rs" {
            continue;
        }
        let text = read(&f);
        if uses_crate(&text, "rusqlite") {
            assert!(
                RUSQLITE_ALLOWED.iter().any(|p| f.starts_with(p)),
                "{f} uses rusqlite; SQLite belongs in storage modules (server/src/storage/…, \
                 the client store, the protocol's migrations)"
            );
        }
        if uses_crate(&text, "axum") {
            assert!(
                AXUM_ALLOWED.iter().any(|p| f.starts_with(p)),
                "{f} uses axum; HTTP belongs in the server's HTTP and UI layers and the app"
            );
        }
    }
    // The checks can fail: the storage does use rusqlite and the router axum.
    assert!(uses_crate(
        &read("server/src/storage/sqlite/mod.rs"),
        "rusqlite"
    ));
    assert!(uses_crate(&read("server/src/routes.rs"), "axum"));
    assert!(!uses_crate("// rusqlite::Connection", "rusqlite"));
}

#[test]
fn every_path_architecture_md_names_exists() {
    let text = read("ARCHITECTURE.md");
    let root = root();
    // Paths in a crate's section may be written relative to that crate (`routes/mod.rs` in the
    // app's section is `app/src/routes/mod.rs`).
    let mut section = root.clone();
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            let name = heading
                .split('`')
                .nth(1)
                .unwrap_or("")
                .trim_end_matches('/');
            section = if !name.is_empty() && root.join(name).is_dir() && name != "tests" {
                root.join(name)
            } else {
                root.clone()
            };
            continue;
        }
        for (i, token) in line.split('`').enumerate() {
            if i % 2 == 0 || !token.contains('/') {
                continue;
            }
            let placeholder = token.contains(['{', '<', '*', '…', ' ', '|', '(']);
            if token.starts_with('/') || token.starts_with("target/") || placeholder {
                continue;
            }
            let candidates = [
                root.join(token),
                section.join(token),
                section.join("src").join(token),
            ];
            checked += 1;
            if !candidates.iter().any(|p| p.exists()) {
                missing.push(token.to_string());
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found in ARCHITECTURE.md"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:#?}"
    );
}

/// Text files of the workspace that a merge could leave markers in: Rust, Markdown, TOML,
/// scripts and the pages' JavaScript, and `.ci/run`.
fn text_files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        files_ending(&[".rs", ".md", ".toml", ".sh", ".mjs", ".kt", ".swift"])
            .into_iter()
            .map(|rel| root().join(rel))
            .collect();
    out.push(root().join(".ci/run"));
    out
}

#[test]
fn no_file_holds_a_merge_conflict_marker() {
    let markers = ["<<<<<<< ", "=======", ">>>>>>> "];
    let mut found = Vec::new();
    let files = text_files();
    assert!(files.len() > 100, "only {} text files found", files.len());
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let marker = markers
                .iter()
                .any(|m| line.starts_with(m) && (m.ends_with(' ') || line == *m));
            if marker {
                let rel = path.strip_prefix(root()).unwrap_or(&path);
                found.push(format!("{}:{}: {line}", rel.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "merge conflict markers left in: {found:#?}"
    );
}
