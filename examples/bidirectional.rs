//! d2l "Bidirectional Recurrent Neural Networks": "a wrong application". A two-layer
//! bidirectional LSTM (256 hidden units per direction) trained as a language model on The Time
//! Machine reaches a low perplexity, yet generates nonsense: during training the backward
//! direction reads the characters that follow the one being predicted, so the model learns to
//! copy from the future; when generating, there is no future to read.
//!
//! `cargo run --release --example bidirectional -- [--quick] [--out DIR]`

mod common;

use anyhow::Result;
use seqmodels_workspace::seqmodels::RnnConfig;
use seqmodels_workspace::train::model::LmConfig;
use seqmodels_workspace::train::trainer::TrainConfig;

fn main() -> Result<()> {
    let args = common::Args::parse("bidirectional")?;
    // batch_size, num_steps = 32, 35; train_iter, vocab = load_data_time_machine(...)
    let corpus = common::time_machine_chars(if args.quick { 2_000 } else { 10_000 })?;
    // lstm_layer = nn.LSTM(num_inputs, num_hiddens, num_layers, bidirectional=True)
    let vocab_size = corpus.vocab.len();
    let rnn = RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::lstm(vocab_size, 256) };
    let model = LmConfig { rnn, ..LmConfig::d2l(vocab_size) };
    // num_epochs, lr = 500, 1; train_ch8(model, train_iter, vocab, lr, num_epochs, device)
    let cfg = TrainConfig { epochs: if args.quick { 2 } else { 500 }, lr: 1.0, ..TrainConfig::d2l() };
    let (_, report) = common::train_lm(
        "bidirectional 2-layer LSTM 256 on timemachine",
        model,
        cfg,
        &corpus,
        &args.out.join("perplexity.png"),
    )?;
    // The book's conclusion: a low perplexity, but the continuation above is nonsense.
    println!(
        "\nWhy the text is nonsense despite perplexity {:.2}: when it predicts character t, the \
         backward LSTM has read characters t+1 .. end of the minibatch, which include the answer. \
         Generation runs one step at a time with no future input, so the backward half sees only \
         the current character and the model's state is unlike anything seen in training.",
        report.perplexity
    );
    Ok(())
}
