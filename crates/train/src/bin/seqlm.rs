//! `seqlm`: the seqmodels command-line program.

use clap::{Parser, Subcommand};
use seqmodels_train::commands;

// Training allocates the same large buffers every iteration; glibc's malloc returns them to the
// system and takes fresh zeroed pages each time (page faults were a quarter of the profile).
// mimalloc keeps and reuses them, once told not to purge freed memory (see `main`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (the same in mimalloc 2 and 3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[derive(Parser)]
#[command(name = "seqlm", version, about = "Recurrent sequence models on candle: parity checks, corpora, training")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a PyTorch-described module on saved inputs and write outputs and gradients.
    Forward(commands::forward::ForwardArgs),
    /// Write PyTorch-default-initialised weights for a module described by module.json.
    Init(commands::init::InitArgs),
    /// Corpus statistics: token counts, vocabulary, frequencies, Zipf fit.
    Corpus(commands::corpus::CorpusArgs),
    /// Train a recurrent language model (defaults: d2l's concise LSTM on the Time Machine).
    Train(Box<commands::train::TrainArgs>),
    /// Continue a prefix with a trained model (greedy by default, as d2l).
    Generate(commands::generate::GenerateArgs),
    /// Perplexity of a trained model on a text.
    Eval(commands::eval::EvalArgs),
    /// Language-model training and inference throughput (tokens/s), as scripts/bench_torch.py.
    Bench(commands::bench::BenchArgs),
    /// Write a checkpoint's language model, or a module and its weights, as an ONNX model.
    Export(commands::export::ExportArgs),
    /// Read an ONNX model (e.g. from torch.onnx.export) into module.json and weights, or a checkpoint.
    Import(commands::import::ImportArgs),
}

fn main() -> anyhow::Result<()> {
    // candle's pool worker spins 25,000 rounds after each parallel op before parking. Our ops
    // run all their work on that pool, but candle's own ops between them (embedding, matmul)
    // use rayon's threads, which a spinning worker slows. Measured (BENCHMARKS.md): 2,000 and
    // 5,000 cost config (a) 5-10% against 10,000; 20,000 and more cost config (b)'s inference
    // 20%. Set before any candle work; the user's value wins.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "10000");
    }
    // Keep freed memory instead of returning it to the system after 10 ms: an iteration frees
    // and reallocates the same large buffers (config (b): 4,273 page faults -> about 700). The
    // user's MIMALLOC_PURGE_DELAY wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc documents it as settable at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    match Cli::parse().command {
        Command::Forward(args) => commands::forward::run(&args),
        Command::Init(args) => commands::init::run(&args),
        Command::Corpus(args) => commands::corpus::run(&args),
        Command::Train(args) => commands::train::run(&args),
        Command::Generate(args) => commands::generate::run(&args),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Export(args) => commands::export::run(&args),
        Command::Import(args) => commands::import::run(&args),
    }
}
