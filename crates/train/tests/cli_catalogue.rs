//! A catalogue of bad command lines, across every `seqlm` subcommand: each must fail with exit
//! status 2 (a usage error: clap's own, or an option value out of range) or 1 (anything else:
//! missing or damaged files, sizes beyond the machine), never a panic (101) or a signal, and its
//! message must name the offending value. Every case fails before any training step.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Exit status of a usage error.
const USAGE: i32 = 2;
/// Exit status of every other error.
const FAILURE: i32 = 1;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Files the cases point at: good fixtures and deliberately bad copies.
struct Files {
    dir: PathBuf,
    text: String,
    checkpoint: String,
    module: String,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("seqlm-cli-catalogue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let files = Files {
            text: s(&repo().join("tests/fixtures/lm/text.txt")),
            checkpoint: s(&repo().join("tests/fixtures/lm/rust_lstm_char")),
            module: s(&repo().join("tests/fixtures/modules/lstm_l1_h0/module.json")),
            dir,
        };
        std::fs::write(files.path("empty.txt"), b"").unwrap();
        std::fs::write(files.path("latin1.txt"), b"caf\xe9 au lait").unwrap();
        std::fs::write(files.path("one.txt"), b"a").unwrap();
        std::fs::write(files.path("a-file"), b"x").unwrap();
        std::fs::create_dir_all(files.path("a-dir")).unwrap();
        files.bad_checkpoint("nan-checkpoint", |dir| {
            let path = dir.join("model.safetensors");
            let mut tensors = seqmodels::state_dict::read_safetensors(&path).unwrap();
            let bias = tensors["decoder.bias"].clone();
            let nan = (bias.ones_like().unwrap() * f64::NAN).unwrap();
            tensors.insert("decoder.bias".into(), nan);
            let list: Vec<(String, candle_core::Tensor)> = tensors.into_iter().collect();
            seqmodels::save_state_dict(&list, "", &path).unwrap();
        });
        files.bad_checkpoint("unknown-key-checkpoint", |dir| {
            let path = dir.join("config.json");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replacen("\"vocab_size\"", "\"vocab_sise\": 3, \"vocab_size\"", 1)).unwrap();
        });
        files.bad_checkpoint("truncated-checkpoint", |dir| {
            let path = dir.join("model.safetensors");
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        });
        files.bad_checkpoint("bad-vocab-checkpoint", |dir| {
            std::fs::write(dir.join("vocab.json"), r#"{"unk_token": "<unk>", "tokens": ["<unk>"], "extra": 1}"#)
                .unwrap();
        });
        let module = |name: &str, json: &str| std::fs::write(files.path(name), json).unwrap();
        module("huge.json", r#"{"type": "LSTM", "input_size": 4, "hidden_size": 1000000000}"#);
        module("overflow.json", r#"{"type": "GRU", "input_size": 4, "hidden_size": 4611686018427387904}"#);
        module("unknown-key.json", r#"{"type": "LSTM", "input_size": 4, "hidden_size": 5, "hiden": 3}"#);
        module("zero-layers.json", r#"{"type": "LSTM", "input_size": 4, "hidden_size": 5, "num_layers": 0}"#);
        module("mamba.json", r#"{"type": "Mamba", "input_size": 4, "hidden_size": 5}"#);
        module("broken.json", r#"{"type": "LSTM", "input_size": 4,"#);
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn p(&self, name: &str) -> String {
        s(&self.path(name))
    }

    /// A copy of the fixture checkpoint, spoilt by `spoil`.
    fn bad_checkpoint(&self, name: &str, spoil: impl FnOnce(&Path)) {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["config.json", "model.safetensors", "vocab.json"] {
            std::fs::copy(Path::new(&self.checkpoint).join(f), dir.join(f)).unwrap();
        }
        spoil(&dir);
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// One bad invocation: the arguments, the exit status, and strings the message must contain.
struct Case {
    args: Vec<String>,
    status: i32,
    needles: Vec<String>,
}

fn case(args: &[&str], status: i32, needles: &[&str]) -> Case {
    Case {
        args: args.iter().map(|a| a.to_string()).collect(),
        status,
        needles: needles.iter().map(|n| n.to_string()).collect(),
    }
}

/// `seqlm train` on the fixture text with tiny settings, unless the case sets them itself.
fn train(f: &Files, args: &[&str], status: i32, needles: &[&str]) -> Case {
    let out = f.p("train-out");
    let base = [
        ("--corpus", f.text.as_str()),
        ("--hidden", "8"),
        ("--epochs", "1"),
        ("--sample-every", "0"),
        ("--out", out.as_str()),
    ];
    let mut all = vec!["train", "--no-progress"];
    for (flag, value) in base {
        let overridden = args.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if !overridden && !args.contains(&"--resume") {
            all.extend([flag, value]);
        }
    }
    all.extend_from_slice(args);
    case(&all, status, needles)
}

fn train_cases(f: &Files) -> Vec<Case> {
    let (dir, file, nan) = (f.p("a-dir"), f.p("a-file"), f.p("nan-checkpoint"));
    let under_file = s(&f.path("a-file").join("run"));
    let (empty, latin1) = (f.p("empty.txt"), f.p("latin1.txt"));
    let mut v = vec![
        // Values clap cannot parse, unknown choices and options.
        train(f, &["--batch", "abc"], USAGE, &["abc", "--batch"]),
        train(f, &["--batch", "-1"], USAGE, &["-1", "--batch"]),
        train(f, &["--steps", "1.5"], USAGE, &["1.5", "--steps"]),
        train(f, &["--epochs", "x"], USAGE, &["'x'", "--epochs"]),
        train(f, &["--lr", "fast"], USAGE, &["fast", "--lr"]),
        train(f, &["--model", "transformer"], USAGE, &["transformer", "lstm"]),
        train(f, &["--optimizer", "rmsprop"], USAGE, &["rmsprop", "adamw"]),
        train(f, &["--sampling", "shuffled"], USAGE, &["shuffled", "sequential"]),
        train(f, &["--tokenizer", "bytes"], USAGE, &["bytes", "bpe"]),
        train(f, &["--clean", "lower"], USAGE, &["lower", "d2l"]),
        train(f, &["--nonlinearity", "sigmoid"], USAGE, &["sigmoid", "relu"]),
        train(f, &["--impl", "fastest"], USAGE, &["fastest", "fused"]),
        train(f, &["--device", "tpu"], USAGE, &["tpu", "--device"]),
        train(f, &["--hidden", "2.5"], USAGE, &["2.5", "--hidden"]),
        train(f, &["--seed", "-3"], USAGE, &["-3", "--seed"]),
        train(f, &["--unknown-flag"], USAGE, &["--unknown-flag"]),
        train(f, &["--embed", "8", "--one-hot"], USAGE, &["--one-hot"]),
        train(f, &["--lr-decay-after", "3"], USAGE, &["--lr-decay"]),
        train(f, &["--lr-decay", "2", "--lr-plateau", "2"], USAGE, &["--lr-plateau"]),
        train(f, &["--sample-every", "x"], USAGE, &["'x'", "--sample-every"]),
        train(f, &["--checkpoint-every", "-1"], USAGE, &["-1", "--checkpoint-every"]),
        train(f, &["--prefix"], USAGE, &["--prefix"]),
        train(f, &["--hidden", "8", "--hidden", "9"], USAGE, &["--hidden"]),
        // Values in range of their type but not of the option.
        train(f, &["--batch", "0"], USAGE, &["invalid batch", "found 0"]),
        train(f, &["--steps", "0"], USAGE, &["invalid steps", "found 0"]),
        train(f, &["--epochs", "0"], USAGE, &["invalid epochs", "found 0"]),
        train(f, &["--lr", "0"], USAGE, &["invalid lr", "found 0"]),
        train(f, &["--lr", "-1"], USAGE, &["invalid lr", "found -1"]),
        train(f, &["--lr", "inf"], USAGE, &["invalid lr", "found inf"]),
        train(f, &["--lr", "NaN"], USAGE, &["invalid lr", "found NaN"]),
        train(f, &["--clip", "-1"], USAGE, &["invalid clip", "found -1"]),
        train(f, &["--dropout", "-0.5"], USAGE, &["dropout", "-0.5"]),
        train(f, &["--dropout", "1.5"], USAGE, &["dropout", "1.5"]),
        train(f, &["--val-fraction", "1"], USAGE, &["val-fraction", "found 1"]),
        train(f, &["--val-fraction", "-0.1"], USAGE, &["val-fraction", "-0.1"]),
        train(f, &["--max-tokens", "0"], USAGE, &["max-tokens", "found 0"]),
        train(f, &["--max-tokens", "lots"], USAGE, &["max-tokens", "lots"]),
        train(f, &["--max-tokens", "-5"], USAGE, &["max-tokens", "-5"]),
        train(f, &["--hidden", "0"], USAGE, &["hidden_size", "0"]),
        train(f, &["--layers", "0"], USAGE, &["num_layers", "0"]),
        train(f, &["--embed", "0"], USAGE, &["embed", "found 0"]),
        train(f, &["--proj-size", "8"], USAGE, &["proj_size", "8"]),
        train(f, &["--proj-size", "4", "--model", "gru"], USAGE, &["proj_size", "GRU"]),
        train(f, &["--nonlinearity", "relu", "--model", "lstm"], USAGE, &["nonlinearity", "--model lstm"]),
        train(f, &["--eos"], USAGE, &["eos", "word"]),
        train(f, &["--tie-weights"], USAGE, &["tie_weights", "one-hot"]),
        train(f, &["--tie-weights", "--embed", "7"], USAGE, &["tie_weights", "embedding size 7"]),
        train(f, &["--momentum", "0.9", "--optimizer", "adam"], USAGE, &["momentum", "0.9"]),
        train(f, &["--lr-plateau", "2", "--val-fraction", "0"], USAGE, &["lr-plateau", "validation"]),
        train(f, &["--lr-decay", "0"], USAGE, &["decay factor", "found 0"]),
        train(f, &["--lr-decay", "-2"], USAGE, &["decay factor", "-2"]),
        train(f, &["--init-range", "0"], USAGE, &["init-range", "found 0"]),
        train(f, &["--init-range", "-1"], USAGE, &["init-range", "-1"]),
        train(f, &["--checkpoint-every", "0"], USAGE, &["checkpoint-every", "found 0"]),
        train(f, &["--steps", "100000"], USAGE, &["--steps 100000", "needs at least"]),
        train(f, &["--batch", "1000000"], USAGE, &["--batch 1000000", "needs at least"]),
        // Sizes beyond any machine: refused before anything is allocated or trained.
        train(f, &["--hidden", "1000000000"], FAILURE, &["hidden_size 1000000000", "memory"]),
        train(f, &["--layers", "18446744073709551615"], FAILURE, &["18446744073709551615 layer(s)"]),
        train(f, &["--embed", "4611686018427387904"], FAILURE, &["4611686018427387904"]),
        train(f, &["--sample-len", "18446744073709551615"], FAILURE, &["18446744073709551615", "--sample-len"]),
        train(f, &["--sample-len", "1000000000000000"], FAILURE, &["1000000000000000", "--sample-len"]),
        // Files.
        train(f, &["--corpus", "/nonexistent/corpus.txt"], FAILURE, &["/nonexistent/corpus.txt"]),
        train(f, &["--corpus", &dir], FAILURE, &[&dir, "is a directory"]),
        train(f, &["--corpus", "nosuchcorpus"], FAILURE, &["nosuchcorpus", "timemachine"]),
        train(f, &["--corpus", &empty], FAILURE, &[&empty, "empty"]),
        train(f, &["--corpus", &latin1], FAILURE, &[&latin1, "UTF-8"]),
        train(f, &["--valid", "/nonexistent/valid.txt"], FAILURE, &["/nonexistent/valid.txt"]),
        train(f, &["--test", "/nonexistent/test.txt"], FAILURE, &["/nonexistent/test.txt"]),
        train(f, &["--out", &under_file], FAILURE, &["cannot create the output directory", &file]),
        train(f, &["--resume", "/nonexistent/run"], FAILURE, &["/nonexistent/run"]),
        train(f, &["--resume", &f.checkpoint], FAILURE, &["trainer.json", "rust_lstm_char"]),
        train(f, &["--resume", &nan], FAILURE, &["decoder.bias", "NaN"]),
        train(f, &["--resume", &f.checkpoint, "--hidden", "32"], USAGE, &["--hidden", "--resume"]),
        train(f, &["--resume", &f.checkpoint, "--batch", "8", "--eos"], USAGE, &["--batch", "--eos"]),
    ];
    v.push(train(f, &["--corpus", &file, "--tokenizer", "word", "--eos"], USAGE, &["val-fraction", "2 tokens"]));
    v
}

fn generate_cases(f: &Files) -> Vec<Case> {
    let ck = f.checkpoint.as_str();
    let g = |extra: &[&str], status: i32, needles: &[&str]| {
        let mut args = vec!["generate", "--checkpoint", ck, "--prefix", "time"];
        args.extend_from_slice(extra);
        case(&args, status, needles)
    };
    let (nan, unknown, truncated, vocab) = (
        f.p("nan-checkpoint"),
        f.p("unknown-key-checkpoint"),
        f.p("truncated-checkpoint"),
        f.p("bad-vocab-checkpoint"),
    );
    let (dir, not_ck) = (f.p("a-dir"), f.p("a-dir"));
    vec![
        case(&["generate"], USAGE, &["--checkpoint"]),
        case(&["generate", "--checkpoint", ck], USAGE, &["--prefix"]),
        g(&["--len", "abc"], USAGE, &["abc", "--len"]),
        g(&["--len", "-1"], USAGE, &["-1", "--len"]),
        g(&["--len", "18446744073709551615"], FAILURE, &["18446744073709551615", "--len"]),
        g(&["--len", "1000000000000000"], FAILURE, &["1000000000000000", "--len"]),
        g(&["--temperature", "-1"], USAGE, &["temperature", "-1"]),
        g(&["--temperature", "NaN"], USAGE, &["temperature", "NaN"]),
        g(&["--top-k", "0"], USAGE, &["top_k", "found 0"]),
        g(&["--top-p", "0"], USAGE, &["top_p", "found 0"]),
        g(&["--top-p", "1.5"], USAGE, &["top_p", "1.5"]),
        g(&["--top-k", "many"], USAGE, &["many", "--top-k"]),
        g(&["--seed", "-1"], USAGE, &["-1", "--seed"]),
        g(&["--device", "cuda:x"], USAGE, &["cuda:x"]),
        g(&["--beam", "4"], USAGE, &["--beam"]),
        case(&["generate", "--checkpoint", "/nonexistent/ck", "--prefix", "a"], FAILURE, &["/nonexistent/ck"]),
        case(&["generate", "--checkpoint", &not_ck, "--prefix", "a"], FAILURE, &[&dir, "not a checkpoint"]),
        case(&["generate", "--checkpoint", ck, "--prefix", "###"], FAILURE, &["\"###\"", "no tokens"]),
        case(&["generate", "--checkpoint", &nan, "--prefix", "a"], FAILURE, &["decoder.bias", "NaN"]),
        case(&["generate", "--checkpoint", &unknown, "--prefix", "a"], FAILURE, &["vocab_sise", "vocab_size"]),
        case(&["generate", "--checkpoint", &truncated, "--prefix", "a"], FAILURE, &["model.safetensors"]),
        case(&["generate", "--checkpoint", &vocab, "--prefix", "a"], FAILURE, &["extra", "vocab.json"]),
    ]
}

fn quantize_cases(f: &Files) -> Vec<Case> {
    let ck = f.checkpoint.as_str();
    let (out, existing, nan) = (f.p("quantized"), f.p("a-dir"), f.p("nan-checkpoint"));
    let q = |precision: &str, out: &str, status: i32, needles: &[&str]| {
        case(&["quantize", "--checkpoint", ck, "--precision", precision, "--out", out], status, needles)
    };
    vec![
        case(&["quantize"], USAGE, &["--checkpoint"]),
        case(&["quantize", "--checkpoint", ck, "--out", &out], USAGE, &["--precision"]),
        q("int4", &out, USAGE, &["int4", "--precision"]),
        q("f32", &out, USAGE, &["precision", "bf16 or int8"]),
        q("int8", &existing, FAILURE, &[&existing, "already exists"]),
        case(
            &["quantize", "--checkpoint", "/nonexistent/ck", "--precision", "bf16", "--out", &out],
            FAILURE,
            &["/nonexistent/ck"],
        ),
        case(
            &["quantize", "--checkpoint", &nan, "--precision", "bf16", "--out", &out],
            FAILURE,
            &["decoder.bias", "NaN"],
        ),
        case(&["generate", "--checkpoint", ck, "--prefix", "a", "--precision", "fp8"], USAGE, &["fp8", "--precision"]),
        case(&["eval", "--checkpoint", ck, "--text", &f.text, "--precision", "half"], USAGE, &["half", "--precision"]),
    ]
}

fn eval_cases(f: &Files) -> Vec<Case> {
    let ck = f.checkpoint.as_str();
    let e = |extra: &[&str], status: i32, needles: &[&str]| {
        let mut args = vec!["eval", "--checkpoint", ck];
        args.extend_from_slice(extra);
        case(&args, status, needles)
    };
    let (dir, one, nan, latin1) = (f.p("a-dir"), f.p("one.txt"), f.p("nan-checkpoint"), f.p("latin1.txt"));
    vec![
        e(&[], USAGE, &["--text", "--corpus"]),
        e(&["--text", &f.text, "--corpus", "timemachine"], USAGE, &["--corpus"]),
        e(&["--text", &f.text, "--batch", "0"], USAGE, &["invalid batch", "found 0"]),
        e(&["--text", &f.text, "--steps", "0"], USAGE, &["invalid steps", "found 0"]),
        e(&["--text", &f.text, "--max-tokens", "0"], USAGE, &["max-tokens", "found 0"]),
        e(&["--text", &f.text, "--batch", "abc"], USAGE, &["abc", "--batch"]),
        e(&["--text", &f.text, "--steps", "-4"], USAGE, &["-4", "--steps"]),
        e(&["--text", &f.text, "--max-tokens", "-3"], USAGE, &["-3", "--max-tokens"]),
        e(&["--text", "/nonexistent/t.txt"], FAILURE, &["/nonexistent/t.txt"]),
        e(&["--text", &dir], FAILURE, &[&dir, "is a directory"]),
        e(&["--text", &latin1], FAILURE, &[&latin1, "UTF-8"]),
        e(&["--text", &one], FAILURE, &["evaluation text", "at least 2"]),
        e(&["--corpus", "nosuchcorpus"], FAILURE, &["nosuchcorpus"]),
        case(&["eval", "--checkpoint", &nan, "--text", &f.text], FAILURE, &["decoder.bias", "NaN"]),
        case(&["eval", "--checkpoint", "/nonexistent/ck", "--text", &f.text], FAILURE, &["/nonexistent/ck"]),
    ]
}

fn init_cases(f: &Files) -> Vec<Case> {
    let out = f.p("init.safetensors");
    let under_file = s(&f.path("a-file").join("w.safetensors"));
    let i = |config: &str, status: i32, needles: &[&str]| {
        case(&["init", "--config", config, "--out", &out], status, needles)
    };
    vec![
        case(&["init"], USAGE, &["--config"]),
        case(&["init", "--config", &f.module], USAGE, &["--out"]),
        case(&["init", "--config", &f.module, "--out", &out, "--seed", "x"], USAGE, &["'x'", "--seed"]),
        case(&["init", "--config", &f.module, "--out", &under_file], FAILURE, &["cannot write", "a-file"]),
        i("/nonexistent/module.json", FAILURE, &["/nonexistent/module.json"]),
        i(&f.p("huge.json"), FAILURE, &["hidden_size 1000000000", "memory"]),
        i(&f.p("overflow.json"), FAILURE, &["4611686018427387904"]),
        i(&f.p("unknown-key.json"), FAILURE, &["hiden"]),
        i(&f.p("zero-layers.json"), FAILURE, &["num_layers", "0"]),
        i(&f.p("mamba.json"), FAILURE, &["Mamba"]),
        i(&f.p("broken.json"), FAILURE, &["module.json", "broken.json"]),
        i(&f.p("a-dir"), FAILURE, &["a-dir"]),
    ]
}

fn corpus_cases(f: &Files) -> Vec<Case> {
    let under_file = s(&f.path("a-file").join("x"));
    let c = |extra: &[&str], status: i32, needles: &[&str]| {
        let mut args = vec!["corpus", "--corpus", f.text.as_str()];
        args.extend_from_slice(extra);
        case(&args, status, needles)
    };
    let dir = f.p("a-dir");
    vec![
        case(&["corpus"], USAGE, &["--corpus"]),
        case(&["corpus", "--corpus", "nosuchcorpus"], FAILURE, &["nosuchcorpus"]),
        case(&["corpus", "--corpus", &dir], FAILURE, &[&dir, "is a directory"]),
        c(&["--tokenizer", "bytes"], USAGE, &["bytes"]),
        c(&["--top", "x"], USAGE, &["'x'", "--top"]),
        c(&["--max-tokens", "-1"], USAGE, &["-1", "--max-tokens"]),
        c(&["--clean", "upper"], USAGE, &["upper"]),
        c(&["--save-vocab", &under_file], FAILURE, &["cannot write", "a-file"]),
        c(&["--tokenizer", "bpe", "--tokenizer-json", "/nonexistent/tok.json"], FAILURE, &["/nonexistent/tok.json"]),
    ]
}

fn bench_cases() -> Vec<Case> {
    let b = |extra: &[&str], status: i32, needles: &[&str]| {
        let mut args = vec!["bench", "--iters", "1", "--warmup", "0"];
        args.extend_from_slice(extra);
        case(&args, status, needles)
    };
    vec![
        b(&["--hidden", "1000000000"], FAILURE, &["hidden_size 1000000000", "memory"]),
        b(&["--batch", "1000000000000", "--steps", "100000"], FAILURE, &["1000000000000"]),
        b(&["--hidden", "0"], USAGE, &["invalid hidden", "found 0"]),
        b(&["--batch", "0"], USAGE, &["invalid batch", "found 0"]),
        b(&["--lr", "-1"], USAGE, &["invalid lr", "-1"]),
        b(&["--vocab", "5000000000"], USAGE, &["vocab", "5000000000"]),
        b(&["--threads", "0"], USAGE, &["threads", "found 0"]),
        b(&["--arch", "transformer"], USAGE, &["transformer"]),
        b(&["--device", "tpu"], USAGE, &["tpu"]),
        b(&["--layers", "-2"], USAGE, &["-2", "--layers"]),
        b(&["--lengths", "foo"], USAGE, &["'foo'", "--lengths"]),
        b(&["--lengths", "random", "--precision", "bf16"], USAGE, &["invalid lengths", "random"]),
    ]
}

fn forward_cases(f: &Files) -> Vec<Case> {
    let module = f.module.as_str();
    vec![
        case(&["forward"], USAGE, &["--config"]),
        case(&["forward", "--config", module, "--seed", "x"], USAGE, &["'x'", "--seed"]),
        case(&["forward", "--config", module, "--impl", "x"], USAGE, &["'x'", "--impl"]),
        case(
            &["forward", "--config", "/nonexistent/m.json", "--weights", "w", "--inputs", "i", "--out", "o"],
            FAILURE,
            &["/nonexistent/m.json"],
        ),
    ]
}

#[test]
fn every_bad_invocation_is_a_clear_error_with_the_right_status() {
    let files = Files::new();
    let mut cases = train_cases(&files);
    cases.extend(generate_cases(&files));
    cases.extend(eval_cases(&files));
    cases.extend(quantize_cases(&files));
    cases.extend(init_cases(&files));
    cases.extend(corpus_cases(&files));
    cases.extend(bench_cases());
    cases.extend(forward_cases(&files));
    assert!(cases.len() >= 100, "the catalogue holds {} cases", cases.len());
    let empty_data = files.path("no-corpora");
    std::fs::create_dir_all(&empty_data).unwrap();
    let mut failures = Vec::new();
    for c in &cases {
        let started = std::time::Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_seqlm"))
            .args(&c.args)
            .env("SEQMODELS_DATA", &empty_data)
            .env("SEQMODELS_CACHE", &empty_data)
            .env("SEQMODELS_OFFLINE", "1")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("seqlm runs");
        let stderr = String::from_utf8_lossy(&o.stderr);
        println!("{:6.2}s {:?}", started.elapsed().as_secs_f64(), c.args);
        let missing: Vec<&String> = c.needles.iter().filter(|n| !stderr.contains(n.as_str())).collect();
        if o.status.code() != Some(c.status) || !missing.is_empty() {
            failures.push(format!(
                "seqlm {:?}\n  status {:?} (expected {}), missing {:?}\n  stderr: {}",
                c.args,
                o.status.code(),
                c.status,
                missing,
                stderr.trim()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&files.dir);
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
