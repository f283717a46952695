//! What several subcommands share: where corpora are found and how checkpoints are opened.

use std::path::Path;

use anyhow::Context;
use candle_core::Device;
use seqmodels_data::{named_corpus, Cleaning, CorpusLocator};

use seqmodels::quantized::Precision;

use crate::checkpoint::{self, LoadedPredictor};

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

/// Opens the checkpoint in `dir` (a checkpoint or a run directory holding `checkpoint/`) for
/// inference on `(batch, steps)` sequences and steps per call in `precision` (its own when `None`).
pub fn load_predictor(
    dir: &Path,
    device: &Device,
    precision: Option<Precision>,
    work: (usize, usize),
) -> anyhow::Result<LoadedPredictor> {
    checkpoint::load_predictor(dir, device, precision, work)
        .with_context(|| format!("loading checkpoint {}", dir.display()))
}
