//! Snapshot tests of manifest errors.
//!
//! Every `tests/bad/<case>.toml` must be rejected, and the error, as
//! displayed, must equal `tests/bad/<case>.err`. Run with `WISP_BLESS=1` to
//! (re)write the `.err` files, then review the diff: each message must point
//! at the right line and column and say how to fix the mistake.

use std::fs;
use std::path::{Path, PathBuf};

/// Relative to the crate directory, the working directory of integration
/// tests; the same relative path appears in the expected messages.
const BAD_DIR: &str = "tests/bad";

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(BAD_DIR)
        .unwrap_or_else(|e| panic!("cannot read {BAD_DIR}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| Path::new(BAD_DIR).join(path.file_name().expect("file name")))
        .collect();
    cases.sort();
    cases
}

#[test]
fn bad_manifests_match_their_snapshots() {
    let bless = std::env::var_os("WISP_BLESS").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(
        cases.len() >= 20,
        "expected at least 20 cases in {BAD_DIR}, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    for case in &cases {
        let expected_path = case.with_extension("err");
        let actual = match wisp_manifest::parse_file(case) {
            Ok(manifest) => {
                failures.push(format!(
                    "{}: parsed but should be rejected: {manifest:?}",
                    case.display()
                ));
                continue;
            }
            Err(err) => format!("{err}\n"),
        };
        if bless {
            fs::write(&expected_path, &actual)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected_path.display()));
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: error differs\n--- expected\n{expected}--- actual\n{actual}",
                case.display()
            )),
            Err(e) => failures.push(format!(
                "{}: cannot read {} ({e}); run with WISP_BLESS=1 to create it\n--- actual\n{actual}",
                case.display(),
                expected_path.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} snapshot cases failed (run with WISP_BLESS=1 to update, then review):\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_snapshot_has_a_case() {
    let cases = cases();
    let orphans: Vec<PathBuf> = fs::read_dir(BAD_DIR)
        .expect("tests/bad")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "err"))
        .filter(|path| {
            let case = Path::new(BAD_DIR)
                .join(path.file_name().expect("file name"))
                .with_extension("toml");
            !cases.contains(&case)
        })
        .collect();
    assert!(
        orphans.is_empty(),
        "snapshots without a .toml case: {orphans:?}"
    );
}

#[test]
fn every_error_names_the_case_file_and_has_a_hint() {
    for case in cases() {
        let err = wisp_manifest::parse_file(&case)
            .expect_err(&format!("{} should be rejected", case.display()));
        assert_eq!(err.file, case);
        assert!(
            err.line >= 1 && err.column >= 1,
            "{}: no position",
            case.display()
        );
        assert!(
            err.hint.as_deref().is_some_and(|h| !h.is_empty()),
            "{}: no hint",
            case.display()
        );
        assert!(
            err.message.starts_with(|c: char| !c.is_uppercase()),
            "{}: message is not a lowercase phrase: {}",
            case.display(),
            err.message
        );
    }
}
