//! Golden files: a user-visible output compared byte for byte with the file that holds what it must be.

use std::path::Path;

/// Asserts that `actual` equals the golden file `dir/name`, or writes it there when `UPDATE_GOLDEN` is
/// set (then review the diff before committing). `dir` is usually `tests/golden` of the calling crate:
/// `golden(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"), "report.txt", &text)`.
pub fn golden(dir: impl AsRef<Path>, name: &str, actual: &str) {
    let path = dir.as_ref().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("a golden file has a folder")).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert!(actual == expected, "{name} differs from its golden file:\n--- expected\n{expected}\n--- actual\n{actual}");
}
