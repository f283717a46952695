//! `seqlm bench` as a user runs it, on tiny configurations: every architecture prints one JSON
//! line whose fields are present and positive (no timing assertion: the figures are not checked),
//! the readable line, random lengths (tokens per iteration = the sum of the drawn lengths), and
//! clear errors on bad options.

use std::process::{Command, Output};

use serde_json::Value;

fn seqlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqlm")).args(args).output().expect("seqlm runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A tiny configuration (the embedding size is given by each test).
const TINY: [&str; 16] = [
    "--vocab", "11", "--hidden", "7", "--layers", "2", "--batch", "3", "--steps", "4", "--iters", "2", "--warmup", "1",
    "--seed", "5",
];

fn bench_json(extra: &[&str]) -> Value {
    let mut args = vec!["bench"];
    args.extend(TINY);
    args.extend(extra);
    args.push("--json");
    let out = seqlm(&args);
    assert!(out.status.success(), "seqlm {args:?} failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one JSON line, found: {stdout}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn positive(report: &Value, key: &str) -> f64 {
    let v = report[key].as_f64().unwrap_or_else(|| panic!("field {key} missing or not a number in {report}"));
    assert!(v.is_finite() && v > 0.0, "field {key} = {v}, expected positive, in {report}");
    v
}

#[test]
fn every_arch_prints_the_contract_fields() {
    for arch in ["lstm", "gru", "rnn"] {
        let report = bench_json(&["--arch", arch, "--embed", "5"]);
        assert_eq!(report["arch"], arch, "{report}");
        assert_eq!(report["impl"], "auto", "{report}");
        for key in [
            "train_tokens_per_s",
            "infer_tokens_per_s",
            "threads",
            "train_ms_median",
            "infer_ms_median",
            "train_gflops_per_s",
            "infer_gflops_per_s",
            "loss",
        ] {
            positive(&report, key);
        }
        // Tokens/s and milliseconds describe the same median: B*T tokens per iteration.
        let tokens = 3.0 * 4.0;
        let train = positive(&report, "train_tokens_per_s") * positive(&report, "train_ms_median") / 1e3;
        assert!((train - tokens).abs() < 1e-6 * tokens, "train: {train} tokens per iteration, expected {tokens}");
        let infer = positive(&report, "infer_tokens_per_s") * positive(&report, "infer_ms_median") / 1e3;
        assert!((infer - tokens).abs() < 1e-6 * tokens, "infer: {infer} tokens per iteration, expected {tokens}");
        assert_eq!(report["threads"].as_u64().map(|t| t >= 1), Some(true), "{report}");
        for (key, value) in [("vocab", 11), ("embed", 5), ("hidden", 7), ("layers", 2), ("batch", 3), ("steps", 4)] {
            assert_eq!(report[key], value, "config echo {key} in {report}");
        }
        assert_eq!(report["iters"], 2);
        assert_eq!(report["warmup"], 1);
    }
}

#[test]
fn one_hot_input_fused_threads_and_readable_line() {
    let report = bench_json(&["--embed", "0", "--threads", "1", "--impl", "fused"]);
    assert_eq!(report["embed"], 0);
    assert_eq!(report["impl"], "fused");
    assert_eq!(report["threads"], 1, "--threads 1 must be the count in force: {report}");
    positive(&report, "train_tokens_per_s");

    let mut args = vec!["bench"];
    args.extend(TINY);
    args.extend(["--arch", "gru"]);
    let out = seqlm(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(line.starts_with("seqlm gru") && line.contains("tokens/s") && line.contains("threads"), "{line}");
}

#[test]
fn composed_path_runs_the_same_contract() {
    let report = bench_json(&["--impl", "composed", "--arch", "lstm", "--embed", "5"]);
    assert_eq!(report["impl"], "composed");
    positive(&report, "train_tokens_per_s");
    positive(&report, "infer_tokens_per_s");
}

#[test]
fn random_lengths_count_only_the_valid_tokens() {
    // TINY: B = 3, T = 4, seed 5.
    let lengths = seqmodels_train::bench_lengths::random_lengths(3, 4, 5);
    let expected: usize = lengths.iter().sum();
    assert!((3..=12).contains(&expected), "B*ceil(T/4) <= {expected} <= B*T ({lengths:?})");
    for extra in [&["--embed", "5"][..], &["--embed", "0", "--arch", "gru", "--impl", "composed"]] {
        let mut args = vec!["--lengths", "random"];
        args.extend(extra);
        let report = bench_json(&args);
        assert_eq!(report["lengths"], "random", "{report}");
        assert_eq!(report["tokens_per_iter"].as_u64(), Some(expected as u64), "{report}");
        let tokens = expected as f64;
        for phase in ["train", "infer"] {
            let per_iter = positive(&report, &format!("{phase}_tokens_per_s"))
                * positive(&report, &format!("{phase}_ms_median"))
                / 1e3;
            assert!(
                (per_iter - tokens).abs() < 1e-6 * tokens,
                "{phase}: {per_iter} tokens per iteration, expected {tokens}"
            );
        }
        positive(&report, "loss");
    }
    let full = bench_json(&["--embed", "5"]);
    assert_eq!(full["lengths"], "full", "{full}");
    assert_eq!(full["tokens_per_iter"], 12, "{full}");

    let mut args = vec!["bench"];
    args.extend(TINY);
    args.extend(["--lengths", "random"]);
    let out = seqlm(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(line.contains(&format!("random lengths, {expected} tokens/iter")), "{line}");
}

#[test]
fn bad_options_fail_with_a_message() {
    for (args, needle) in [
        (vec!["bench", "--iters", "0"], "iters"),
        (vec!["bench", "--vocab", "0"], "vocab"),
        (vec!["bench", "--lr=-1"], "lr"),
        (vec!["bench", "--arch", "transformer"], "transformer"),
        (vec!["bench", "--threads", "0"], "threads"),
        (vec!["bench", "--lengths", "foo"], "foo"),
        (vec!["bench", "--lengths", "random", "--precision", "int8", "--iters", "1"], "lengths"),
    ] {
        let out = seqlm(&args);
        assert!(!out.status.success(), "seqlm {args:?} should fail");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "seqlm {args:?}: message should name {needle}: {err}");
    }
}
