//! Fuzzing on stable Rust: every loader of user files is fed arbitrary and mutated inputs and
//! must return (an error or a value), never panic.
//!
//! Inputs come from a seeded generator: valid seed files mutated byte by byte (bit flips,
//! insertions, deletions, duplications, truncations, interesting numbers and tokens), JSON seeds
//! mutated as trees (a value replaced by one of another type or an extreme number, a key
//! removed or an unknown one added), and random bytes. `SEQMODELS_FUZZ_CASES` sets the inputs
//! per loader (default 10,000, what CI runs); `SEQMODELS_FUZZ_SEED` changes the generator's
//! seed. A longer run:
//!
//! ```text
//! SEQMODELS_FUZZ_CASES=1000000 SEQMODELS_FUZZ_SEED=7 cargo test --release -p seqmodels-train --test fuzz_loaders
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde_json::Value;

use seqmodels_data::{BpeOptions, BpeTokenizer, Vocab};
use seqmodels_train::checkpoint;
use seqmodels_train::metrics::{self, EpochMetrics};
use seqmodels_train::model::LanguageModel;
use seqmodels_train::tokenizer::{TextTokenizer, TokenizerKind, TokenizerSpec};
use seqmodels_train::trainer::{DataFingerprint, Progress, TrainConfig, TrainerState};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cases() -> usize {
    std::env::var("SEQMODELS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn base_seed() -> u64 {
    std::env::var("SEQMODELS_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// xorshift64*: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that often break parsers and size arithmetic.
const TOKENS: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "1e400",
    "NaN",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "4294967296",
    "1000000000",
    "0.5",
    "null",
    "true",
    "[]",
    "{}",
    "\"\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    ",",
    ":",
    "\"",
    "\n",
    "\u{feff}",
    "é",
    "\u{10ffff}",
    "<unk>",
];

/// Values that replace a JSON node.
fn extreme_value(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(-1),
        3 => Value::from(0),
        4 => Value::from(u64::MAX),
        5 => Value::from(i64::MIN),
        6 => Value::from(1e308),
        7 => Value::from(-0.5),
        8 => Value::from(1_000_000_000u64),
        9 => Value::from(""),
        10 => Value::from("\u{0}x"),
        11 => Value::Array(vec![Value::from(1), Value::Null]),
        12 => Value::Object(Default::default()),
        _ => Value::from(rng.next() as usize % 100_000),
    }
}

/// Mutates a random node of `v` (a value replaced, a key removed or added).
fn mutate_tree(v: &mut Value, rng: &mut Rng, depth: usize) {
    let descend = depth < 6 && rng.below(3) != 0;
    match v {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.below(keys.len())].clone();
            match rng.below(6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(format!("unknown_{}", rng.below(10)), extreme_value(rng));
                }
                _ if descend => mutate_tree(map.get_mut(&key).expect("key exists"), rng, depth + 1),
                _ => {
                    map.insert(key, extreme_value(rng));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            match rng.below(5) {
                0 => {
                    items.remove(i);
                }
                1 => items.push(extreme_value(rng)),
                _ if descend => mutate_tree(&mut items[i], rng, depth + 1),
                _ => items[i] = extreme_value(rng),
            }
        }
        other => *other = extreme_value(rng),
    }
}

/// One byte-level mutation of `v`.
fn mutate_bytes(v: &mut Vec<u8>, rng: &mut Rng) {
    let len = v.len();
    let at = rng.below(len + 1);
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            v[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            v[i] = rng.next() as u8;
        }
        2 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            v.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let end = (at + 1 + rng.below(16)).min(len);
            v.drain(at.min(len - 1)..end);
        }
        4 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(64)).min(len);
            let copy = v[start..end].to_vec();
            v.splice(at..at, copy);
        }
        5 => v.truncate(at),
        _ => {
            let token = TOKENS[rng.below(TOKENS.len())].as_bytes().to_vec();
            v.splice(at..at, token);
        }
    }
}

/// The `i`-th input for a loader with these seeds.
fn input(seeds: &[Vec<u8>], json: bool, rng: &mut Rng) -> Vec<u8> {
    let seed = &seeds[rng.below(seeds.len())];
    match rng.below(10) {
        0 => (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
        1..=4 if json => {
            let mut tree: Value = serde_json::from_slice(seed).expect("JSON seeds parse");
            for _ in 0..1 + rng.below(3) {
                mutate_tree(&mut tree, rng, 0);
            }
            serde_json::to_vec(&tree).expect("a JSON value serializes")
        }
        _ => {
            let mut v = seed.clone();
            for _ in 0..1 + rng.below(4) {
                mutate_bytes(&mut v, rng);
            }
            v
        }
    }
}

/// Feeds `cases()` inputs to `load`; returns how many panicked, with the first few inputs.
fn fuzz(name: &str, seeds: &[Vec<u8>], json: bool, mut load: impl FnMut(&[u8])) -> (usize, Vec<String>) {
    let mut rng = Rng::new(base_seed() ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)));
    let started = std::time::Instant::now();
    let mut panics = 0;
    let mut examples = Vec::new();
    for seed in seeds {
        if catch_unwind(AssertUnwindSafe(|| load(seed))).is_err() {
            panics += 1;
            examples.push(format!("{name}: the seed itself: {:?}", String::from_utf8_lossy(seed)));
        }
    }
    for _ in 0..cases() {
        let bytes = input(seeds, json, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| load(&bytes))).is_err() {
            panics += 1;
            if examples.len() < 5 {
                let shown: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
                examples.push(format!("{name}: {shown:?}"));
            }
        }
    }
    println!("{name}: {} inputs in {:.1}s, {panics} panics", cases(), started.elapsed().as_secs_f64());
    (panics, examples)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

fn lm_fixtures() -> Vec<PathBuf> {
    ["rust_lstm_char", "torch_gru_word_tied", "torch_lstm_proj_char", "torch_rnn_relu_bidir"]
        .iter()
        .map(|n| repo().join("tests/fixtures/lm").join(n))
        .collect()
}

fn trainer_json_seed() -> Vec<u8> {
    let config = TrainConfig::d2l();
    let state = TrainerState {
        scheduler: seqmodels_train::schedule::LrScheduler::new(config.schedule, config.lr).unwrap(),
        config,
        progress: Progress { epoch: 3, batch: 2, step: 40, loss_sum: 12.5, tokens: 700, seconds: 0.25 },
        optimizer_step: 40,
        carry: true,
        data: DataFingerprint::of(&[1, 2, 3, 4], Some(&[2, 3])),
        extra: serde_json::json!({"corpus": "timemachine", "valid": null, "test": null, "val_fraction": 0.1,
                                  "max_tokens": 10000, "bpe_vocab": 1000}),
    };
    serde_json::to_vec_pretty(&state).unwrap()
}

fn metrics_seed() -> Vec<u8> {
    let mut out = Vec::new();
    for epoch in 1..=3 {
        let m = EpochMetrics {
            epoch,
            step: 10 * epoch as u64,
            lr: 1.0,
            train_loss: 2.5 / epoch as f64,
            train_ppl: (2.5 / epoch as f64).exp(),
            val_loss: Some(2.0),
            val_ppl: Some(2f64.exp()),
            tokens: 350,
            seconds: 0.1,
            tokens_per_s: 3500.0,
            sample: (epoch == 2).then(|| "time traveller".to_string()),
        };
        out.extend(serde_json::to_vec(&m).unwrap());
        out.push(b'\n');
    }
    out
}

#[test]
fn no_loader_of_user_files_panics_on_arbitrary_input() {
    let dir = std::env::temp_dir().join(format!("seqlm-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = dir.join("input");
    let corpus_text = read(repo().join("tests/fixtures/lm/text.txt"));
    let mut results = Vec::new();

    // Weights: a module's state dict (strict keys and shapes), and a language model's.
    let module_dir = repo().join("tests/fixtures/modules/lstm_l1_h0");
    let spec = seqmodels::ModuleSpec::from_file(module_dir.join("module.json")).unwrap();
    let shapes = spec.parameter_shapes();
    let lm_config = checkpoint::read_config(&lm_fixtures()[0]).unwrap().model;
    let weight_seeds =
        vec![read(module_dir.join("weights.safetensors")), read(lm_fixtures()[0].join("model.safetensors"))];
    // In memory (what `read_safetensors` does after reading the file), then strictly matched
    // against a module's parameters and a language model's; the seeds also go through the files.
    let lm_shapes = lm_config.parameter_shapes();
    for seed in &weight_seeds {
        std::fs::write(&scratch, seed).unwrap();
        let options = seqmodels::LoadOptions::default();
        let _ = seqmodels::load_state_dict(&scratch, &shapes, &options, DType::F32, &Device::Cpu);
        let _ = LanguageModel::load(lm_config.clone(), &scratch, DType::F32, &Device::Cpu);
    }
    results.push(fuzz("weights safetensors", &weight_seeds, false, |bytes| {
        let options = seqmodels::LoadOptions::default();
        for expected in [&shapes, &lm_shapes] {
            if let Ok(tensors) = seqmodels::state_dict::parse_safetensors(bytes, &scratch) {
                let _ = seqmodels::state_dict::select_parameters(tensors, expected, &options, DType::F32, &Device::Cpu);
            }
        }
    }));

    let module_seeds: Vec<Vec<u8>> = ["lstm_l1_h0", "gru_l3_bidir_h0", "lstm_l2_bidir_nobias", "grucell_hx"]
        .iter()
        .map(|c| read(repo().join("tests/fixtures/modules").join(c).join("module.json")))
        .collect();
    results.push(fuzz("module.json", &module_seeds, true, |bytes| {
        let _ = seqmodels::ModuleSpec::from_json(&text(bytes));
    }));

    let config_seeds: Vec<Vec<u8>> = lm_fixtures().iter().map(|d| read(d.join("config.json"))).collect();
    let config_path = Path::new("config.json");
    results.push(fuzz("checkpoint config.json", &config_seeds, true, |bytes| {
        let _ = checkpoint::parse_config(&text(bytes), config_path);
    }));

    let trainer_path = Path::new("trainer.json");
    results.push(fuzz("trainer.json", &[trainer_json_seed()], true, |bytes| {
        if let Ok(state) = TrainerState::from_json(&text(bytes), trainer_path) {
            let _ = serde_json::from_value::<seqmodels_train::commands::train::DataSpec>(state.extra);
        }
    }));

    let vocab_seeds: Vec<Vec<u8>> = lm_fixtures().iter().map(|d| read(d.join("vocab.json"))).collect();
    results.push(fuzz("vocab.json", &vocab_seeds, true, |bytes| {
        if let Ok(vocab) = Vocab::from_json(&text(bytes)) {
            let spec = TokenizerSpec { kind: TokenizerKind::Char, cleaning: seqmodels_data::Cleaning::None, eos: None };
            if let Ok(tok) = TextTokenizer::with_vocab(spec, vocab) {
                let ids = tok.encode("time traveller").unwrap_or_default();
                let _ = tok.decode(&ids);
                let _ = tok.decode(&[0, 1, u32::MAX]);
            }
        }
    }));

    let corpus_str = text(&corpus_text);
    let bpe =
        BpeTokenizer::train(&[corpus_str.as_str()], &BpeOptions { vocab_size: 60, ..Default::default() }).unwrap();
    let bpe_seed = bpe.to_json(false).unwrap().into_bytes();
    results.push(fuzz("tokenizer.json", &[bpe_seed], true, |bytes| {
        if let Ok(t) = BpeTokenizer::from_json(&text(bytes)) {
            let ids = t.encode("the time traveller").unwrap_or_default();
            let _ = t.decode(&ids);
            let _ = t.decode(&[0, 1, u32::MAX]);
            let _ = t.vocab();
        }
    }));

    let metrics_path = dir.join("metrics.jsonl");
    results.push(fuzz("metrics.jsonl", &[metrics_seed()], false, |bytes| {
        let _ = metrics::parse_log(&metrics_path, bytes);
    }));

    // Corpora: read as a user's file, cleaned and tokenized as characters and as words.
    let corpus_seeds = vec![corpus_text[..corpus_text.len().min(400)].to_vec(), "Ünïcödé text\r\nline two\n".into()];
    let mut which = 0usize;
    results.push(fuzz("corpus bytes", &corpus_seeds, false, |bytes| {
        if let Ok(t) = seqmodels_data::text_from_bytes(bytes.to_vec(), &scratch) {
            // Alternately cleaned (d2l) into characters and kept as is into words.
            which += 1;
            let (kind, cleaning) = match which % 2 {
                0 => (TokenizerKind::Char, seqmodels_data::Cleaning::D2l),
                _ => (TokenizerKind::Word, seqmodels_data::Cleaning::None),
            };
            let spec = TokenizerSpec { kind, cleaning, eos: (kind == TokenizerKind::Word).then(|| "<eos>".into()) };
            if let Ok((tok, ids)) = TextTokenizer::fit(&t, &spec, 100) {
                let _ = tok.decode(&ids);
            }
        }
    }));

    let _ = std::fs::remove_dir_all(&dir);
    let panics: usize = results.iter().map(|r| r.0).sum();
    let examples: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    println!("{} loaders x {} inputs: {panics} panics", results.len(), cases());
    assert_eq!(panics, 0, "loaders panicked on:\n{examples:#?}");
}
