//! d2l "Long Short-Term Memory (LSTM)", concise implementation: an LSTM with 256 hidden units
//! on one-hot characters of The Time Machine, SGD lr 1, gradient clipping at 1, 500 epochs.
//!
//! `cargo run --release --example lstm -- [--quick] [--out DIR]`

mod common;

use anyhow::Result;
use seqmodels_workspace::seqmodels::RnnConfig;
use seqmodels_workspace::train::model::LmConfig;
use seqmodels_workspace::train::trainer::TrainConfig;

fn main() -> Result<()> {
    let args = common::Args::parse("lstm")?;
    // batch_size, num_steps = 32, 35; train_iter, vocab = load_data_time_machine(...)
    let corpus = common::time_machine_chars(if args.quick { 2_000 } else { 10_000 })?;
    // num_hiddens = 256; lstm_layer = nn.LSTM(num_inputs, num_hiddens)
    let vocab_size = corpus.vocab.len();
    let model = LmConfig { rnn: RnnConfig::lstm(vocab_size, 256), ..LmConfig::d2l(vocab_size) };
    // num_epochs, lr = 500, 1; train_ch8(model, train_iter, vocab, lr, num_epochs, device)
    let cfg = TrainConfig { epochs: if args.quick { 2 } else { 500 }, lr: 1.0, ..TrainConfig::d2l() };
    common::train_lm("LSTM 256 on timemachine", model, cfg, &corpus, &args.out.join("perplexity.png"))?;
    Ok(())
}
