//! `seqlm`: the seqmodels command-line program.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use seqmodels_train::commands::{self, GivenOptions};

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
    /// Write a checkpoint with bf16 or int8 weights for generate and eval.
    Quantize(commands::quantize::QuantizeArgs),
    /// Write a checkpoint's language model, or a module and its weights, as an ONNX model.
    Export(commands::export::ExportArgs),
    /// Read an ONNX model (e.g. from torch.onnx.export) into module.json and weights, or a checkpoint.
    Import(commands::import::ImportArgs),
}

/// Exit status 2 for usage errors (clap's own and option values out of range), 1 for every other
/// error (a panic included: it is a bug, reported as such), 130 after Ctrl-C.
fn main() -> ExitCode {
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
    let matches = command_line().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let given = matches.subcommand().map(|(_, sub)| GivenOptions::from_matches(sub)).unwrap_or_default();
    match std::panic::catch_unwind(AssertUnwindSafe(|| dispatch(cli.command, given))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("Error: {e:?}");
            ExitCode::from(commands::exit_status(&e))
        }
        Err(_) => {
            eprintln!("Error: internal error: seqlm panicked (message above); please report it");
            ExitCode::FAILURE
        }
    }
}

/// The command line, where every option that takes a value also takes a negative number
/// (`--dropout -0.5` is that value, out of range, not an unknown option `-0`).
fn command_line() -> clap::Command {
    Cli::command().mut_subcommands(|sub| {
        sub.mut_args(|arg| if arg.get_action().takes_values() { arg.allow_negative_numbers(true) } else { arg })
    })
}

fn dispatch(command: Command, given: GivenOptions) -> anyhow::Result<()> {
    match command {
        Command::Forward(args) => commands::forward::run(&args),
        Command::Init(args) => commands::init::run(&args),
        Command::Corpus(args) => commands::corpus::run(&args),
        Command::Train(mut args) => {
            args.given = given;
            commands::train::run(&args)
        }
        Command::Generate(args) => commands::generate::run(&args),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Quantize(args) => commands::quantize::run(&args),
        Command::Export(args) => commands::export::run(&args),
        Command::Import(args) => commands::import::run(&args),
    }
}
