//! The run directory is never partly rewritten: metrics are appended and keep their bytes, a
//! damaged last line is set aside, another run's directory needs `--overwrite`, a run that
//! diverges stops and keeps its last good checkpoint, and nothing is lost to a bad option
//! found after training started.

use std::path::{Path, PathBuf};
use std::process::Output;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text() -> String {
    repo().join("tests/fixtures/lm/text.txt").display().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqlm-run-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn seqlm(args: &[String]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_seqlm"))
        .args(args)
        .env("SEQMODELS_OFFLINE", "1")
        .output()
        .expect("seqlm runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tiny run on the fixture text into `out`, with `extra` options.
fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = [
        "train",
        "--corpus",
        &text(),
        "--max-tokens",
        "all",
        "--batch",
        "4",
        "--steps",
        "10",
        "--hidden",
        "8",
        "--no-progress",
        "--sample-every",
        "0",
        "--out",
        &s(out),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    seqlm(&args)
}

fn resume(from: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> =
        ["train", "--resume", &s(from), "--no-progress", "--sample-every", "0"].map(String::from).to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    seqlm(&args)
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    o
}

fn metrics_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("metrics.jsonl")).unwrap()
}

#[test]
fn a_resume_appends_and_never_rewrites_earlier_lines() {
    let dir = temp("append");
    ok(train(&dir, &["--epochs", "2"]));
    let before = metrics_bytes(&dir);
    ok(resume(&dir, &["--epochs", "3"]));
    let after = metrics_bytes(&dir);
    assert!(after.starts_with(&before), "the lines of epochs 1-2 changed");
    assert_eq!(after.iter().filter(|&&b| b == b'\n').count(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_last_metrics_line_is_kept_aside_and_earlier_epochs_stay() {
    let dir = temp("damaged");
    ok(train(&dir, &["--epochs", "2"]));
    let good = metrics_bytes(&dir);
    let mut damaged = good.clone();
    damaged.extend_from_slice(b"{\"epoch\":3,\"step\":1");
    std::fs::write(dir.join("metrics.jsonl"), &damaged).unwrap();
    let o = ok(resume(&dir, &["--epochs", "3"]));
    assert!(stderr(&o).contains("damaged") && stderr(&o).contains("metrics.jsonl.damaged-1"), "{}", stderr(&o));
    let after = metrics_bytes(&dir);
    assert!(after.starts_with(&good), "the lines before the damaged one changed");
    assert_eq!(after.iter().filter(|&&b| b == b'\n').count(), 3);
    assert_eq!(std::fs::read(dir.join("metrics.jsonl.damaged-1")).unwrap(), b"{\"epoch\":3,\"step\":1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resuming_into_another_run_needs_overwrite() {
    let (src, other) = (temp("src"), temp("other"));
    ok(train(&src, &["--epochs", "1"]));
    ok(train(&other, &["--epochs", "2", "--seed", "3"]));
    let (metrics_before, model_before) =
        (metrics_bytes(&other), std::fs::read(other.join("checkpoint/model.safetensors")).unwrap());
    let o = resume(&src, &["--epochs", "2", "--out", &s(&other)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already holds a run") && stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    assert_eq!(metrics_bytes(&other), metrics_before);
    assert_eq!(std::fs::read(other.join("checkpoint/model.safetensors")).unwrap(), model_before);
    // With --overwrite the run continues there, from the source's epoch-1 line.
    let src_line = metrics_bytes(&src);
    ok(resume(&src, &["--epochs", "2", "--out", &s(&other), "--overwrite"]));
    assert!(metrics_bytes(&other).starts_with(&src_line));
    assert_eq!(metrics_bytes(&src), src_line, "the source run changed");
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn a_diverging_run_stops_names_the_step_and_the_cause_and_leaves_no_run_behind() {
    let dir = temp("diverge");
    let o = train(&dir, &["--epochs", "3", "--lr", "1e30", "--clip", "0"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("at step") && e.contains("learning rate") && e.contains("--clip 1"), "{e}");
    assert!(!e.contains("cannot draw plot"), "{e}");
    // Nothing of a run was written: the same --out starts again without --overwrite or --resume.
    ok(train(&dir, &["--epochs", "1"]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_huge_sample_len_is_refused_before_any_epoch() {
    let dir = temp("sample-len");
    let o = train(&dir, &["--epochs", "1", "--sample-len", "18446744073709551615"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--sample-len"), "{}", stderr(&o));
    assert!(!dir.join("metrics.jsonl").exists() && !dir.join("checkpoint").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_defaults_of_a_resumed_run_come_from_its_checkpoint() {
    let dir = temp("defaults");
    ok(train(&dir, &["--epochs", "1", "--lr", "0.5"]));
    // --lr and --batch are left out: the checkpoint's values hold, not the command line's
    // defaults (lr 1, batch 32).
    let o = ok(resume(&dir, &["--epochs", "2"]));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("lr 0.5 ") && stdout.contains("batch 4 "), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
