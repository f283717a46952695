//! d2l "Concise Implementation of Recurrent Neural Networks": `nn.RNN(len(vocab), 256)` plus a
//! dense output layer, trained on one-hot characters of The Time Machine with SGD lr 1,
//! gradient clipping at 1, 500 epochs.
//!
//! `cargo run --release --example rnn_concise -- [--quick] [--out DIR]`

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use seqmodels_workspace::seqmodels::{RnnConfig, RNN};
use seqmodels_workspace::train::model::{init_parameters, InitScheme, LanguageModel, LmConfig};
use seqmodels_workspace::train::trainer::TrainConfig;

fn main() -> Result<()> {
    let args = common::Args::parse("rnn_concise")?;
    // batch_size, num_steps = 32, 35; train_iter, vocab = load_data_time_machine(...)
    let (batch_size, num_steps) = (32, 35);
    let corpus = common::time_machine_chars(if args.quick { 2_000 } else { 10_000 })?;
    let vocab_size = corpus.vocab.len();

    // num_hiddens = 256; rnn_layer = nn.RNN(len(vocab), num_hiddens)
    let num_hiddens = 256;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let rnn_layer = RNN::new(RnnConfig::rnn(vocab_size, num_hiddens), vb)?;
    // state = torch.zeros((1, batch_size, num_hiddens)); state.shape
    let state = Tensor::zeros((1, batch_size, num_hiddens), DType::F32, &Device::Cpu)?;
    println!("state.shape = {:?}", state.dims());
    // X = torch.rand(size=(num_steps, batch_size, len(vocab))); Y, state_new = rnn_layer(X, state)
    let x = Tensor::rand(0f32, 1f32, (num_steps, batch_size, vocab_size), &Device::Cpu)?;
    let (y, state_new) = rnn_layer.forward(&x, Some(&state))?;
    println!("Y.shape = {:?}, state_new.shape = {:?}", y.dims(), state_new.dims());

    // net = RNNModel(rnn_layer, vocab_size=len(vocab)); predict_ch8 before training: random text
    let model = LmConfig { rnn: RnnConfig::rnn(vocab_size, num_hiddens), ..LmConfig::d2l(vocab_size) };
    let params = init_parameters(&model, InitScheme::Pytorch, 1, DType::F32, &Device::Cpu)?;
    let (untrained, _) = LanguageModel::from_parameters(model.clone(), params.into_iter().collect())?;
    println!("before training: {}", common::continuation(&untrained, &corpus.vocab, "time traveller", 10)?);
    // num_epochs, lr = 500, 1; train_ch8(net, train_iter, vocab, lr, num_epochs, device)
    let cfg = TrainConfig { epochs: if args.quick { 2 } else { 500 }, lr: 1.0, ..TrainConfig::d2l() };
    common::train_lm("RNN 256 on timemachine", model, cfg, &corpus, &args.out.join("perplexity.png"))?;
    Ok(())
}
