//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use seqmodels_data::CorpusLocator;

/// The directory with the shared corpora: `SEQMODELS_DATA` (absolute, relative to the current
/// directory, or relative to the workspace root as CI gives it), else `<repo>/../shared/data`.
pub fn data_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some(v) = std::env::var_os("SEQMODELS_DATA").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(&v);
        for candidate in [p.clone(), root.join(&p)] {
            if candidate.join("timemachine.txt").is_file() {
                return candidate;
            }
        }
        panic!(
            "SEQMODELS_DATA={} holds no timemachine.txt (looked relative to the current directory and to {})",
            p.display(),
            root.display()
        );
    }
    let fallback = root.join("../shared/data");
    assert!(
        fallback.join("timemachine.txt").is_file(),
        "corpora not found: set SEQMODELS_DATA to the directory holding timemachine.txt and tinyshakespeare.txt"
    );
    fallback
}

/// A locator over the shared data directory that never downloads (the cache is a fresh,
/// empty temporary directory).
pub fn locator() -> (CorpusLocator, tempfile::TempDir) {
    let cache = tempfile::tempdir().expect("temporary directory");
    (CorpusLocator::offline(Some(data_dir()), cache.path().to_owned()), cache)
}

/// The text of a named corpus from the shared data directory (hash-checked).
pub fn corpus_text(name: &str) -> String {
    let (loc, _cache) = locator();
    loc.read(name).unwrap_or_else(|e| panic!("{e}"))
}
