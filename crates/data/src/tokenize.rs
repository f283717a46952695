//! Character and word tokenization of cleaned lines.
//!
//! Tokens are string slices that borrow the cleaned text, so tokenizing allocates only the
//! list of slices. As in d2l 0.17, the character corpus is all lines' characters concatenated
//! with no separator, and words are `line.split()` of every line.

use std::fmt;
use std::str::FromStr;

use crate::clean::split_lines;

/// Granularity of the built-in tokenizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenLevel {
    /// One token per Unicode scalar value.
    Char,
    /// Whitespace-separated words.
    Word,
}

impl TokenLevel {
    /// `char` or `word`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenLevel::Char => "char",
            TokenLevel::Word => "word",
        }
    }
}

impl fmt::Display for TokenLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`TokenLevel::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown token level {0:?}: expected char or word")]
pub struct ParseTokenLevelError(pub String);

impl FromStr for TokenLevel {
    type Err = ParseTokenLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "char" => Ok(TokenLevel::Char),
            "word" => Ok(TokenLevel::Word),
            other => Err(ParseTokenLevelError(other.to_owned())),
        }
    }
}

/// Character tokens of all lines, concatenated with no separator (d2l 0.17).
pub fn char_tokens<S: AsRef<str>>(lines: &[S]) -> Vec<&str> {
    let total: usize = lines.iter().map(|l| l.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for line in lines {
        let line = line.as_ref();
        if line.is_ascii() {
            // Fast path: every byte is one character.
            out.extend((0..line.len()).map(|i| &line[i..i + 1]));
        } else {
            out.extend(line.char_indices().map(|(i, c)| &line[i..i + c.len_utf8()]));
        }
    }
    out
}

/// Word tokens of all lines (`split()` on Unicode whitespace).
///
/// With `eol = Some(token)`, `token` is appended after every line that has at least one word;
/// line breaks inside an element (uncleaned or whole-text cleaned input) count as line ends too.
pub fn word_tokens<'a, S: AsRef<str>>(lines: &'a [S], eol: Option<&'a str>) -> Vec<&'a str> {
    let mut out = Vec::new();
    for element in lines {
        let element = element.as_ref();
        match eol {
            None => out.extend(element.split_whitespace()),
            Some(eol) => {
                for line in split_lines(element) {
                    let before = out.len();
                    out.extend(line.split_whitespace());
                    if out.len() > before {
                        out.push(eol);
                    }
                }
            }
        }
    }
    out
}

/// Tokens of `lines` at the given level (`eol` is used for words only).
pub fn tokenize<'a, S: AsRef<str>>(lines: &'a [S], level: TokenLevel, eol: Option<&'a str>) -> Vec<&'a str> {
    match level {
        TokenLevel::Char => char_tokens(lines),
        TokenLevel::Word => word_tokens(lines, eol),
    }
}

/// Tokens of every line separately, like d2l 0.17's `tokenize(lines, token)`.
pub fn tokenize_lines<S: AsRef<str>>(lines: &[S], level: TokenLevel) -> Vec<Vec<&str>> {
    lines
        .iter()
        .map(|line| match level {
            TokenLevel::Char => char_tokens(std::slice::from_ref(line)),
            TokenLevel::Word => line.as_ref().split_whitespace().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_concatenate_lines() {
        let lines = vec!["ab c".to_string(), String::new(), "dé".to_string()];
        assert_eq!(char_tokens(&lines), vec!["a", "b", " ", "c", "d", "é"]);
    }

    #[test]
    fn words_with_and_without_eol() {
        let lines = vec!["the time".to_string(), String::new(), "machine".to_string()];
        assert_eq!(word_tokens(&lines, None), vec!["the", "time", "machine"]);
        assert_eq!(word_tokens(&lines, Some("<eol>")), vec!["the", "time", "<eol>", "machine", "<eol>"]);
        let raw = vec!["To be,\n\nor not\n".to_string()];
        assert_eq!(word_tokens(&raw, Some("<eol>")), vec!["To", "be,", "<eol>", "or", "not", "<eol>"]);
    }

    #[test]
    fn per_line() {
        let lines = vec!["a b".to_string(), "cd".to_string()];
        assert_eq!(tokenize_lines(&lines, TokenLevel::Word), vec![vec!["a", "b"], vec!["cd"]]);
        assert_eq!(tokenize_lines(&lines, TokenLevel::Char)[1], vec!["c", "d"]);
    }
}
