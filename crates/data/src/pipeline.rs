//! From raw text to a numericalized language-model corpus, as d2l's `load_corpus_time_machine`
//! does it: clean, tokenize, build the vocabulary on the whole text, map tokens to indices, and
//! keep the first `max_tokens` indices.

use crate::batches::{Sampling, SeqDataLoader};
use crate::bpe::BpeTokenizer;
use crate::clean::Cleaning;
use crate::error::{Error, Result};
use crate::tokenize::{tokenize, TokenLevel};
use crate::vocab::{Vocab, VocabOptions};

/// How [`LmCorpus::build`] turns text into indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusOptions {
    /// Cleaning applied first.
    pub cleaning: Cleaning,
    /// Character or word tokens.
    pub level: TokenLevel,
    /// For word tokens: a token appended after every non-empty line (for example `<eol>`).
    pub eol_token: Option<String>,
    /// Keep only the first `max_tokens` tokens (`None`: all). `Some(0)` is an error.
    pub max_tokens: Option<usize>,
    /// Vocabulary options.
    pub vocab: VocabOptions,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        CorpusOptions {
            cleaning: Cleaning::D2l,
            level: TokenLevel::Char,
            eol_token: None,
            max_tokens: None,
            vocab: VocabOptions::default(),
        }
    }
}

/// A numericalized corpus and its vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct LmCorpus {
    /// Token indices.
    pub ids: Vec<u32>,
    /// The vocabulary (built on the whole text, before `max_tokens`).
    pub vocab: Vocab,
}

fn check_max_tokens(max_tokens: Option<usize>) -> Result<()> {
    if max_tokens == Some(0) {
        return Err(Error::ZeroMaxTokens);
    }
    Ok(())
}

fn truncate(ids: &mut Vec<u32>, max_tokens: Option<usize>) {
    if let Some(n) = max_tokens {
        ids.truncate(n);
    }
}

impl LmCorpus {
    /// Cleans, tokenizes and numericalizes `text`. Fails on `max_tokens == Some(0)` and when no
    /// token is left.
    pub fn build(text: &str, options: &CorpusOptions) -> Result<Self> {
        check_max_tokens(options.max_tokens)?;
        let lines = options.cleaning.apply(text);
        let eol = if options.level == TokenLevel::Word { options.eol_token.as_deref() } else { None };
        let tokens = tokenize(&lines, options.level, eol);
        if tokens.is_empty() {
            return Err(Error::NoTokens {
                stage: format!("{} cleaning and {} tokenization", options.cleaning, options.level),
            });
        }
        let vocab = Vocab::build(&tokens, &options.vocab);
        let mut ids = vocab.encode(&tokens);
        truncate(&mut ids, options.max_tokens);
        Ok(LmCorpus { ids, vocab })
    }

    /// Cleans `text` and encodes it with a subword tokenizer, line by line for
    /// [`Cleaning::D2l`] (lines concatenated with no separator, as for characters) and as a
    /// whole otherwise. The vocabulary is the tokenizer's.
    pub fn build_bpe(
        text: &str,
        cleaning: Cleaning,
        tokenizer: &BpeTokenizer,
        max_tokens: Option<usize>,
    ) -> Result<Self> {
        check_max_tokens(max_tokens)?;
        let vocab = tokenizer.vocab()?;
        let mut ids = Vec::new();
        for line in cleaning.apply(text) {
            if !line.is_empty() {
                ids.extend(tokenizer.encode(&line)?);
            }
            if max_tokens.is_some_and(|n| ids.len() >= n) {
                break;
            }
        }
        if ids.is_empty() {
            return Err(Error::NoTokens { stage: format!("{cleaning} cleaning and BPE tokenization") });
        }
        truncate(&mut ids, max_tokens);
        Ok(LmCorpus { ids, vocab })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no token (never, for a built corpus).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The tokens, looked up in the vocabulary.
    pub fn tokens(&self) -> Vec<&str> {
        self.vocab.decode(&self.ids)
    }

    /// A seeded minibatch loader over the whole corpus.
    pub fn loader(&self, batch_size: usize, num_steps: usize, sampling: Sampling, seed: u64) -> Result<SeqDataLoader> {
        SeqDataLoader::new(self.ids.clone(), batch_size, num_steps, sampling, seed)
    }
}
