//! Vocabularies: token <-> index maps with `<unk>`, reserved tokens and `min_freq`, in d2l's
//! orderings, saved and loaded as JSON.
//!
//! * [`VocabOrder::Frequency`] (d2l 0.17): index 0 is the unknown token, then the reserved tokens,
//!   then the corpus tokens by descending frequency, ties in order of first appearance.
//! * [`VocabOrder::Alphabetical`] (d2l 1.0): the unknown token, the reserved tokens and the
//!   corpus tokens together, sorted by code point; the unknown token is wherever it sorts.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

const NO_INDEX: u32 = u32::MAX;

/// Counts tokens; the result is sorted by descending count, ties in order of first appearance
/// (what Python's `sorted(Counter(tokens).items(), key=count, reverse=True)` gives).
pub fn count_tokens<S: AsRef<str>>(tokens: &[S]) -> Vec<(String, usize)> {
    count_token_refs(tokens).into_iter().map(|(t, n)| (t.to_owned(), n)).collect()
}

/// [`count_tokens`] without copying the tokens.
pub fn count_token_refs<S: AsRef<str>>(tokens: &[S]) -> Vec<(&str, usize)> {
    // Single ASCII characters (the whole of a cleaned character corpus) skip the hash map.
    let mut ascii_slot = [NO_INDEX; 128];
    let mut slots: HashMap<&str, usize> = HashMap::new();
    let mut entries: Vec<(&str, usize)> = Vec::new();
    for token in tokens {
        let token = token.as_ref();
        let bytes = token.as_bytes();
        let slot = if bytes.len() == 1 && bytes[0] < 128 {
            let s = &mut ascii_slot[bytes[0] as usize];
            if *s == NO_INDEX {
                *s = entries.len() as u32;
                entries.push((token, 0));
            }
            *s as usize
        } else {
            match slots.get(token) {
                Some(&s) => s,
                None => {
                    slots.insert(token, entries.len());
                    entries.push((token, 0));
                    entries.len() - 1
                }
            }
        };
        entries[slot].1 += 1;
    }
    // Stable sort keeps first-appearance order among equal counts.
    entries.sort_by_key(|e| std::cmp::Reverse(e.1));
    entries
}

/// Order of the tokens in a vocabulary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VocabOrder {
    /// d2l 0.17: unknown token, reserved tokens, then descending frequency (ties: first seen).
    #[default]
    Frequency,
    /// d2l 1.0: everything sorted by code point.
    Alphabetical,
}

impl fmt::Display for VocabOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VocabOrder::Frequency => "frequency",
            VocabOrder::Alphabetical => "alphabetical",
        })
    }
}

/// Error of [`VocabOrder::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown vocabulary order {0:?}: expected frequency (d2l) or alphabetical (d2l-v1)")]
pub struct ParseVocabOrderError(pub String);

impl FromStr for VocabOrder {
    type Err = ParseVocabOrderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "frequency" | "d2l" => Ok(VocabOrder::Frequency),
            "alphabetical" | "d2l-v1" => Ok(VocabOrder::Alphabetical),
            other => Err(ParseVocabOrderError(other.to_owned())),
        }
    }
}

/// How to build a [`Vocab`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocabOptions {
    /// Tokens seen fewer times than this are left out (they map to the unknown token).
    pub min_freq: usize,
    /// Tokens that get an index whether or not they occur (for example `<pad>`, `<bos>`, `<eos>`).
    /// A repeated reserved token is kept once.
    pub reserved_tokens: Vec<String>,
    /// Token order.
    pub order: VocabOrder,
    /// The unknown token.
    pub unk_token: String,
}

impl Default for VocabOptions {
    fn default() -> Self {
        VocabOptions {
            min_freq: 0,
            reserved_tokens: Vec::new(),
            order: VocabOrder::Frequency,
            unk_token: "<unk>".into(),
        }
    }
}

/// A vocabulary: token <-> index both ways, with an unknown token.
#[derive(Clone)]
pub struct Vocab {
    idx_to_token: Vec<String>,
    token_to_idx: HashMap<String, u32>,
    unk: u32,
    token_freqs: Vec<(String, usize)>,
    /// Index of each single-byte ASCII token, or `NO_INDEX`.
    ascii: [u32; 128],
}

impl fmt::Debug for Vocab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vocab")
            .field("len", &self.idx_to_token.len())
            .field("unk", &self.unk_token())
            .field("first", &&self.idx_to_token[..self.idx_to_token.len().min(8)])
            .finish()
    }
}

impl PartialEq for Vocab {
    fn eq(&self, other: &Self) -> bool {
        self.idx_to_token == other.idx_to_token && self.unk == other.unk
    }
}

/// The JSON form of a vocabulary.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabFile {
    unk_token: String,
    tokens: Vec<String>,
    #[serde(default)]
    token_freqs: Vec<(String, usize)>,
}

fn memory_path() -> PathBuf {
    PathBuf::from("<memory>")
}

impl Vocab {
    /// Builds a vocabulary from a token sequence.
    pub fn build<S: AsRef<str>>(tokens: &[S], options: &VocabOptions) -> Self {
        Self::from_counts(count_tokens(tokens), options)
    }

    /// Builds a vocabulary from token counts sorted as [`count_tokens`] sorts them.
    pub fn from_counts(token_freqs: Vec<(String, usize)>, options: &VocabOptions) -> Self {
        let unk = options.unk_token.as_str();
        let kept = token_freqs.iter().take_while(|(_, n)| *n >= options.min_freq).map(|(t, _)| t.as_str());
        let mut tokens: Vec<String> = Vec::new();
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for t in std::iter::once(unk).chain(options.reserved_tokens.iter().map(String::as_str)).chain(kept) {
            if seen.insert(t, ()).is_none() {
                tokens.push(t.to_owned());
            }
        }
        if options.order == VocabOrder::Alphabetical {
            tokens.sort();
        }
        let mut vocab = Self::from_unique_tokens(tokens, unk).expect("tokens are unique and contain unk");
        vocab.token_freqs = token_freqs;
        vocab
    }

    /// A vocabulary with the given tokens at indices `0..n`; `unk_token` must be one of them.
    pub fn from_tokens(tokens: Vec<String>, unk_token: &str) -> Result<Self> {
        Self::from_unique_tokens(tokens, unk_token)
            .map_err(|reason| Error::InvalidVocab { path: memory_path(), reason })
    }

    fn from_unique_tokens(tokens: Vec<String>, unk_token: &str) -> std::result::Result<Self, String> {
        if tokens.len() >= NO_INDEX as usize {
            return Err(format!("{} tokens do not fit u32 indices", tokens.len()));
        }
        let mut token_to_idx = HashMap::with_capacity(tokens.len());
        let mut ascii = [NO_INDEX; 128];
        for (i, t) in tokens.iter().enumerate() {
            if token_to_idx.insert(t.clone(), i as u32).is_some() {
                return Err(format!("token {t:?} appears twice (second time at index {i})"));
            }
            if t.len() == 1 && t.as_bytes()[0] < 128 {
                ascii[t.as_bytes()[0] as usize] = i as u32;
            }
        }
        let unk = *token_to_idx
            .get(unk_token)
            .ok_or_else(|| format!("the unknown token {unk_token:?} is not among the {} tokens", tokens.len()))?;
        Ok(Vocab { idx_to_token: tokens, token_to_idx, unk, token_freqs: Vec::new(), ascii })
    }

    /// Number of tokens, the unknown token included.
    pub fn len(&self) -> usize {
        self.idx_to_token.len()
    }

    /// Always false: a vocabulary holds at least its unknown token.
    pub fn is_empty(&self) -> bool {
        self.idx_to_token.is_empty()
    }

    /// Index of the unknown token.
    pub fn unk_index(&self) -> u32 {
        self.unk
    }

    /// The unknown token.
    pub fn unk_token(&self) -> &str {
        &self.idx_to_token[self.unk as usize]
    }

    /// Index of `token`, if it is in the vocabulary.
    pub fn get(&self, token: &str) -> Option<u32> {
        let b = token.as_bytes();
        if b.len() == 1 && b[0] < 128 {
            let i = self.ascii[b[0] as usize];
            return (i != NO_INDEX).then_some(i);
        }
        self.token_to_idx.get(token).copied()
    }

    /// Index of `token`, or of the unknown token when it is not in the vocabulary.
    pub fn index(&self, token: &str) -> u32 {
        self.get(token).unwrap_or(self.unk)
    }

    /// Whether `token` has an index of its own.
    pub fn contains(&self, token: &str) -> bool {
        self.get(token).is_some()
    }

    /// Indices of `tokens` (unknown ones map to the unknown token).
    pub fn encode<S: AsRef<str>>(&self, tokens: &[S]) -> Vec<u32> {
        tokens.iter().map(|t| self.index(t.as_ref())).collect()
    }

    /// The token at `index`, if the index is in range.
    pub fn token(&self, index: u32) -> Option<&str> {
        self.idx_to_token.get(index as usize).map(String::as_str)
    }

    /// Tokens of `indices`; an out-of-range index gives the unknown token.
    pub fn decode(&self, indices: &[u32]) -> Vec<&str> {
        indices.iter().map(|&i| self.token(i).unwrap_or(self.unk_token())).collect()
    }

    /// All tokens, in index order.
    pub fn tokens(&self) -> &[String] {
        &self.idx_to_token
    }

    /// Token counts of the corpus the vocabulary was built from (descending, ties by first
    /// appearance); empty for a vocabulary made with [`Vocab::from_tokens`].
    pub fn token_freqs(&self) -> &[(String, usize)] {
        &self.token_freqs
    }

    /// The vocabulary as JSON: `{"unk_token":..,"tokens":[..],"token_freqs":[[token,count],..]}`.
    pub fn to_json(&self) -> Result<String> {
        let file = VocabFile {
            unk_token: self.unk_token().to_owned(),
            tokens: self.idx_to_token.clone(),
            token_freqs: self.token_freqs.clone(),
        };
        serde_json::to_string(&file).map_err(|source| Error::Serialize { what: "vocabulary", source })
    }

    /// Parses the JSON written by [`Vocab::to_json`].
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_json_at(json, &memory_path())
    }

    fn from_json_at(json: &str, path: &Path) -> Result<Self> {
        let file: VocabFile =
            serde_json::from_str(json).map_err(|source| Error::VocabJson { path: path.to_owned(), source })?;
        let mut vocab = Self::from_unique_tokens(file.tokens, &file.unk_token)
            .map_err(|reason| Error::InvalidVocab { path: path.to_owned(), reason })?;
        vocab.token_freqs = file.token_freqs;
        Ok(vocab)
    }

    /// Writes the vocabulary as JSON to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()?).map_err(|e| Error::io("write", path, e))
    }

    /// Reads a vocabulary written by [`Vocab::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => {
                Error::InvalidVocab { path: path.to_owned(), reason: "the file is not valid UTF-8".into() }
            }
            _ => Error::io("read", path, e),
        })?;
        Self::from_json_at(&json, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sorted_ties_first_seen() {
        let c = count_tokens(&["b", "a", "c", "a", "bb", "c", "bb"]);
        let expected: Vec<(String, usize)> = vec![("a".into(), 2), ("c".into(), 2), ("bb".into(), 2), ("b".into(), 1)];
        assert_eq!(c, expected);
    }

    #[test]
    fn d2l_017_order() {
        let toks = ["x", "y", "y", "<pad>", "z", "z", "z"];
        let opts = VocabOptions { reserved_tokens: vec!["<pad>".into(), "<bos>".into()], ..Default::default() };
        let v = Vocab::build(&toks, &opts);
        assert_eq!(v.tokens(), ["<unk>", "<pad>", "<bos>", "z", "y", "x"]);
        assert_eq!(v.unk_index(), 0);
        assert_eq!(v.index("nope"), 0);
        assert_eq!(v.encode(&["z", "x", "q"]), vec![3, 5, 0]);
        assert_eq!(v.decode(&[4, 99]), vec!["y", "<unk>"]);
    }

    #[test]
    fn min_freq_and_alphabetical() {
        let toks = ["b", "b", "a", "c", "c", "c"];
        let opts = VocabOptions { min_freq: 2, ..Default::default() };
        assert_eq!(Vocab::build(&toks, &opts).tokens(), ["<unk>", "c", "b"]);
        let opts = VocabOptions { order: VocabOrder::Alphabetical, ..Default::default() };
        let v = Vocab::build(&[" ", "b", "a"], &opts);
        assert_eq!(v.tokens(), [" ", "<unk>", "a", "b"]);
        assert_eq!(v.unk_index(), 1);
    }

    #[test]
    fn json_roundtrip() {
        let v = Vocab::build(&["héllo", "a", "a"], &VocabOptions::default());
        let back = Vocab::from_json(&v.to_json().unwrap()).unwrap();
        assert_eq!(v, back);
        assert_eq!(back.token_freqs(), v.token_freqs());
        assert_eq!(back.index("héllo"), 2);
    }

    #[test]
    fn bad_json() {
        assert!(matches!(Vocab::from_json("{"), Err(Error::VocabJson { .. })));
        assert!(matches!(Vocab::from_json(r#"{"tokens":["a"]}"#), Err(Error::VocabJson { .. })));
        let dup = r#"{"unk_token":"<unk>","tokens":["<unk>","a","a"]}"#;
        let err = Vocab::from_json(dup).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
        let no_unk = r#"{"unk_token":"<unk>","tokens":["a"]}"#;
        assert!(matches!(Vocab::from_json(no_unk), Err(Error::InvalidVocab { .. })));
    }
}
