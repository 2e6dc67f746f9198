//! Finding the repository and the outside programs (Node.js, Chromium) that tests drive.

use std::path::{Path, PathBuf};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support sits two levels below the repository root")
        .to_path_buf()
}

/// `path` if it is a file, else the first `name` on `PATH`.
pub fn find_program(path: &str, name: &str) -> Option<PathBuf> {
    let fixed = Path::new(path);
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
