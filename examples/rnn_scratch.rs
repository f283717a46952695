//! d2l "Implementation of Recurrent Neural Networks from Scratch": the RNN written with raw
//! candle tensors and `Var`s (one-hot input, tanh hidden layer, dense output), trained with
//! SGD, gradient clipping and sequential partitioning on The Time Machine; H = 512, lr 1,
//! batch 32, 35 steps, 500 epochs.
//!
//! `cargo run --release --example rnn_scratch -- [--quick] [--out DIR]`

mod common;

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::encoding::one_hot;
use seqmodels_workspace::data::{Sampling, SeqDataLoader, Vocab};
use seqmodels_workspace::seqmodels::loss::cross_entropy;
use seqmodels_workspace::train::metrics::{plot_perplexity, EpochMetrics};

/// `get_params`: W_xh, W_hh, b_h, W_hq, b_q.
struct RnnScratch {
    w_xh: Var,
    w_hh: Var,
    b_h: Var,
    w_hq: Var,
    b_q: Var,
    vocab_size: usize,
    num_hiddens: usize,
}

impl RnnScratch {
    /// Weights ~ N(0, 0.01^2), biases zero, as `get_params` does.
    fn new(vocab_size: usize, num_hiddens: usize, dev: &Device) -> Result<Self> {
        let normal = |shape: (usize, usize)| -> Result<Var> {
            Ok(Var::from_tensor(&(Tensor::randn(0f32, 1f32, shape, dev)? * 0.01)?)?)
        };
        Ok(RnnScratch {
            w_xh: normal((vocab_size, num_hiddens))?,
            w_hh: normal((num_hiddens, num_hiddens))?,
            b_h: Var::zeros(num_hiddens, DType::F32, dev)?,
            w_hq: normal((num_hiddens, vocab_size))?,
            b_q: Var::zeros(vocab_size, DType::F32, dev)?,
            vocab_size,
            num_hiddens,
        })
    }

    fn params(&self) -> [&Var; 5] {
        [&self.w_xh, &self.w_hh, &self.b_h, &self.w_hq, &self.b_q]
    }

    /// `init_rnn_state`: H = zeros(batch, num_hiddens).
    fn begin_state(&self, batch: usize) -> Result<Tensor> {
        Ok(Tensor::zeros((batch, self.num_hiddens), DType::F32, &Device::Cpu)?)
    }

    /// `RNNModelScratch.__call__`: X (batch, steps) indices -> one-hot (steps, batch, V), then
    /// `rnn`: H = tanh(X W_xh + H W_hh + b_h), Y = H W_hq + b_q for every step; the outputs are
    /// concatenated time-major into (steps * batch, V).
    fn forward(&self, x: &Tensor, state: &Tensor) -> Result<(Tensor, Tensor)> {
        let inputs = one_hot(x.t()?.contiguous()?, self.vocab_size, 1f32, 0f32)?;
        let mut h = state.clone();
        let mut outputs = Vec::with_capacity(inputs.dim(0)?);
        for t in 0..inputs.dim(0)? {
            let x_t = inputs.get(t)?;
            h = (x_t.matmul(&self.w_xh)? + h.matmul(&self.w_hh)?)?.broadcast_add(&self.b_h)?.tanh()?;
            outputs.push(h.matmul(&self.w_hq)?.broadcast_add(&self.b_q)?);
        }
        Ok((Tensor::cat(&outputs, 0)?, h))
    }
}

/// `predict_ch8`: warm the state up on the prefix, then take the most likely next character.
fn predict(prefix: &str, num_preds: usize, net: &RnnScratch, vocab: &Vocab) -> Result<String> {
    let mut state = net.begin_state(1)?;
    let chars: Vec<String> = prefix.chars().map(|c| c.to_string()).collect();
    let mut outputs = vec![vocab.index(&chars[0])];
    let step = |token: u32, state: &Tensor| net.forward(&Tensor::new(&[[token]], &Device::Cpu)?, state);
    for c in &chars[1..] {
        state = step(*outputs.last().unwrap_or(&0), &state)?.1;
        outputs.push(vocab.index(c));
    }
    for _ in 0..num_preds {
        let (y, s) = step(*outputs.last().unwrap_or(&0), &state)?;
        state = s;
        outputs.push(y.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?[0]);
    }
    Ok(vocab.decode(&outputs).concat())
}

fn main() -> Result<()> {
    let args = common::Args::parse("rnn_scratch")?;
    let dev = Device::Cpu;
    // batch_size, num_steps = 32, 35; train_iter, vocab = load_data_time_machine(...)
    let (batch_size, num_steps) = (32, 35);
    let corpus = common::time_machine_chars(if args.quick { 2_000 } else { 10_000 })?;
    let vocab = &corpus.vocab;

    // F.one_hot(torch.tensor([0, 2]), len(vocab)); X = arange(10).reshape((2, 5)); X.T one-hot
    let x = Tensor::new(&[[0u32, 1, 2, 3, 4], [5, 6, 7, 8, 9]], &dev)?;
    println!("one_hot(X.T).shape = {:?}", one_hot(x.t()?.contiguous()?, vocab.len(), 1f32, 0f32)?.dims());

    // num_hiddens = 512; net = RNNModelScratch(len(vocab), num_hiddens, ...)
    let net = RnnScratch::new(vocab.len(), 512, &dev)?;
    let state = net.begin_state(x.dim(0)?)?;
    let (y, new_state) = net.forward(&x, &state)?;
    println!("Y.shape = {:?}, len(new_state) = 1, new_state[0].shape = {:?}", y.dims(), new_state.dims());
    // predict_ch8('time traveller ', 10, net, vocab) before training: random characters
    println!("before training: {}", predict("time traveller ", 10, &net, vocab)?);

    // num_epochs, lr = 500, 1; train_ch8(net, train_iter, vocab, lr, num_epochs, device)
    let (epochs, lr, theta) = (if args.quick { 2 } else { 500 }, 1.0, 1.0);
    let mut loader = SeqDataLoader::new(corpus.ids.clone(), batch_size, num_steps, Sampling::Sequential, 0)?;
    let mut history = Vec::new();
    let started = Instant::now();
    for epoch in 1..=epochs {
        // train_epoch_ch8: the state is carried across minibatches and detached from the graph
        let t0 = Instant::now();
        let (mut loss_sum, mut tokens) = (0f64, 0usize);
        let mut state: Option<Tensor> = None;
        for batch in loader.epoch() {
            let x = Tensor::from_vec(batch.inputs.clone(), (batch.batch_size, batch.num_steps), &dev)?;
            let y = Tensor::from_vec(batch.targets.clone(), (batch.batch_size, batch.num_steps), &dev)?;
            let h = match state.take() {
                Some(h) => h.detach(),
                None => net.begin_state(batch.batch_size)?,
            };
            let (y_hat, h) = net.forward(&x, &h)?;
            state = Some(h);
            // y = Y.T.reshape(-1): time-major targets, as the outputs
            let targets = y.t()?.flatten_all()?;
            let loss = cross_entropy(&y_hat, &targets)?;
            let mut grads = loss.backward()?;
            // grad_clipping(net, 1): scale all gradients so that their global L2 norm <= theta
            let mut sq = 0f64;
            for p in net.params() {
                if let Some(g) = grads.get(p.as_tensor()) {
                    sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                }
            }
            let norm = sq.sqrt();
            if norm > theta {
                for p in net.params() {
                    if let Some(g) = grads.remove(p.as_tensor()) {
                        grads.insert(p.as_tensor(), (g * (theta / norm))?);
                    }
                }
            }
            // updater = d2l.sgd(net.params, lr, batch_size=1): the loss is already a mean
            for p in net.params() {
                if let Some(g) = grads.get(p.as_tensor()) {
                    p.set(&(p.as_tensor() - (g * lr)?)?)?;
                }
            }
            let n = batch.batch_size * batch.num_steps;
            loss_sum += loss.to_scalar::<f32>()? as f64 * n as f64;
            tokens += n;
        }
        let seconds = t0.elapsed().as_secs_f64();
        let mean = loss_sum / tokens as f64;
        if epoch == 1 || epoch % (epochs / 10).max(1) == 0 {
            println!(
                "epoch {epoch:>4}  perplexity {:>8.3}  {}",
                mean.exp(),
                predict("time traveller", 50, &net, vocab)?
            );
        }
        history.push(EpochMetrics {
            epoch,
            step: 0,
            lr,
            train_loss: mean,
            train_ppl: mean.exp(),
            val_loss: None,
            val_ppl: None,
            tokens,
            seconds,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
            sample: None,
        });
    }
    let plot = args.out.join("perplexity.png");
    plot_perplexity(&plot, "RNN from scratch (H=512) on timemachine", &history)?;
    let last = history.last().ok_or_else(|| anyhow::anyhow!("no epoch trained"))?;
    let tokens: usize = history.iter().map(|m| m.tokens).sum();
    let seconds: f64 = history.iter().map(|m| m.seconds).sum();
    println!(
        "perplexity {:.1}, {:.0} tokens/sec on cpu ({:.1} s)",
        last.train_ppl,
        tokens as f64 / seconds.max(1e-9),
        started.elapsed().as_secs_f64()
    );
    println!("{}", predict("time traveller", 50, &net, vocab)?);
    println!("{}", predict("traveller", 50, &net, vocab)?);
    println!("wrote {}", plot.display());
    Ok(())
}
