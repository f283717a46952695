//! Text data for recurrent language models, as the d2l book prepares it.
//!
//! * [`corpus`]: named corpora (`timemachine`, `tinyshakespeare`) and text files, found in
//!   `SEQMODELS_DATA`, a cache, or downloaded with a hash check.
//! * [`clean`]: d2l 0.17 (per line), d2l 1.0 (whole text) or no cleaning.
//! * [`tokenize`]: character and word tokens; [`bpe`]: subword tokens with `tokenizers`.
//! * [`vocab`]: vocabularies with `<unk>`, reserved tokens, `min_freq`, d2l's orderings, JSON.
//! * [`pipeline`]: text to indices in one call ([`LmCorpus`]).
//! * [`batches`]: random and sequential language-model minibatches with d2l's semantics.
//! * [`stats`]: counts, n-grams, Zipf fit, log-log plot; [`series`]: the noisy sine data set.
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
pub mod error;
pub mod pipeline;
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
pub use series::{SeriesDataset, SineSeries};
pub use stats::{fit_zipf, ngram_counts, plot_frequencies, CorpusStats, FreqSeries, ZipfFit};
pub use tokenize::TokenLevel;
pub use vocab::{Vocab, VocabOptions, VocabOrder};
