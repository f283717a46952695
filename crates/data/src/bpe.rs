//! Subword tokenization with the `tokenizers` crate: train a byte-pair-encoding model on a
//! corpus, save it as `tokenizer.json`, and load any existing `tokenizer.json`.
//!
//! Trained tokenizers use byte-level pre-tokenization (GPT-2 style, no prefix space) and the
//! matching decoder, so decoding gives back the text that was encoded. The alphabet is the
//! set of characters seen in training; anything else encodes as the unknown token `<unk>`.

use std::path::Path;
use std::str::FromStr;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::corpus::read_text_file;
use crate::error::{Error, Result};
use crate::vocab::Vocab;

/// Options for training a BPE tokenizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpeOptions {
    /// Target vocabulary size, special tokens included (the alphabet is always kept, so a
    /// tiny target can be exceeded).
    pub vocab_size: usize,
    /// Pairs seen fewer times than this are not merged.
    pub min_frequency: u64,
    /// The unknown token (also registered as a special token).
    pub unk_token: String,
    /// Further special tokens (for example `<pad>`, `<bos>`, `<eos>`).
    pub special_tokens: Vec<String>,
}

impl Default for BpeOptions {
    fn default() -> Self {
        BpeOptions { vocab_size: 1000, min_frequency: 2, unk_token: "<unk>".into(), special_tokens: Vec::new() }
    }
}

/// A subword tokenizer backed by `tokenizers::Tokenizer`.
#[derive(Clone, Debug)]
pub struct BpeTokenizer {
    inner: Tokenizer,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl BpeTokenizer {
    /// Trains a BPE model on `texts` (each one a separate sequence, for example one per line).
    pub fn train<S: AsRef<str> + Sync>(texts: &[S], options: &BpeOptions) -> Result<Self> {
        if options.vocab_size == 0 {
            return Err(Error::ZeroParameter { name: "vocab_size" });
        }
        if texts.iter().all(|t| t.as_ref().is_empty()) {
            return Err(Error::NoTokens { stage: "reading the BPE training texts".into() });
        }
        let mut specials = vec![AddedToken::from(options.unk_token.clone(), true)];
        specials.extend(options.special_tokens.iter().map(|t| AddedToken::from(t.clone(), true)));
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(options.vocab_size)
            .min_frequency(options.min_frequency)
            .special_tokens(specials)
            .show_progress(false)
            .build();
        let mut trainer = TrainerWrapper::BpeTrainer(trainer);
        let model = BPE::builder().unk_token(options.unk_token.clone()).build().map_err(tok_err)?;
        let mut inner = Tokenizer::new(model);
        let byte_level = ByteLevel::new(false, true, true);
        inner.with_pre_tokenizer(Some(byte_level));
        inner.with_decoder(Some(byte_level));
        inner.train(&mut trainer, texts.iter().map(|t| t.as_ref())).map_err(tok_err)?;
        Ok(BpeTokenizer { inner })
    }

    /// Wraps an existing `tokenizers::Tokenizer`.
    pub fn from_tokenizer(inner: Tokenizer) -> Self {
        BpeTokenizer { inner }
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_json_at(json, Path::new("<memory>"))
    }

    fn from_json_at(json: &str, path: &Path) -> Result<Self> {
        let bad = |message: String| Error::TokenizerJson { path: path.to_owned(), message };
        // `tokenizers` panics on some malformed files (its decoder reader unwraps a parse
        // error): check the JSON syntax first, and turn any panic left into an error.
        serde_json::from_str::<serde_json::Value>(json).map_err(|e| bad(e.to_string()))?;
        let parsed = std::panic::catch_unwind(|| Tokenizer::from_str(json))
            .map_err(|_| bad("the tokenizers library could not read this file (it panicked)".into()))?;
        let inner = parsed.map_err(|e| bad(e.to_string()))?;
        Ok(BpeTokenizer { inner })
    }

    /// Loads a `tokenizer.json` file (any model the `tokenizers` crate reads, not only BPE).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = read_text_file(path)?;
        Self::from_json_at(&json, path)
    }

    /// The tokenizer as `tokenizer.json` text.
    pub fn to_json(&self, pretty: bool) -> Result<String> {
        self.inner.to_string(pretty).map_err(tok_err)
    }

    /// Saves the tokenizer as `tokenizer.json` text to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json(true)?).map_err(|e| Error::io("write", path, e))
    }

    /// Number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The unknown token of the model, if it has one.
    pub fn unk_token(&self) -> Option<String> {
        match self.inner.get_model() {
            ModelWrapper::BPE(bpe) => bpe.get_unk_token().clone(),
            ModelWrapper::WordPiece(wp) => Some(wp.unk_token.clone()),
            _ => None,
        }
    }

    /// Token indices of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode_fast(text, false).map_err(tok_err)?.get_ids().to_vec())
    }

    /// Token strings of `text` (in the tokenizer's own spelling, for example `Ġthe`).
    pub fn encode_tokens(&self, text: &str) -> Result<Vec<String>> {
        // `encode_fast` leaves token strings empty; `encode` fills them in.
        Ok(self.inner.encode(text, false).map_err(tok_err)?.get_tokens().to_vec())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// A [`Vocab`] with the tokenizer's indices. Its unknown token is the model's; a tokenizer
    /// without one gets `<unk>` appended after its last index.
    pub fn vocab(&self) -> Result<Vocab> {
        let map = self.inner.get_vocab(true);
        let n = map.values().map(|&i| i as usize + 1).max().unwrap_or(0);
        let mut tokens: Vec<Option<String>> = vec![None; n];
        for (t, i) in map {
            tokens[i as usize] = Some(t);
        }
        let mut tokens = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                t.ok_or_else(|| Error::InvalidVocab {
                    path: "<tokenizer>".into(),
                    reason: format!("the tokenizer has no token with index {i} (indices must be 0..{n})"),
                })
            })
            .collect::<Result<Vec<String>>>()?;
        let unk = self.unk_token().unwrap_or_else(|| "<unk>".into());
        if !tokens.contains(&unk) {
            tokens.push(unk.clone());
        }
        Vocab::from_tokens(tokens, &unk)
    }

    /// The underlying `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
