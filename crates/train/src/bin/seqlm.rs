//! `seqlm`: the seqmodels command-line program.

use clap::{Parser, Subcommand};
use seqmodels_train::commands;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Forward(args) => commands::forward::run(&args),
        Command::Init(args) => commands::init::run(&args),
        Command::Corpus(args) => commands::corpus::run(&args),
    }
}
