//! `seqlm train`, `seqlm eval` and `seqlm generate` as a user runs them: the run directory,
//! exact resume, Ctrl-C, a NaN loss, bad input, and interop with PyTorch through the committed
//! fixtures in tests/fixtures/lm (written by scripts/torch_lm.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/lm")
}

fn text() -> String {
    fixtures().join("text.txt").display().to_string()
}

/// The directory holding the Time Machine, found as a program run from this repository finds
/// it (`SEQMODELS_DATA`, `shared/data` beside the repository, the cache, or a download), so
/// that `seqlm` itself runs offline.
fn data_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let locator = seqmodels_data::CorpusLocator::from_env_or_beside(&repo());
        let path = locator.resolve("timemachine").unwrap_or_else(|e| panic!("{e}"));
        let dir = path.parent().expect("a corpus file has a directory").to_path_buf();
        std::path::absolute(dir).expect("an absolute path")
    })
    .clone()
}

fn seqlm_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seqlm"));
    c.args(args).env("SEQMODELS_DATA", data_dir()).env("SEQMODELS_OFFLINE", "1");
    c
}

fn seqlm(args: &[&str]) -> Output {
    seqlm_cmd(args).output().expect("seqlm runs")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqlm-cli-lm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A small, fast run on the fixture text (hidden size 16 unless `extra` sets one).
fn tiny(out_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "train",
        "--corpus",
        &text(),
        "--clean",
        "d2l",
        "--max-tokens",
        "all",
        "--batch",
        "4",
        "--steps",
        "10",
        "--no-progress",
        "--out",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    v.push(s(out_dir));
    if !extra.contains(&"--hidden") {
        v.extend(["--hidden", "16"].map(String::from));
    }
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

fn run_ok(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = seqlm(&refs);
    assert!(o.status.success(), "seqlm {args:?} failed\nstdout:\n{}\nstderr:\n{}", out(&o), err(&o));
    o
}

fn run_fail(args: &[&str]) -> String {
    let o = seqlm(args);
    assert!(!o.status.success(), "seqlm {args:?} should fail\nstdout:\n{}", out(&o));
    let e = err(&o);
    assert!(!e.contains("panicked"), "seqlm {args:?} panicked:\n{e}");
    e
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn losses(dir: &Path) -> Vec<(f64, f64)> {
    metrics(dir).iter().map(|m| (m["train_loss"].as_f64().unwrap(), m["val_loss"].as_f64().unwrap())).collect()
}

#[test]
fn train_writes_metrics_plot_checkpoint_and_continuation() {
    let dir = temp("basic");
    let o = run_ok(&tiny(&dir, &["--epochs", "3", "--sample-every", "2", "--test", &text()]));
    let stdout = out(&o);
    assert!(stdout.contains("final perplexity: train"), "{stdout}");
    assert!(stdout.contains("test perplexity:"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("time traveller")), "{stdout}");
    assert!(stdout.contains("sample: time traveller"), "{stdout}");
    let m = metrics(&dir);
    assert_eq!(m.len(), 3);
    for (i, line) in m.iter().enumerate() {
        assert_eq!(line["epoch"], i + 1);
        let ppl = line["train_ppl"].as_f64().unwrap();
        assert!(ppl.is_finite() && ppl > 1.0, "{line}");
        assert!(line["val_ppl"].as_f64().unwrap().is_finite());
        assert!(line["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    assert!(m[1]["sample"].as_str().unwrap().starts_with("time traveller"));
    let png = std::fs::read(dir.join("perplexity.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    for f in ["config.json", "model.safetensors", "vocab.json", "trainer.json"] {
        assert!(dir.join("checkpoint").join(f).is_file(), "missing {f}");
    }
    // generate and eval use the run directory as a checkpoint.
    let g = run_ok(&["generate", "--checkpoint", &s(&dir), "--prefix", "the time", "--len", "12"].map(String::from));
    assert_eq!(out(&g).trim_end_matches('\n').chars().count(), "the time".len() + 12);
    let e = run_ok(&["eval", "--checkpoint", &s(&dir), "--text", &text(), "--json"].map(String::from));
    let j: serde_json::Value = serde_json::from_str(out(&e).trim()).unwrap();
    assert!(j["perplexity"].as_f64().unwrap() > 1.0 && j["tokens"].as_u64().unwrap() > 2000, "{j}");
    let sampled = run_ok(
        &[
            "generate",
            "--checkpoint",
            &s(&dir),
            "--prefix",
            "the",
            "--temperature",
            "0.8",
            "--top-k",
            "5",
            "--seed",
            "3",
        ]
        .map(String::from),
    );
    assert!(out(&sampled).starts_with("the"));
    // A second run into the same directory is refused unless --overwrite.
    let e = run_fail(&tiny(&dir, &["--epochs", "1"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("already holds a run") && e.contains("--overwrite"), "{e}");
    run_ok(&tiny(&dir, &["--epochs", "1", "--overwrite", "--sample-every", "0"]));
    assert_eq!(metrics(&dir).len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_gives_the_losses_of_an_uninterrupted_run() {
    let opts = [
        "--embed",
        "8",
        "--layers",
        "2",
        "--dropout",
        "0.2",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--lr-decay",
        "2",
        "--lr-decay-after",
        "2",
        "--seed",
        "7",
        "--sample-every",
        "0",
    ];
    let full = temp("resume-full");
    let mut args = tiny(&full, &opts);
    args.extend(["--epochs", "4"].map(String::from));
    run_ok(&args);
    let part = temp("resume-part");
    let mut args = tiny(&part, &opts);
    args.extend(["--epochs", "2"].map(String::from));
    run_ok(&args);
    let o = run_ok(
        &["train", "--resume", &s(&part), "--epochs", "4", "--no-progress", "--sample-every", "0"].map(String::from),
    );
    assert!(out(&o).contains("resuming"), "{}", out(&o));
    assert_eq!(losses(&part), losses(&full));
    assert_eq!(losses(&full).len(), 4);
    // Resuming a finished run without more epochs says so and changes nothing.
    let o = run_ok(&["train", "--resume", &s(&part), "--no-progress"].map(String::from));
    assert!(out(&o).contains("already has 4 of 4 epochs"), "{}", out(&o));
    // The checkpoint fixes the model and data: changing them is refused.
    let e = run_fail(&["train", "--resume", &s(&part), "--hidden", "32", "--batch", "8"]);
    assert!(e.contains("--hidden") && e.contains("--batch"), "{e}");
    let _ = std::fs::remove_dir_all(&full);
    let _ = std::fs::remove_dir_all(&part);
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_and_the_run_resumes_exactly() {
    let dir = temp("ctrlc");
    let args =
        tiny(&dir, &["--epochs", "100000", "--sample-every", "0", "--log-every", "1", "--seed", "5", "--hidden", "48"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = seqlm_cmd(&refs).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while metrics_lines(&dir) < 1 {
        assert!(started.elapsed() < Duration::from_secs(120), "no epoch finished in 2 minutes");
        if let Some(status) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            panic!("seqlm train exited early ({status}):\n{}\n{}", out(&o), err(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "stdout:\n{}\nstderr:\n{}", out(&o), err(&o));
    assert!(out(&o).contains("interrupted: checkpoint written"), "{}", out(&o));
    let trainer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint/trainer.json")).unwrap()).unwrap();
    let done = trainer["progress"]["epoch"].as_u64().unwrap() as usize;
    let target = (done + 2).to_string();
    run_ok(
        &["train", "--resume", &s(&dir), "--epochs", &target, "--no-progress", "--sample-every", "0"].map(String::from),
    );

    let reference = temp("ctrlc-ref");
    run_ok(&tiny(&reference, &["--epochs", &target, "--sample-every", "0", "--seed", "5", "--hidden", "48"]));
    assert_eq!(losses(&dir), losses(&reference));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&reference);
}

fn metrics_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
}

#[test]
fn nan_loss_stops_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = temp("nan");
    run_ok(&tiny(&dir, &["--epochs", "2", "--sample-every", "0"]));
    let model_before = std::fs::read(dir.join("checkpoint/model.safetensors")).unwrap();
    let e = run_fail(&["train", "--resume", &s(&dir), "--epochs", "5", "--lr", "1e300", "--no-progress"]);
    assert!(e.contains("became") && e.contains("at step") && e.contains("epoch 3"), "{e}");
    assert!(e.contains("last good checkpoint (epoch 2)"), "{e}");
    assert_eq!(std::fs::read(dir.join("checkpoint/model.safetensors")).unwrap(), model_before);
    assert_eq!(metrics(&dir).len(), 2);
    // The kept checkpoint still works.
    run_ok(&["eval", "--checkpoint", &s(&dir), "--text", &text()].map(String::from));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_hyperparameters_and_paths_are_clear_errors() {
    let dir = temp("bad");
    let t = text();
    let o = s(&dir.join("run"));
    let base = ["train", "--corpus", t.as_str(), "--no-progress", "--hidden", "8", "--out", o.as_str()];
    let with = |extra: &[&str]| -> String {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        run_fail(&v)
    };
    let e = with(&["--batch", "0"]);
    assert!(e.contains("invalid batch") && e.contains("found 0"), "{e}");
    let e = with(&["--steps", "100000"]);
    assert!(e.contains("--steps 100000") && e.contains("needs at least"), "{e}");
    let e = with(&["--lr", "-1"]);
    assert!(e.contains("invalid lr") && e.contains("found -1"), "{e}");
    let e = with(&["--lr=-0.5"]);
    assert!(e.contains("invalid lr"), "{e}");
    let e = with(&["--dropout", "1.5"]);
    assert!(e.contains("dropout"), "{e}");
    let e = with(&["--eos"]);
    assert!(e.contains("word tokens"), "{e}");
    let e = with(&["--tie-weights"]);
    assert!(e.contains("tie"), "{e}");
    let e = with(&["--max-tokens", "lots"]);
    assert!(e.contains("max-tokens"), "{e}");
    let e = with(&["--device", "tpu"]);
    assert!(e.contains("--device"), "{e}");
    let e = run_fail(&["train", "--corpus", "/nonexistent/corpus.txt", "--no-progress"]);
    assert!(e.contains("/nonexistent/corpus.txt"), "{e}");
    // An output directory that cannot be written: a path under a regular file.
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under = s(&file.join("run"));
    let e = run_fail(&["train", "--corpus", t.as_str(), "--no-progress", "--hidden", "8", "--out", under.as_str()]);
    assert!(e.contains("cannot create the output directory") && e.contains("a-file"), "{e}");
    let e = run_fail(&["generate", "--checkpoint", &s(&dir), "--prefix", "x"]);
    assert!(e.contains("not a checkpoint"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_and_mismatched_checkpoints_are_refused() {
    let dir = temp("corrupt");
    let src = fixtures().join("rust_lstm_char");
    let copy = |name: &str| -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["config.json", "model.safetensors", "vocab.json"] {
            std::fs::copy(src.join(f), d.join(f)).unwrap();
        }
        d
    };
    let eval = |d: &Path| run_fail(&["eval", "--checkpoint", &s(d), "--text", &text()]);
    // Truncated weights.
    let d = copy("truncated");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = eval(&d);
    assert!(e.contains("model.safetensors"), "{e}");
    // A config that does not match the weights: hidden size 32 in the file, 24 in config.json
    // (the fixture text has 25 distinct characters).
    let d = copy("mismatch");
    let cfg =
        std::fs::read_to_string(d.join("config.json")).unwrap().replace("\"hidden_size\": 32", "\"hidden_size\": 24");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let e = eval(&d);
    assert!(e.contains("rnn.weight_ih_l0") && e.contains("[96, 25]") && e.contains("[128, 25]"), "{e}");
    // A vocabulary of the wrong size.
    let d = copy("vocab");
    std::fs::write(d.join("vocab.json"), r#"{"unk_token":"<unk>","tokens":["<unk>","a","b"]}"#).unwrap();
    let e = eval(&d);
    assert!(e.contains("vocabulary size") && e.contains("25") && e.contains("3 tokens"), "{e}");
    // Invalid JSON and a missing file.
    let d = copy("json");
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    let e = eval(&d);
    assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
    let d = copy("missing");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = eval(&d);
    assert!(e.contains("missing model.safetensors"), "{e}");
    // A model-only checkpoint cannot be resumed.
    let e = run_fail(&["train", "--resume", &s(&src), "--no-progress"]);
    assert!(e.contains("no trainer.json"), "{e}");
    let e = run_fail(&["generate", "--checkpoint", &s(&src), "--prefix", "the", "--top-p", "2"]);
    assert!(e.contains("top_p"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Direction (a): a checkpoint written by `seqlm train`, loaded by PyTorch (strict) which
/// computed the perplexity in expected.json; direction (b): checkpoints trained in PyTorch
/// (GRU with tied weights on words, LSTM with projection and tied weights, bidirectional relu
/// RNN), used here by `seqlm eval` and `seqlm generate`.
#[test]
fn pytorch_interop_both_ways_agrees_to_1e4_in_perplexity() {
    let cases = ["rust_lstm_char", "torch_gru_word_tied", "torch_lstm_proj_char", "torch_rnn_relu_bidir"];
    for case in cases {
        let dir = fixtures().join(case);
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let steps = expected["steps"].as_u64().unwrap().to_string();
        let o = run_ok(
            &["eval", "--checkpoint", &s(&dir), "--text", &text(), "--json", "--steps", &steps].map(String::from),
        );
        let got: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
        let (ours, theirs) = (got["perplexity"].as_f64().unwrap(), expected["perplexity"].as_f64().unwrap());
        assert!((ours - theirs).abs() < 1e-4, "{case}: seqlm {ours} vs PyTorch {theirs}");
        assert_eq!(got["tokens"], expected["tokens"], "{case}");
        if expected["min_greedy_margin"].as_f64().unwrap() > 1e-3 {
            let len = expected["len"].as_u64().unwrap().to_string();
            let prefix = expected["prefix"].as_str().unwrap();
            let g =
                run_ok(&["generate", "--checkpoint", &s(&dir), "--prefix", prefix, "--len", &len].map(String::from));
            assert_eq!(out(&g).strip_suffix('\n').unwrap(), expected["generated"].as_str().unwrap(), "{case}");
        }
    }
}

/// A checkpoint written now has the layout of the committed Rust fixture (same files, same
/// config keys, same state-dict keys), so the interop shown by the fixture holds for it.
#[test]
fn fresh_checkpoints_keep_the_fixture_format() {
    let dir = temp("format");
    run_ok(&tiny(&dir, &["--epochs", "1", "--hidden", "32", "--sample-every", "0"]));
    let keys = |p: &Path| -> Vec<String> {
        let mut k: Vec<String> = seqmodels::state_dict::read_safetensors(p).unwrap().into_keys().collect();
        k.sort();
        k
    };
    let fixture = fixtures().join("rust_lstm_char");
    assert_eq!(keys(&dir.join("checkpoint/model.safetensors")), keys(&fixture.join("model.safetensors")));
    let cfg = |p: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (a, b) = (cfg(&dir.join("checkpoint/config.json")), cfg(&fixture.join("config.json")));
    let shape = |v: &serde_json::Value| -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in v.as_object().unwrap() {
            out.push(k.clone());
            if let Some(o) = v.as_object() {
                out.extend(o.keys().map(|kk| format!("{k}.{kk}")));
            }
        }
        out.sort();
        out
    };
    assert_eq!(shape(&a), shape(&b));
    assert_eq!(a["model"], b["model"]);
    assert_eq!(a["tokenizer"], b["tokenizer"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn d2l_defaults_on_the_time_machine() {
    // The README's main job with fewer epochs: Time Machine, one-hot LSTM 256, batch 32, 35 steps.
    let dir = temp("d2l");
    let o = run_ok(&["train", "--epochs", "1", "--no-progress", "--out", &s(&dir)].map(String::from));
    let stdout = out(&o);
    assert!(stdout.contains("corpus timemachine") && stdout.contains("vocabulary 28"), "{stdout}");
    assert!(stdout.contains("training on 10000 tokens, validating on 1000 tokens"), "{stdout}");
    assert!(stdout.contains("LSTM x1 H=256 input one-hot"), "{stdout}");
    let m = metrics(&dir);
    assert_eq!(m[0]["tokens"], 8960, "8 minibatches of 32 x 35 tokens");
    let ppl = m[0]["train_ppl"].as_f64().unwrap();
    assert!(ppl > 10.0 && ppl < 30.0, "first-epoch perplexity {ppl}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `seqlm quantize` on the committed checkpoints: bf16 and int8 checkpoints that `eval` and
/// `generate` read, with perplexities within the formats' bounds of the f32 model's, the same
/// figures as converting on load, and clear refusals for what cannot be done.
#[test]
fn reduced_precision_checkpoints_stay_close_to_f32() {
    let dir = temp("quantize");
    for (case, bound) in [("rust_lstm_char", [0.005, 0.02]), ("torch_gru_word_tied", [0.005, 0.02])] {
        let f32_dir = fixtures().join(case);
        let eval = |checkpoint: &Path, extra: &[&str]| -> f64 {
            let mut args = vec!["eval", "--checkpoint"];
            let c = s(checkpoint);
            args.push(&c);
            let t = text();
            args.extend(["--text", &t, "--json"]);
            args.extend(extra);
            let o = run_ok(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
            let v: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
            v["perplexity"].as_f64().unwrap()
        };
        let reference = eval(&f32_dir, &[]);
        for (precision, bound) in ["bf16", "int8"].into_iter().zip(bound) {
            let q = dir.join(format!("{case}-{precision}"));
            run_ok(
                &["quantize", "--checkpoint", &s(&f32_dir), "--precision", precision, "--out", &s(&q)]
                    .map(String::from),
            );
            let config = std::fs::read_to_string(q.join("config.json")).unwrap();
            assert!(config.contains(&format!("\"precision\": \"{precision}\"")), "{config}");
            let stored = eval(&q, &[]);
            assert!((stored / reference - 1.0).abs() < bound, "{case} {precision}: {stored} vs f32 {reference}");
            assert_eq!(eval(&f32_dir, &["--precision", precision]), stored, "{case} {precision}: converted on load");
            let g =
                run_ok(&["generate", "--checkpoint", &s(&q), "--prefix", "the time", "--len", "5"].map(String::from));
            assert!(out(&g).starts_with("the time"), "{}", out(&g));
            let e = run_fail(&["quantize", "--checkpoint", &s(&f32_dir), "--precision", precision, "--out", &s(&q)]);
            assert!(e.contains("already exists"), "{e}");
        }
        let int8 = dir.join(format!("{case}-int8"));
        let e = run_fail(&["eval", "--checkpoint", &s(&int8), "--text", &text(), "--precision", "bf16"]);
        assert!(e.contains("expected bf16 (--precision), found int8 weights"), "{e}");
        let e = run_fail(&["train", "--resume", &s(&int8), "--out", &s(&dir.join("resumed"))]);
        assert!(e.contains("int8 weights for inference") && e.contains("expected the f32 checkpoint"), "{e}");
    }
    for (case, what) in [("torch_lstm_proj_char", "proj_size"), ("torch_rnn_relu_bidir", "bidirectional")] {
        let out_dir = dir.join(case);
        let e = run_fail(&[
            "quantize",
            "--checkpoint",
            &s(&fixtures().join(case)),
            "--precision",
            "int8",
            "--out",
            &s(&out_dir),
        ]);
        assert!(e.contains(what), "{case}: {e}");
        assert!(!out_dir.exists() && !dir.join(format!("{case}.tmp")).exists(), "{case}: nothing written");
    }
    let e = run_fail(&[
        "quantize",
        "--checkpoint",
        &s(&fixtures().join("rust_lstm_char")),
        "--precision",
        "f32",
        "--out",
        &s(&dir.join("f32")),
    ]);
    assert!(e.contains("bf16 or int8"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
