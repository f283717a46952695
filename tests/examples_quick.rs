//! Runs every d2l example in `--quick` mode and checks its figures and printed metric.
//!
//! The example binaries are the ones `cargo test` builds next to the test executable
//! (`target/<profile>/examples/NAME`): run this through `cargo test --workspace` (or
//! `cargo test --examples --test examples_quick`), which builds the examples first. A test
//! started with `--test examples_quick` alone may run stale example binaries.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/NAME`, beside `target/<profile>/deps/` that holds this test.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo test --workspace` (it builds the examples) or `cargo build --examples` first",
        bin.display()
    );
    bin
}

/// The first number printed after `key` on some line of `out`.
fn number_after(out: &str, key: &str) -> Option<f64> {
    out.lines().rev().find_map(|line| {
        let rest = &line[line.find(key)? + key.len()..];
        let token = rest.trim_start_matches([' ', ':', '=']).split([' ', ',', '(']).next()?;
        token.parse().ok()
    })
}

/// Runs `name --quick --out <tmp>` and checks the exit status, the figures and the metric.
fn check(name: &str, figures: &[&str], metric: &str) {
    let out_dir = std::env::temp_dir().join(format!("seqmodels-example-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let run = Command::new(example_binary(name))
        .args(["--quick", "--out"])
        .arg(&out_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{name} failed ({}):\n{stdout}\n{stderr}", run.status);
    for fig in figures {
        let path = out_dir.join(fig);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 5_000, "{name}: figure {} missing or nearly empty ({len} bytes)", path.display());
        let bytes = std::fs::read(&path).expect("the figure is readable");
        assert!(bytes.starts_with(b"\x89PNG"), "{name}: {} is not a PNG file", path.display());
    }
    let value = number_after(&stdout, metric)
        .unwrap_or_else(|| panic!("{name}: no number after {metric:?} in its output:\n{stdout}"));
    assert!(value.is_finite(), "{name}: {metric} {value} is not finite");
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn sequence() {
    check("sequence", &["data.png", "one_step.png", "multi_step.png", "k_step.png"], "loss:");
}

#[test]
fn text_preprocessing() {
    check("text_preprocessing", &["token_frequencies.png"], "len(corpus), len(vocab) = (");
}

#[test]
fn language_models() {
    check("language_models", &["zipf.png"], "Zipf fit of the unigrams: n_i ~ i^-");
}

#[test]
fn rnn_scratch() {
    check("rnn_scratch", &["perplexity.png"], "perplexity");
}

#[test]
fn rnn_concise() {
    check("rnn_concise", &["perplexity.png"], "perplexity");
}

#[test]
fn gru() {
    check("gru", &["perplexity.png"], "perplexity");
}

#[test]
fn lstm() {
    check("lstm", &["perplexity.png"], "perplexity");
}

#[test]
fn deep_rnn() {
    check("deep_rnn", &["perplexity.png"], "perplexity");
}

#[test]
fn bidirectional() {
    check("bidirectional", &["perplexity.png"], "perplexity");
}

#[test]
fn lstm_cell() {
    check("lstm_cell", &["lstm_cell_vs_pytorch.png"], "max abs difference");
}
