//! The downloader of [`crate::corpus`] (the `download` feature): an HTTP GET into a temporary
//! file, hash-checked, renamed into place only when complete.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::corpus::hex;
use crate::error::{Error, Result};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .build()
        .new_agent()
}

/// Downloads `url` to `dest` atomically.
///
/// The body goes to a temporary file in `dest`'s directory (created if needed) while its
/// SHA-256 is computed; only if the transfer completes and the hash matches `expected_sha256`
/// (when given) is the file renamed to `dest`. On any error nothing is left behind.
pub fn download(url: &str, dest: &Path, expected_sha256: Option<&str>, progress: bool) -> Result<()> {
    let fail = |reason: String| Error::Download { url: url.to_owned(), reason };
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;

    let response = agent().get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => fail(format!("HTTP status {code}")),
        other => fail(other.to_string()),
    })?;
    let expected_len = response.body().content_length();
    let mut body = response.into_body().into_reader();

    let mut tmp = tempfile::Builder::new()
        .prefix(".download-")
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;

    let bar = Progress::new(progress, expected_len, dest);

    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(fail(format!("connection failed after {received} bytes: {e}")));
            }
        };
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(|e| Error::io("write", tmp.path(), e))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    if let Some(n) = expected_len {
        if received != n {
            return Err(fail(format!("expected {n} bytes (Content-Length), received {received}")));
        }
    }
    let found = hex(&hasher.finalize());
    if let Some(expected) = expected_sha256 {
        if !found.eq_ignore_ascii_case(expected) {
            return Err(Error::HashMismatch { what: url.to_owned(), expected: expected.to_owned(), found });
        }
    }
    tmp.as_file().sync_all().map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.persist(dest).map_err(|e| Error::io("rename a download to", dest, e.error))?;
    Ok(())
}

/// The download's progress bar on stderr (drawn on a terminal only), with the `progress`
/// feature; nothing without it.
struct Progress {
    #[cfg(feature = "progress")]
    bar: indicatif::ProgressBar,
}

impl Progress {
    #[cfg(feature = "progress")]
    fn new(shown: bool, total: Option<u64>, dest: &Path) -> Self {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        if !shown {
            return Progress { bar: ProgressBar::hidden() };
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("downloading {}", dest.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()));
        Progress { bar }
    }

    #[cfg(not(feature = "progress"))]
    fn new(_shown: bool, _total: Option<u64>, _dest: &Path) -> Self {
        Progress {}
    }

    fn set_position(&self, _bytes: u64) {
        #[cfg(feature = "progress")]
        self.bar.set_position(_bytes);
    }

    fn abandon(&self) {
        #[cfg(feature = "progress")]
        self.bar.abandon();
    }

    fn finish_and_clear(&self) {
        #[cfg(feature = "progress")]
        self.bar.finish_and_clear();
    }
}
