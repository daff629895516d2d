//! The layers the compiler cannot keep by itself: HTTP handlers (`api/`,
//! `extract.rs`) call services; services (`service/`) hold the rules and
//! call the store; the store (`store/`) only persists. This test reads the
//! source tree and fails on an import that crosses a layer the wrong way.

use std::path::{Path, PathBuf};

/// (directory under `src/`, what files there may not name, why)
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "api",
        &["crate::store", ".store."],
        "handlers go through services, which hold the rules",
    ),
    (
        "service",
        &[
            "crate::api",
            "crate::extract",
            "axum::extract",
            "axum::Json",
            "axum::routing",
        ],
        "services know nothing of HTTP requests (an error's status is fine)",
    ),
    (
        "store",
        &["crate::service", "crate::api", "crate::extract", "axum"],
        "the store persists; it decides nothing and knows no caller",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code lines, without comments (doc links may name any layer).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("")))
}

#[test]
fn no_import_crosses_a_layer_the_wrong_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (dir, forbidden, why) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(dir), &mut files);
        assert!(!files.is_empty(), "no sources under src/{dir}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in code_lines(&text) {
                for name in *forbidden {
                    if line.contains(name) {
                        violations.push(format!(
                            "{}:{n}: names {name} ({why})",
                            file.strip_prefix(&src).unwrap().display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} imports cross a layer:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// The scan above must see a violation when there is one.
#[test]
fn the_scan_sees_a_crossing() {
    let bad =
        "use crate::store::events; // fine in a service\n// crate::store in a comment is fine";
    let hits: Vec<_> = code_lines(bad)
        .filter(|(_, l)| l.contains("crate::store"))
        .collect();
    assert_eq!(hits.len(), 1);
}
