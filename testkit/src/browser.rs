//! What the browser tests share: the check that Debian's Chromium and npm `playwright-core` are
//! installed (the tests fail with the fix, never skip), the artifacts folder their screenshots
//! go to, and short log tails for failure messages.

use std::path::{Path, PathBuf};

use crate::idp::{e2e_dir, require_node_modules};

/// Debian's Chromium, which the Playwright drivers in `tests/e2e/` launch.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Panics with the fix when the browser tooling is missing: these tests never skip.
pub fn require_browser() {
    require_node_modules();
    let pw = e2e_dir()
        .join("node_modules")
        .join("playwright-core")
        .join("package.json");
    assert!(
        pw.is_file(),
        "{} is missing: run `scripts/install-deps.sh --with-test-tools` (it runs `npm ci --prefix tests/e2e`)",
        pw.display()
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "Chromium is not installed at {CHROMIUM}: run `scripts/install-deps.sh --with-test-tools` \
         (Debian package `chromium`)"
    );
}

/// The (emptied) artifacts folder of `test`: `$ESIGD_TEST_ARTIFACTS/<test>`, else
/// `<default_base>/<test>` (a test passes a folder under its `CARGO_TARGET_TMPDIR`). Prints it.
pub fn artifacts(default_base: &Path, test: &str) -> PathBuf {
    let base = std::env::var_os("ESIGD_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_base.to_path_buf());
    let dir = base.join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    println!("browser test artifacts (screenshots): {}", dir.display());
    dir
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
