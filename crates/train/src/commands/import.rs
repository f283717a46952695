//! `seqlm import`: read an ONNX model of a recurrent module or language model (as
//! `torch.onnx.export` writes them) into `module.json` and a state dict, or into a checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use seqmodels::{CellKind, RnnConfig};

use crate::checkpoint::{write_atomic, write_tensors, CheckpointConfig};
use crate::onnx::{import, read_model, Imported};
use crate::tokenizer::{TextTokenizer, TokenizerKind, TokenizerSpec};
use seqmodels_data::Cleaning;

/// Arguments of `seqlm import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The ONNX model: a lone RNN/LSTM/GRU, or embedding (or one-hot) -> RNN/LSTM/GRU -> linear.
    #[arg(long, value_name = "FILE")]
    pub onnx: PathBuf,
    /// Language models: the vocabulary (vocab.json, or tokenizer.json with --tokenizer bpe);
    /// token i must be the model's index i.
    #[arg(long, value_name = "FILE")]
    pub vocab: Option<PathBuf>,
    /// Language models: the kind of tokens [default: char].
    #[arg(long, value_enum, requires = "vocab")]
    pub tokenizer: Option<TokenizerKind>,
    /// Language models: the cleaning applied to texts and prefixes [default: d2l].
    #[arg(long, value_enum, requires = "vocab")]
    pub clean: Option<Cleaning>,
    /// Language models with word tokens: the end-of-sentence token appended after every line.
    #[arg(long, value_name = "TOKEN", requires = "vocab")]
    pub eos: Option<String>,
    /// Output directory: `module.json` and `model.safetensors` for a module, a checkpoint
    /// (`config.json`, `model.safetensors`, the vocabulary) for a language model.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `seqlm import`.
pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let model = read_model(&args.onnx)?;
    let imported = import(&model).with_context(|| format!("importing {}", args.onnx.display()))?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    match (imported, &args.vocab) {
        (Imported::Module(m), None) => {
            let json = serde_json::to_string_pretty(&module_json(&m.config))?;
            write_atomic(&args.out.join("module.json"), json.as_bytes())?;
            write_tensors(&args.out.join("model.safetensors"), &m.parameters)?;
            println!(
                "wrote {} ({}) and {} ({} tensors)",
                args.out.join("module.json").display(),
                describe(&m.config),
                args.out.join("model.safetensors").display(),
                m.parameters.len()
            );
        }
        (Imported::Module(m), Some(_)) => {
            bail!(
                "{} is a lone {} without embedding and decoder: drop --vocab",
                args.onnx.display(),
                describe(&m.config)
            )
        }
        (Imported::LanguageModel(_), None) => {
            bail!("{} is a language model: give its vocabulary with --vocab", args.onnx.display())
        }
        (Imported::LanguageModel(lm), Some(vocab)) => {
            let kind = args.tokenizer.unwrap_or(TokenizerKind::Char);
            let cleaning = args.clean.unwrap_or(Cleaning::D2l);
            let spec = TokenizerSpec { kind, cleaning, eos: args.eos.clone() };
            let tokenizer = TextTokenizer::load(spec.clone(), vocab)
                .with_context(|| format!("reading the vocabulary {}", vocab.display()))?;
            if tokenizer.vocab_size() != lm.config.vocab_size {
                bail!(
                    "{} has {} tokens; expected {}, the model's vocabulary size",
                    vocab.display(),
                    tokenizer.vocab_size(),
                    lm.config.vocab_size
                );
            }
            let config = CheckpointConfig::new(lm.config.clone(), spec);
            let json = serde_json::to_string_pretty(&config)?;
            write_checkpoint(&args.out, json.as_bytes(), &lm.parameters, &tokenizer)?;
            println!(
                "wrote checkpoint {} ({} tokens, {})",
                args.out.display(),
                lm.config.vocab_size,
                describe(&lm.config.rnn)
            );
        }
    }
    Ok(())
}

fn write_checkpoint(
    dir: &Path,
    config_json: &[u8],
    parameters: &[(String, candle_core::Tensor)],
    tokenizer: &TextTokenizer,
) -> anyhow::Result<()> {
    write_tensors(&dir.join("model.safetensors"), parameters)?;
    tokenizer.save(&dir.join(tokenizer.file_name()))?;
    // config.json last: a directory is a checkpoint only once it is there.
    write_atomic(&dir.join("config.json"), config_json)?;
    Ok(())
}

/// `module.json`: PyTorch's constructor arguments, each key that applies to the type, so that
/// `getattr(torch.nn, j["type"])(**{k: v for k, v in j.items() if k != "type"})` rebuilds it.
pub fn module_json(cfg: &RnnConfig) -> serde_json::Value {
    let mut j = serde_json::json!({
        "type": cfg.kind.layer_name(),
        "input_size": cfg.input_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "bias": cfg.bias,
        "batch_first": cfg.batch_first,
        "dropout": cfg.dropout,
        "bidirectional": cfg.bidirectional,
    });
    match cfg.kind {
        CellKind::RnnTanh => j["nonlinearity"] = "tanh".into(),
        CellKind::RnnRelu => j["nonlinearity"] = "relu".into(),
        CellKind::Lstm => j["proj_size"] = cfg.proj_size.into(),
        CellKind::Gru => {}
    }
    j
}

fn describe(cfg: &RnnConfig) -> String {
    format!(
        "{}: {} layer(s) of {} units{}{}",
        cfg.kind.layer_name(),
        cfg.num_layers,
        cfg.hidden_size,
        if cfg.bidirectional { ", bidirectional" } else { "" },
        if cfg.batch_first { ", batch_first" } else { "" }
    )
}
