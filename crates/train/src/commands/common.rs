//! What several subcommands share: where corpora are found and how checkpoints are opened.

use std::path::Path;

use anyhow::Context;
use candle_core::Device;
use seqmodels_data::{named_corpus, Cleaning, CorpusLocator};

use crate::checkpoint::{self, Loaded};

/// Where `seqlm` finds named corpora: `$SEQMODELS_DATA`, else `../shared/data` beside the
/// repository it runs from (the current directory) when it exists, else the cache or a download.
pub fn corpus_locator() -> CorpusLocator {
    CorpusLocator::from_env_or_beside(Path::new("."))
}

/// Reads the text of a corpus name or file (see [`corpus_locator`]).
pub fn read_corpus(spec: &str) -> anyhow::Result<String> {
    corpus_locator().read(spec).with_context(|| format!("reading corpus {spec:?}"))
}

/// The default cleaning of a corpus: its own for named corpora, none for files.
pub fn default_cleaning(corpus: &str) -> Cleaning {
    named_corpus(corpus).map_or(Cleaning::None, |c| c.default_cleaning)
}

/// Opens the checkpoint in `dir` (a checkpoint or a run directory holding `checkpoint/`).
pub fn load_checkpoint(dir: &Path, device: &Device) -> anyhow::Result<Loaded> {
    checkpoint::load(dir, device).with_context(|| format!("loading checkpoint {}", dir.display()))
}
