//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use seqmodels_data::CorpusLocator;

/// The corpora as a program run from this repository finds them: `SEQMODELS_DATA`, else
/// `shared/data` beside the repository, else the cache, else a download.
pub fn locator() -> CorpusLocator {
    CorpusLocator::from_env_or_beside(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The text of a named corpus (hash-checked).
pub fn corpus_text(name: &str) -> String {
    locator().read(name).unwrap_or_else(|e| panic!("{e}"))
}
