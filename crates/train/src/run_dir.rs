//! The run directory of `seqlm train` (`metrics.jsonl`, `perplexity.png`, `checkpoint/`) and
//! its one rule: it is never partly rewritten.
//!
//! - Writing into a directory that holds another run needs `overwrite`, for a fresh run and for
//!   a resumed run sent elsewhere (`--resume SRC --out OTHER`).
//! - Metrics are appended one line per epoch; lines already written keep their bytes.
//! - Continuing a run in place sets aside (never deletes) what its checkpoint does not cover: a
//!   damaged last line goes to `metrics.jsonl.damaged-N`, the lines of epochs after the
//!   checkpoint to `metrics.jsonl.after-checkpoint-N`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, CHECKPOINT_DIR};
use crate::error::{Error, Result};
use crate::metrics::{self, EpochMetrics};

/// The metrics file of a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The perplexity plot of a run directory.
pub const PLOT_FILE: &str = "perplexity.png";

/// A run directory this process writes into.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

/// A run directory opened to continue a run, with the metrics of the epochs its checkpoint holds.
#[derive(Debug)]
pub struct Continued {
    /// The run directory.
    pub dir: RunDir,
    /// The metrics of the epochs done, oldest first.
    pub history: Vec<EpochMetrics>,
    /// What was set aside or left out, for the user.
    pub notes: Vec<String>,
}

impl RunDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }

    /// `perplexity.png`.
    pub fn plot_path(&self) -> PathBuf {
        self.path.join(PLOT_FILE)
    }

    /// `checkpoint/`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join(CHECKPOINT_DIR)
    }

    /// Appends the metrics of one epoch.
    pub fn append(&self, m: &EpochMetrics) -> Result<()> {
        metrics::append(&self.metrics_path(), m)
    }

    /// Claims `path` for a fresh run: refused when it holds a run, unless `overwrite`, which
    /// removes that run's files first.
    pub fn claim(path: PathBuf, overwrite: bool) -> Result<Self> {
        if let Some(found) = existing_run(&path) {
            if !overwrite {
                let has_checkpoint = checkpoint::resolve_dir(&path).is_ok();
                let advice = match has_checkpoint {
                    true => format!(
                        "continue it with --resume {}, start over with --overwrite, or choose another --out",
                        path.display()
                    ),
                    false => "start over with --overwrite, or choose another --out".to_string(),
                };
                return Err(Error::RunExists { dir: path, found, advice });
            }
            remove_run(&path)?;
        }
        let dir = RunDir { path };
        dir.check_writable()?;
        Ok(dir)
    }

    /// Opens the directory to continue the run of `source` (its run directory), whose checkpoint
    /// holds `epochs_done` epochs. `target` is where the run goes on: `source` itself (the
    /// metrics the checkpoint does not cover are set aside), or another directory, claimed as
    /// [`RunDir::claim`] does, that receives the bytes of the source's covered metrics.
    pub fn continue_run(source: &Path, target: PathBuf, overwrite: bool, epochs_done: usize) -> Result<Continued> {
        if same_dir(source, &target) {
            let dir = RunDir { path: target };
            dir.check_writable()?;
            let (history, notes) = dir.trim_metrics(epochs_done)?;
            return Ok(Continued { dir, history, notes });
        }
        let dir = RunDir::claim(target, overwrite)?;
        let source_metrics = source.join(METRICS_FILE);
        let (bytes, log) = metrics::read_log(&source_metrics)?;
        let kept = covered_lines(&log, epochs_done);
        let mut notes = Vec::new();
        if kept < log.lines.len() || log.damaged_tail.is_some() {
            notes.push(format!(
                "{}: only the lines of the {} epoch(s) the checkpoint holds were copied",
                source_metrics.display(),
                epochs_done
            ));
        }
        if kept > 0 {
            let end = log.lines[kept - 1].end;
            let mut copied = bytes[..end].to_vec();
            if copied.last() != Some(&b'\n') {
                copied.push(b'\n');
            }
            checkpoint::write_atomic(&dir.metrics_path(), &copied)?;
        }
        let history = log.lines[..kept].iter().map(|l| l.metrics.clone()).collect();
        Ok(Continued { dir, history, notes })
    }

    /// Keeps the lines of the first `epochs_done` epochs in `metrics.jsonl` and moves the rest
    /// (a damaged last line, epochs after the checkpoint) into a file beside it.
    fn trim_metrics(&self, epochs_done: usize) -> Result<(Vec<EpochMetrics>, Vec<String>)> {
        let path = self.metrics_path();
        let (bytes, log) = metrics::read_log(&path)?;
        let kept = covered_lines(&log, epochs_done);
        let keep_end = if kept == 0 { 0 } else { log.lines[kept - 1].end };
        let history = log.lines[..kept].iter().map(|l| l.metrics.clone()).collect();
        let mut notes = Vec::new();
        let tail = &bytes[keep_end..];
        if !tail.iter().all(u8::is_ascii_whitespace) {
            let (kind, why) = match &log.damaged_tail {
                Some(d) => ("damaged", format!("line {} is damaged ({})", d.line, d.reason)),
                None => ("after-checkpoint", format!("the checkpoint holds {epochs_done} epoch(s)")),
            };
            let aside = free_name(&path, kind);
            checkpoint::write_atomic(&aside, tail)?;
            let file = fs::OpenOptions::new().write(true).open(&path).map_err(|e| Error::io("open", &path, e))?;
            file.set_len(keep_end as u64).map_err(|e| Error::io("truncate", &path, e))?;
            file.sync_all().map_err(|e| Error::io("write", &path, e))?;
            notes.push(format!(
                "{}: {why}; {} line(s) from line {} on were moved to {}",
                path.display(),
                log.lines.len() - kept + usize::from(log.damaged_tail.is_some()),
                kept + 1,
                aside.display()
            ));
        } else if keep_end > 0 && bytes[keep_end - 1] != b'\n' {
            // The last good line lost only its newline: complete it before appending.
            let mut f = fs::OpenOptions::new().append(true).open(&path).map_err(|e| Error::io("open", &path, e))?;
            f.write_all(b"\n").map_err(|e| Error::io("write", &path, e))?;
        }
        Ok((history, notes))
    }

    /// Creates the directory and checks that a file can be written into it.
    fn check_writable(&self) -> Result<()> {
        fs::create_dir_all(&self.path).map_err(|e| Error::io("create the output directory", &self.path, e))?;
        let probe = self.path.join(".seqlm-write-test");
        fs::write(&probe, b"ok").map_err(|e| Error::io("write into the output directory", &self.path, e))?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }
}

/// What of a run `dir` holds, in words (`None`: nothing, an empty metrics file included).
pub fn existing_run(dir: &Path) -> Option<String> {
    let mut found = Vec::new();
    for name in [CHECKPOINT_DIR.to_string(), format!("{CHECKPOINT_DIR}.prev")] {
        if dir.join(&name).exists() {
            found.push(format!("{name}/"));
        }
    }
    let metrics = dir.join(METRICS_FILE);
    if fs::metadata(&metrics).is_ok_and(|m| m.len() > 0) {
        found.push(METRICS_FILE.to_string());
    }
    (!found.is_empty()).then(|| found.join(" and "))
}

/// The first `runs/BASE`, `runs/BASE-2`, ... that holds no run.
pub fn first_free(base: &str) -> PathBuf {
    let mut candidate = PathBuf::from(base);
    let mut k = 2;
    while existing_run(&candidate).is_some() {
        candidate = PathBuf::from(format!("{base}-{k}"));
        k += 1;
    }
    candidate
}

/// How many leading lines of `log` belong to the first `epochs_done` epochs.
fn covered_lines(log: &metrics::MetricsLog, epochs_done: usize) -> usize {
    log.lines.iter().take_while(|l| l.metrics.epoch <= epochs_done).count()
}

/// Removes the files of a run (the `--overwrite` of a fresh or redirected run).
fn remove_run(dir: &Path) -> Result<()> {
    for name in [CHECKPOINT_DIR.to_string(), format!("{CHECKPOINT_DIR}.prev"), format!("{CHECKPOINT_DIR}.tmp")] {
        let p = dir.join(name);
        if p.exists() {
            fs::remove_dir_all(&p).map_err(|e| Error::io("remove", &p, e))?;
        }
    }
    for name in [METRICS_FILE, PLOT_FILE] {
        let p = dir.join(name);
        if p.exists() {
            fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
        }
    }
    Ok(())
}

/// `PATH.KIND-N` for the first N that does not exist.
fn free_name(path: &Path, kind: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (1..)
        .map(|n| path.with_file_name(format!("{name}.{kind}-{n}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| path.with_file_name(format!("{name}.{kind}")))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(epoch: usize) -> String {
        let m = EpochMetrics {
            epoch,
            step: epoch as u64,
            lr: 1.0,
            train_loss: 0.1 + epoch as f64 / 3.0,
            train_ppl: 1.0,
            val_loss: None,
            val_ppl: None,
            tokens: 10,
            seconds: 0.1,
            tokens_per_s: 100.0,
            sample: None,
        };
        serde_json::to_string(&m).unwrap() + "\n"
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("seqlm-run-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_damaged_last_line_is_set_aside_and_earlier_bytes_stay() {
        let dir = temp("damaged");
        let good = format!("{}{}", line(1), line(2));
        fs::write(dir.join(METRICS_FILE), format!("{good}{{\"epoch\":3,\"st")).unwrap();
        let c = RunDir::continue_run(&dir, dir.clone(), false, 2).unwrap();
        assert_eq!(c.history.len(), 2);
        assert_eq!(fs::read_to_string(dir.join(METRICS_FILE)).unwrap(), good);
        assert_eq!(fs::read_to_string(dir.join("metrics.jsonl.damaged-1")).unwrap(), "{\"epoch\":3,\"st");
        assert!(c.notes[0].contains("damaged"), "{:?}", c.notes);
    }

    #[test]
    fn epochs_after_the_checkpoint_are_set_aside() {
        let dir = temp("after");
        fs::write(dir.join(METRICS_FILE), format!("{}{}{}", line(1), line(2), line(3))).unwrap();
        let c = RunDir::continue_run(&dir, dir.clone(), false, 1).unwrap();
        assert_eq!(c.history.len(), 1);
        assert_eq!(fs::read_to_string(dir.join(METRICS_FILE)).unwrap(), line(1));
        assert_eq!(
            fs::read_to_string(dir.join("metrics.jsonl.after-checkpoint-1")).unwrap(),
            format!("{}{}", line(2), line(3))
        );
    }

    #[test]
    fn a_damaged_line_before_others_is_an_error_and_nothing_moves() {
        let dir = temp("middle");
        let text = format!("{}{{oops\n{}", line(1), line(3));
        fs::write(dir.join(METRICS_FILE), &text).unwrap();
        let e = RunDir::continue_run(&dir, dir.clone(), false, 3).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert_eq!(fs::read_to_string(dir.join(METRICS_FILE)).unwrap(), text);
    }

    #[test]
    fn another_run_needs_overwrite_and_an_empty_metrics_file_is_no_run() {
        let src = temp("src");
        fs::write(src.join(METRICS_FILE), line(1)).unwrap();
        let other = temp("other");
        fs::write(other.join(METRICS_FILE), line(1) + &line(2)).unwrap();
        let e = RunDir::continue_run(&src, other.clone(), false, 1).unwrap_err();
        assert!(e.to_string().contains("--overwrite"), "{e}");
        let c = RunDir::continue_run(&src, other.clone(), true, 1).unwrap();
        assert_eq!(c.history.len(), 1);
        assert_eq!(fs::read_to_string(other.join(METRICS_FILE)).unwrap(), line(1));
        let empty = temp("empty");
        fs::write(empty.join(METRICS_FILE), "").unwrap();
        assert!(RunDir::claim(empty, false).is_ok());
    }
}
