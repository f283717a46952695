//! Text cleaning as the d2l book does it.
//!
//! * [`Cleaning::D2l`] is the 0.17 edition: the text is read line by line and every line becomes
//!   `re.sub('[^A-Za-z]+', ' ', line).strip().lower()`.
//! * [`Cleaning::D2lV1`] is the 1.0 edition: the same substitution and lowercasing on the whole
//!   text at once, without stripping (line breaks become spaces).
//! * [`Cleaning::None`] keeps the text as it is (Tiny Shakespeare keeps its case and punctuation).
//!
//! The result is a list of *lines*: one per input line for [`Cleaning::D2l`], a single element
//! holding the whole text otherwise. Tokenizers in [`crate::tokenize`] work on that list.

use std::fmt;
use std::str::FromStr;

/// How a raw text is cleaned before tokenization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Cleaning {
    /// d2l 0.17: per line, runs of non-letters become one space, then strip and lowercase.
    #[default]
    D2l,
    /// d2l 1.0: runs of non-letters become one space and the text is lowercased, all at once.
    D2lV1,
    /// No cleaning at all.
    None,
}

impl Cleaning {
    /// The name used on the command line: `d2l`, `d2l-v1` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cleaning::D2l => "d2l",
            Cleaning::D2lV1 => "d2l-v1",
            Cleaning::None => "none",
        }
    }

    /// Cleans `text` and returns its lines (see the module documentation).
    pub fn apply(self, text: &str) -> Vec<String> {
        match self {
            Cleaning::D2l => clean_d2l_lines(text),
            Cleaning::D2lV1 => vec![clean_d2l_v1(text)],
            Cleaning::None => vec![text.to_owned()],
        }
    }
}

impl fmt::Display for Cleaning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Cleaning::from_str`]: the name is not one of `d2l`, `d2l-v1`, `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cleaning {0:?}: expected d2l, d2l-v1 or none")]
pub struct ParseCleaningError(pub String);

impl FromStr for Cleaning {
    type Err = ParseCleaningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "d2l" | "d2l-0.17" | "d2l-v0" => Ok(Cleaning::D2l),
            "d2l-v1" | "d2l-1.0" => Ok(Cleaning::D2lV1),
            "none" => Ok(Cleaning::None),
            other => Err(ParseCleaningError(other.to_owned())),
        }
    }
}

/// Splits `text` into lines the way Python's text mode does (`\n`, `\r\n` and `\r` all end a
/// line; a final line terminator does not start a new, empty line). Terminators are dropped.
pub fn split_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Appends to `out` the text with every run of characters other than ASCII letters replaced by
/// one space and letters lowercased (`re.sub('[^A-Za-z]+', ' ', s).lower()`).
fn letters_only_into(text: &str, out: &mut String) {
    // Works on bytes: every byte of a multi-byte UTF-8 character is >= 0x80 and so a
    // non-letter, which is exactly what the regex does with non-ASCII characters.
    let mut in_gap = false;
    for &b in text.as_bytes() {
        if b.is_ascii_alphabetic() {
            out.push(b.to_ascii_lowercase() as char);
            in_gap = false;
        } else if !in_gap {
            out.push(' ');
            in_gap = true;
        }
    }
}

/// d2l 0.17 cleaning of one line: `re.sub('[^A-Za-z]+', ' ', line).strip().lower()`.
pub fn clean_d2l_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    letters_only_into(line, &mut out);
    // Only single spaces can be at either end.
    if out.ends_with(' ') {
        out.pop();
    }
    if out.starts_with(' ') {
        out.remove(0);
    }
    out
}

/// d2l 0.17 cleaning of a whole text: one cleaned string per line (see [`split_lines`]).
pub fn clean_d2l_lines(text: &str) -> Vec<String> {
    split_lines(text).into_iter().map(clean_d2l_line).collect()
}

/// d2l 1.0 cleaning: `re.sub('[^A-Za-z]+', ' ', text).lower()` on the whole text.
pub fn clean_d2l_v1(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    letters_only_into(text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d2l_line() {
        assert_eq!(clean_d2l_line("  The Time-Machine, by H. G. Wells [1898]\n"), "the time machine by h g wells");
        assert_eq!(clean_d2l_line("1898"), "");
        assert_eq!(clean_d2l_line("café au lait"), "caf au lait");
        assert_eq!(clean_d2l_line("x"), "x");
    }

    #[test]
    fn d2l_v1_keeps_edges() {
        assert_eq!(clean_d2l_v1("Hi, there!\nBye."), "hi there bye ");
        assert_eq!(clean_d2l_v1("\n\nA"), " a");
    }

    #[test]
    fn lines_like_python() {
        assert_eq!(split_lines("a\nb\r\nc\rd\n"), vec!["a", "b", "c", "d"]);
        assert_eq!(split_lines("a\n\nb"), vec!["a", "", "b"]);
        assert!(split_lines("").is_empty());
    }

    #[test]
    fn parse_names() {
        for c in [Cleaning::D2l, Cleaning::D2lV1, Cleaning::None] {
            assert_eq!(c.as_str().parse::<Cleaning>().unwrap(), c);
        }
        assert!("D2L".parse::<Cleaning>().is_err());
    }

    #[test]
    fn none_keeps_text() {
        assert_eq!(Cleaning::None.apply("A b,\nC"), vec!["A b,\nC".to_string()]);
    }
}
