//! Text data for recurrent language models, as the d2l book prepares it.
//!
//! * [`corpus`]: named corpora (`timemachine`, `tinyshakespeare`) and text files, found in
//!   `SEQMODELS_DATA`, a cache, or downloaded with a hash check (`download` feature).
//! * [`clean`]: d2l 0.17 (per line), d2l 1.0 (whole text) or no cleaning.
//! * [`tokenize`]: character and word tokens; [`bpe`]: subword tokens with `tokenizers`.
//! * [`vocab`]: vocabularies with `<unk>`, reserved tokens, `min_freq`, d2l's orderings, JSON.
//! * [`pipeline`]: text to indices in one call ([`LmCorpus`]).
//! * [`batches`]: random and sequential language-model minibatches with d2l's semantics.
//! * [`stats`]: counts, n-grams, Zipf fit; `plot`: the log-log plot and the plot font (`plot`
//!   feature); [`series`]: the noisy sine data set.
//!
//! Features (all on by default; `default-features = false` leaves a library of plain text
//! processing): `plot` (plotters and an embedded font), `download` (an HTTP client for missing
//! corpora), `progress` (a progress bar while downloading), `clap` (command-line value parsing
//! of the option enums).
//!
//! ```
//! use seqmodels_data::{CorpusOptions, LmCorpus, Sampling};
//!
//! let corpus = LmCorpus::build("The Time Machine, by H. G. Wells\n", &CorpusOptions::default())?;
//! assert_eq!(corpus.vocab.token(0), Some("<unk>"));
//! let mut loader = corpus.loader(2, 5, Sampling::Sequential, 0)?;
//! for batch in loader.epoch() {
//!     assert_eq!(batch.shape(), [2, 5]);
//! }
//! # Ok::<(), seqmodels_data::Error>(())
//! ```

#![warn(missing_docs)]

pub mod batches;
pub mod bpe;
pub mod clean;
pub mod corpus;
#[cfg(feature = "download")]
pub mod download;
pub mod error;
pub mod pipeline;
#[cfg(feature = "plot")]
pub mod plot;
pub mod series;
pub mod stats;
pub mod tokenize;
pub mod vocab;

pub use batches::{random_batches, sequential_batches, Batch, Epoch, Sampling, SeqDataLoader};
pub use bpe::{BpeOptions, BpeTokenizer};
pub use clean::Cleaning;
pub use corpus::{named_corpus, read_text_file, text_from_bytes, CorpusLocator, NamedCorpus, NAMED_CORPORA};
pub use error::{Error, Result};
pub use pipeline::{CorpusOptions, LmCorpus};
#[cfg(feature = "plot")]
pub use plot::{plot_frequencies, FreqSeries};
pub use series::{SeriesDataset, SineSeries};
pub use stats::{fit_zipf, ngram_counts, CorpusStats, ZipfFit};
pub use tokenize::TokenLevel;
pub use vocab::{Vocab, VocabOptions, VocabOrder};
