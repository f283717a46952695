//! d2l "Deep Recurrent Neural Networks": two stacked LSTM layers with 256 hidden units each on
//! one-hot characters of The Time Machine, SGD lr 2, gradient clipping at 1, 500 epochs.
//!
//! `cargo run --release --example deep_rnn -- [--quick] [--out DIR]`

mod common;

use anyhow::Result;
use seqmodels_workspace::seqmodels::RnnConfig;
use seqmodels_workspace::train::model::LmConfig;
use seqmodels_workspace::train::trainer::TrainConfig;

fn main() -> Result<()> {
    let args = common::Args::parse("deep_rnn")?;
    // batch_size, num_steps = 32, 35; train_iter, vocab = load_data_time_machine(...)
    let corpus = common::time_machine_chars(if args.quick { 2_000 } else { 10_000 })?;
    // vocab_size, num_hiddens, num_layers = len(vocab), 256, 2
    // lstm_layer = nn.LSTM(num_inputs, num_hiddens, num_layers)
    let vocab_size = corpus.vocab.len();
    let rnn = RnnConfig { num_layers: 2, ..RnnConfig::lstm(vocab_size, 256) };
    let model = LmConfig { rnn, ..LmConfig::d2l(vocab_size) };
    // num_epochs, lr = 500, 2; train_ch8(model, train_iter, vocab, lr * 1.0, num_epochs, device)
    let cfg = TrainConfig { epochs: if args.quick { 2 } else { 500 }, lr: 2.0, ..TrainConfig::d2l() };
    common::train_lm("2-layer LSTM 256 on timemachine", model, cfg, &corpus, &args.out.join("perplexity.png"))?;
    Ok(())
}
