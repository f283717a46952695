//! Text <-> token indices for the language model: character or word tokens with a
//! vocabulary (`vocab.json`), or a BPE tokenizer (`tokenizer.json`), after the corpus cleaning.
//!
//! The same object tokenizes the training corpus, validation and test files, `seqlm eval`
//! texts and `seqlm generate` prefixes, so every path sees the same indices.

use std::path::Path;

use seqmodels_data::tokenize::tokenize;
use seqmodels_data::{BpeOptions, BpeTokenizer, Cleaning, CorpusOptions, LmCorpus, TokenLevel, Vocab};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The kind of tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// One token per character (d2l).
    Char,
    /// Whitespace-separated words.
    Word,
    /// Byte-pair encoding (a BPE model trained on the corpus, or loaded from a tokenizer.json).
    Bpe,
}

impl TokenizerKind {
    /// `char`, `word` or `bpe`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenizerKind::Char => "char",
            TokenizerKind::Word => "word",
            TokenizerKind::Bpe => "bpe",
        }
    }

    /// How the data crate splits text into these tokens (`None` for BPE, which has a model of
    /// its own).
    pub fn level(self) -> Option<TokenLevel> {
        match self {
            TokenizerKind::Char => Some(TokenLevel::Char),
            TokenizerKind::Word => Some(TokenLevel::Word),
            TokenizerKind::Bpe => None,
        }
    }

    /// The file that holds the vocabulary in a checkpoint: `vocab.json` or `tokenizer.json`.
    pub fn file_name(self) -> &'static str {
        match self {
            TokenizerKind::Bpe => "tokenizer.json",
            _ => "vocab.json",
        }
    }
}

/// Everything needed, besides the vocabulary file, to tokenize text as in training
/// (the `tokenizer` object of a checkpoint's `config.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSpec {
    /// The kind of tokens.
    pub kind: TokenizerKind,
    /// Cleaning applied before tokenization (`d2l`, `d2l-v1` or `none`).
    pub cleaning: Cleaning,
    /// Word tokens: the end-of-sentence token appended after every non-empty line, if any.
    #[serde(default)]
    pub eos: Option<String>,
}

impl TokenizerSpec {
    /// Checks that the options fit together (`eos` only with word tokens).
    pub fn validate(&self) -> Result<()> {
        if let Some(eos) = &self.eos {
            if self.kind != TokenizerKind::Word {
                return Err(Error::option(
                    "eos",
                    "word tokens (--tokenizer word); an end-of-sentence token only applies to words",
                    format!("{eos} with {} tokens", self.kind.as_str()),
                ));
            }
            if eos.is_empty() || eos.chars().any(char::is_whitespace) {
                return Err(Error::option("eos", "a non-empty token without whitespace", format!("{eos:?}")));
            }
        }
        Ok(())
    }
}

/// A fitted tokenizer: the spec plus its vocabulary (and BPE model).
#[derive(Clone, Debug)]
pub struct TextTokenizer {
    spec: TokenizerSpec,
    vocab: Vocab,
    bpe: Option<BpeTokenizer>,
}

impl TextTokenizer {
    /// Builds the vocabulary (or trains the BPE model, `bpe_vocab_size` tokens) on `text` and
    /// returns the tokenizer and the indices of the whole text.
    pub fn fit(text: &str, spec: &TokenizerSpec, bpe_vocab_size: usize) -> Result<(Self, Vec<u32>)> {
        spec.validate()?;
        match spec.kind {
            TokenizerKind::Char | TokenizerKind::Word => {
                let options = CorpusOptions {
                    cleaning: spec.cleaning,
                    level: spec.kind.level().unwrap_or(TokenLevel::Char),
                    eol_token: spec.eos.clone(),
                    max_tokens: None,
                    ..CorpusOptions::default()
                };
                let corpus = LmCorpus::build(text, &options)?;
                Ok((TextTokenizer { spec: spec.clone(), vocab: corpus.vocab, bpe: None }, corpus.ids))
            }
            TokenizerKind::Bpe => {
                if bpe_vocab_size < 2 {
                    return Err(Error::option("bpe_vocab", "at least 2", bpe_vocab_size));
                }
                let lines = spec.cleaning.apply(text);
                let options = BpeOptions { vocab_size: bpe_vocab_size, ..BpeOptions::default() };
                let bpe = BpeTokenizer::train(&lines, &options)?;
                let corpus = LmCorpus::build_bpe(text, spec.cleaning, &bpe, None)?;
                Ok((TextTokenizer { spec: spec.clone(), vocab: corpus.vocab, bpe: Some(bpe) }, corpus.ids))
            }
        }
    }

    /// A char or word tokenizer with a given vocabulary.
    pub fn with_vocab(spec: TokenizerSpec, vocab: Vocab) -> Result<Self> {
        spec.validate()?;
        if spec.kind == TokenizerKind::Bpe {
            return Err(Error::option("tokenizer", "char or word for a plain vocabulary", "bpe"));
        }
        Ok(TextTokenizer { spec, vocab, bpe: None })
    }

    /// The spec.
    pub fn spec(&self) -> &TokenizerSpec {
        &self.spec
    }

    /// The vocabulary (for BPE: the tokenizer's indices).
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Number of tokens the model must handle.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Indices of a whole text, cleaned and tokenized as the training corpus was (with the
    /// end-of-sentence token after every line when the spec has one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, self.spec.eos.as_deref())
    }

    /// Indices of a prompt: cleaned and tokenized like [`Self::encode`], but without
    /// end-of-sentence tokens.
    pub fn encode_prefix(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, None)
    }

    fn encode_with(&self, text: &str, eos: Option<&str>) -> Result<Vec<u32>> {
        match &self.bpe {
            Some(bpe) => {
                let mut ids = Vec::new();
                for line in self.spec.cleaning.apply(text) {
                    if !line.is_empty() {
                        ids.extend(bpe.encode(&line)?);
                    }
                }
                Ok(ids)
            }
            None => {
                let lines = self.spec.cleaning.apply(text);
                let tokens = tokenize(&lines, self.spec.kind.level().unwrap_or(TokenLevel::Char), eos);
                Ok(self.vocab.encode(&tokens))
            }
        }
    }

    /// The text of `ids`: characters concatenated, words joined by spaces (end-of-sentence
    /// tokens as line breaks), BPE decoded.
    pub fn decode(&self, ids: &[u32]) -> String {
        if let Some(bpe) = &self.bpe {
            if let Ok(text) = bpe.decode(ids) {
                return text;
            }
        }
        let tokens = self.vocab.decode(ids);
        match self.spec.kind {
            TokenizerKind::Word => {
                let mut out = String::new();
                for t in tokens {
                    if Some(t) == self.spec.eos.as_deref() {
                        out.push('\n');
                    } else {
                        if !(out.is_empty() || out.ends_with('\n')) {
                            out.push(' ');
                        }
                        out.push_str(t);
                    }
                }
                out
            }
            _ => tokens.concat(),
        }
    }

    /// The file name of the vocabulary in a checkpoint.
    pub fn file_name(&self) -> &'static str {
        self.spec.kind.file_name()
    }

    /// Writes `vocab.json` (char, word) or `tokenizer.json` (BPE) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = match &self.bpe {
            Some(bpe) => bpe.to_json(false)?,
            None => self.vocab.to_json()?,
        };
        crate::checkpoint::write_atomic(path, text.as_bytes())
    }

    /// Reads the vocabulary file written by [`Self::save`] (or by `scripts/torch_lm.py`).
    pub fn load(spec: TokenizerSpec, path: &Path) -> Result<Self> {
        spec.validate()?;
        match spec.kind {
            TokenizerKind::Bpe => {
                let bpe = BpeTokenizer::load(path)?;
                let vocab = bpe.vocab()?;
                Ok(TextTokenizer { spec, vocab, bpe: Some(bpe) })
            }
            _ => Ok(TextTokenizer { spec, vocab: Vocab::load(path)?, bpe: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_and_word_round_trip() {
        let spec = TokenizerSpec { kind: TokenizerKind::Char, cleaning: Cleaning::D2l, eos: None };
        let (tok, ids) = TextTokenizer::fit("The Time\nMachine!", &spec, 0).unwrap();
        assert_eq!(tok.decode(&ids), "the timemachine");
        assert_eq!(tok.encode("the time").unwrap(), ids[..8].to_vec());
        let spec = TokenizerSpec { kind: TokenizerKind::Word, cleaning: Cleaning::D2l, eos: Some("<eos>".into()) };
        let (tok, ids) = TextTokenizer::fit("a b\nb c\n", &spec, 0).unwrap();
        assert_eq!(ids.len(), 6);
        assert_eq!(tok.decode(&ids), "a b\nb c\n");
        assert_eq!(tok.encode_prefix("b c").unwrap().len(), 2);
        let bad = TokenizerSpec { kind: TokenizerKind::Char, cleaning: Cleaning::D2l, eos: Some("<eos>".into()) };
        assert!(TextTokenizer::fit("abc", &bad, 0).unwrap_err().to_string().contains("word tokens"));
    }
}
