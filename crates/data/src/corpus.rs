//! Named corpora, text files, the download cache and the downloader.
//!
//! A corpus is given either as a path to a text file or as the name of a known corpus
//! ([`NAMED_CORPORA`]: `timemachine`, `tinyshakespeare`). [`CorpusLocator::resolve`] looks in
//! this order:
//!
//! 1. an existing file at the given path;
//! 2. for a named corpus, its file in the data directory: `SEQMODELS_DATA`, or with
//!    [`CorpusLocator::from_env_or_beside`] `shared/data` beside the repository when it exists;
//! 3. its file in the cache directory (`SEQMODELS_CACHE`, else `$XDG_CACHE_HOME/seqmodels`,
//!    else `~/.cache/seqmodels`);
//! 4. a download from the corpus URL (or from `SEQMODELS_DOWNLOAD_BASE/<file>`) with a SHA-256
//!    check and an atomic write into the cache (a temporary file in the cache directory, renamed
//!    into place only once the hash matches), and a progress bar with the `progress` feature.
//!    `SEQMODELS_OFFLINE=1`, or a build without the `download` feature, turns downloads off;
//!    the error then says which file to put where.
//!
//! Files found in steps 2 and 3 are hash-checked too.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::clean::Cleaning;
use crate::error::{Error, Result};

/// A corpus known by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedCorpus {
    /// The name used on the command line.
    pub name: &'static str,
    /// File name in the data and cache directories.
    pub file_name: &'static str,
    /// Public URL the file is downloaded from.
    pub url: &'static str,
    /// SHA-256 of the file (lowercase hex).
    pub sha256: &'static str,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The cleaning the d2l examples use with this corpus.
    pub default_cleaning: Cleaning,
    /// One line about the text.
    pub description: &'static str,
}

/// H. G. Wells, *The Time Machine*, as prepared by the d2l book.
pub const TIME_MACHINE: NamedCorpus = NamedCorpus {
    name: "timemachine",
    file_name: "timemachine.txt",
    url: "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt",
    sha256: "8424dbd9532ac81f7e5f0b6add90e6952baea29158309d7d1bf3884f4e12c516",
    bytes: 178_979,
    default_cleaning: Cleaning::D2l,
    description: "H. G. Wells, The Time Machine (d2l's copy)",
};

/// Tiny Shakespeare, as in char-rnn.
pub const TINY_SHAKESPEARE: NamedCorpus = NamedCorpus {
    name: "tinyshakespeare",
    file_name: "tinyshakespeare.txt",
    url: "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    sha256: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    bytes: 1_115_394,
    default_cleaning: Cleaning::None,
    description: "Tiny Shakespeare (char-rnn), 40,000 lines of plays",
};

/// All named corpora.
pub const NAMED_CORPORA: &[NamedCorpus] = &[TIME_MACHINE, TINY_SHAKESPEARE];

/// The named corpus called `name`, if there is one.
pub fn named_corpus(name: &str) -> Option<&'static NamedCorpus> {
    NAMED_CORPORA.iter().find(|c| c.name == name)
}

/// Decodes `bytes` as UTF-8; `path` names the source in errors.
pub fn decode_utf8(bytes: Vec<u8>, path: &Path) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| Error::InvalidUtf8 { path: path.to_owned(), offset: e.utf8_error().valid_up_to() })
}

/// Reads a whole text file: fails on a missing file, an empty file, and invalid UTF-8 (with the
/// byte offset of the first invalid sequence).
pub fn read_text_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    if path.is_dir() {
        return Err(Error::NotAFile { path: path.to_owned() });
    }
    let bytes = fs::read(path).map_err(|e| Error::io("read", path, e))?;
    text_from_bytes(bytes, path)
}

/// The text of a corpus file's bytes, as [`read_text_file`] checks it (not empty, UTF-8);
/// `path` names the source in errors.
pub fn text_from_bytes(bytes: Vec<u8>, path: &Path) -> Result<String> {
    if bytes.is_empty() {
        return Err(Error::EmptyFile { path: path.to_owned() });
    }
    decode_utf8(bytes, path)
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let mut file = fs::File::open(path).map_err(|e| Error::io("read", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_hash(path: &Path, expected: &str) -> Result<()> {
    let found = sha256_file(path)?;
    if found.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::HashMismatch { what: path.display().to_string(), expected: expected.to_owned(), found })
    }
}

/// The default cache directory: `SEQMODELS_CACHE`, else `$XDG_CACHE_HOME/seqmodels`, else
/// `$HOME/.cache/seqmodels`, else `.seqmodels-cache` in the current directory.
pub fn default_cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("SEQMODELS_CACHE") {
        return dir;
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return dir.join("seqmodels");
    }
    if let Some(home) = var("HOME") {
        return home.join(".cache").join("seqmodels");
    }
    PathBuf::from(".seqmodels-cache")
}

/// Where corpora are looked for and how they are downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusLocator {
    /// The shared data directory (`SEQMODELS_DATA`), if any.
    pub data_dir: Option<PathBuf>,
    /// The download cache.
    pub cache_dir: PathBuf,
    /// Whether a missing named corpus may be downloaded.
    pub allow_download: bool,
    /// If set, named corpora are downloaded from `<url_base>/<file_name>` instead of their URL.
    pub url_base: Option<String>,
    /// Whether downloads show a progress bar (only drawn on a terminal).
    pub progress: bool,
}

impl Default for CorpusLocator {
    fn default() -> Self {
        Self::from_env()
    }
}

impl CorpusLocator {
    /// Settings from the environment: `SEQMODELS_DATA`, the cache directory (see
    /// [`default_cache_dir`]), `SEQMODELS_OFFLINE` (any value but empty or `0` turns downloads
    /// off) and `SEQMODELS_DOWNLOAD_BASE`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        CorpusLocator {
            data_dir: var("SEQMODELS_DATA").map(PathBuf::from),
            cache_dir: default_cache_dir(),
            allow_download: var("SEQMODELS_OFFLINE").is_none_or(|v| v == "0"),
            url_base: var("SEQMODELS_DOWNLOAD_BASE"),
            progress: true,
        }
    }

    /// [`Self::from_env`] for a program or test run from the repository at `repo_root`: without
    /// `SEQMODELS_DATA`, the data directory is `shared/data` beside the repository
    /// (`<repo_root>/../shared/data`) when it exists. A relative `SEQMODELS_DATA` that names no
    /// directory from the current one is taken relative to `repo_root` (cargo runs tests in
    /// their crate's directory, CI names the directory from the root).
    pub fn from_env_or_beside(repo_root: &Path) -> Self {
        let mut locator = Self::from_env();
        locator.data_dir = match locator.data_dir.take() {
            Some(dir) if dir.is_relative() && !dir.is_dir() && repo_root.join(&dir).is_dir() => {
                Some(repo_root.join(dir))
            }
            Some(dir) => Some(dir),
            None => Some(repo_root.join("../shared/data")).filter(|beside| beside.is_dir()),
        };
        locator
    }

    /// A locator that only looks in `data_dir` and `cache_dir` and never downloads.
    pub fn offline(data_dir: Option<PathBuf>, cache_dir: PathBuf) -> Self {
        CorpusLocator { data_dir, cache_dir, allow_download: false, url_base: None, progress: false }
    }

    /// The path of the corpus `spec` (a file path or a corpus name), downloading it if needed.
    pub fn resolve(&self, spec: &str) -> Result<PathBuf> {
        let path = Path::new(spec);
        if path.is_file() {
            return Ok(path.to_owned());
        }
        if path.is_dir() {
            return Err(Error::NotAFile { path: path.to_owned() });
        }
        if let Some(corpus) = named_corpus(spec) {
            return self.fetch(corpus);
        }
        let looks_like_path = spec.contains(['/', '\\']) || path.extension().is_some();
        if looks_like_path || path.exists() {
            Err(Error::MissingFile { path: path.to_owned() })
        } else {
            let known = NAMED_CORPORA.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
            Err(Error::UnknownCorpus { name: spec.to_owned(), known })
        }
    }

    /// The text of the corpus `spec` (see [`CorpusLocator::resolve`] and [`read_text_file`]).
    pub fn read(&self, spec: &str) -> Result<String> {
        read_text_file(self.resolve(spec)?)
    }

    /// The URL a named corpus is downloaded from.
    pub fn url_for(&self, corpus: &NamedCorpus) -> String {
        match &self.url_base {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), corpus.file_name),
            None => corpus.url.to_owned(),
        }
    }

    /// The path of a named corpus: data directory, cache, or a fresh download into the cache.
    pub fn fetch(&self, corpus: &'static NamedCorpus) -> Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            let path = dir.join(corpus.file_name);
            if path.is_file() {
                check_hash(&path, corpus.sha256)?;
                return Ok(path);
            }
        }
        let cached = self.cache_dir.join(corpus.file_name);
        if cached.is_file() {
            check_hash(&cached, corpus.sha256)?;
            return Ok(cached);
        }
        let url = self.url_for(corpus);
        let unavailable = |reason: String| Error::CorpusUnavailable {
            corpus,
            cache_dir: self.cache_dir.clone(),
            url: url.clone(),
            reason,
        };
        if !self.allow_download {
            let searched = match &self.data_dir {
                Some(d) => format!("not in {} nor in the cache", d.display()),
                None => "SEQMODELS_DATA is not set and the file is not in the cache".to_owned(),
            };
            return Err(unavailable(format!("{searched}, and downloads are off")));
        }
        if !cfg!(feature = "download") {
            return Err(unavailable("this build has no downloader (the `download` feature is off)".to_owned()));
        }
        match download(&url, &cached, Some(corpus.sha256), self.progress) {
            Ok(()) => Ok(cached),
            Err(e @ Error::HashMismatch { .. }) => Err(e),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }
}

/// Without the `download` feature there is no downloader: [`CorpusLocator::fetch`] reports the
/// file to put into the cache instead.
#[cfg(not(feature = "download"))]
fn download(url: &str, _dest: &Path, _expected_sha256: Option<&str>, _progress: bool) -> Result<()> {
    Err(Error::Download { url: url.to_owned(), reason: "the `download` feature is off".to_owned() })
}

#[cfg(feature = "download")]
pub use crate::download::download;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(named_corpus("timemachine").unwrap().file_name, "timemachine.txt");
        assert!(named_corpus("nope").is_none());
    }

    #[test]
    fn unknown_and_missing() {
        let loc = CorpusLocator::offline(None, std::env::temp_dir().join("seqmodels-no-such-cache"));
        assert!(matches!(loc.resolve("no_such_corpus"), Err(Error::UnknownCorpus { .. })));
        assert!(matches!(loc.resolve("no/such/file.txt"), Err(Error::MissingFile { .. })));
        let err = loc.resolve("timemachine").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::CorpusUnavailable { .. }));
        assert!(msg.contains("timemachine.txt") && msg.contains("SEQMODELS_DATA"), "{msg}");
    }

    #[test]
    fn url_base_override() {
        let mut loc = CorpusLocator::offline(None, PathBuf::from("/tmp"));
        assert_eq!(loc.url_for(&TIME_MACHINE), TIME_MACHINE.url);
        loc.url_base = Some("http://127.0.0.1:9/files/".into());
        assert_eq!(loc.url_for(&TIME_MACHINE), "http://127.0.0.1:9/files/timemachine.txt");
    }
}
