//! Text generation: warm the state up on a prefix, then decode one token at a time, greedily
//! (as d2l's `predict_ch8`) or by sampling with temperature, top-k and top-p (nucleus).

use candle_core::{DType, Tensor, D};
use rand::{rngs::StdRng, Rng, SeedableRng};
use seqmodels::StackedState;

use crate::error::{Error, Result};
use crate::predictor::Predictor;

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingOptions {
    /// Softmax temperature; `None` (and no top-k/top-p) means greedy decoding. 0 is greedy too.
    pub temperature: Option<f64>,
    /// Keep only the `k` most likely tokens before sampling.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p`.
    pub top_p: Option<f64>,
    /// Seed of the sampler.
    pub seed: u64,
}

impl SamplingOptions {
    /// Greedy decoding (argmax at every step), as d2l predicts.
    pub fn greedy() -> Self {
        SamplingOptions { temperature: None, top_k: None, top_p: None, seed: 0 }
    }

    /// Whether every step takes the most likely token.
    pub fn is_greedy(&self) -> bool {
        self.temperature == Some(0.0) || (self.temperature.is_none() && self.top_k.is_none() && self.top_p.is_none())
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.temperature {
            if !(t.is_finite() && t >= 0.0) {
                return Err(Error::option("temperature", "a finite number >= 0 (0: greedy)", t));
            }
        }
        if self.top_k == Some(0) {
            return Err(Error::option("top_k", "at least 1", 0));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::option("top_p", "a probability in (0, 1]", p));
            }
        }
        Ok(())
    }
}

/// Bytes set aside per generated token: its index and its decoded text (a word token is rarely
/// longer than 28 bytes).
const BYTES_PER_GENERATED_TOKEN: usize = 32;

/// Refuses a number of tokens to generate (given as `--option`) whose buffers would not fit in
/// memory.
pub fn check_generation_len(option: &str, len: usize) -> Result<()> {
    let what = format!("generating {len} tokens (--{option})");
    seqmodels::memory::check_elements(&what, &[len], BYTES_PER_GENERATED_TOKEN)?;
    Ok(())
}

/// Generates `len` tokens after `prefix` (at least one token); returns only the new tokens.
pub fn generate(model: &dyn Predictor, prefix: &[u32], len: usize, options: &SamplingOptions) -> Result<Vec<u32>> {
    options.validate()?;
    check_generation_len("len", len)?;
    if prefix.is_empty() {
        return Err(Error::TooFewTokens { what: "the prefix".into(), needed: 1 });
    }
    let device = model.device().clone();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let x = Tensor::from_slice(prefix, (1, prefix.len()), &device)?;
    let (logits, mut state) = model.logits(&x, None)?;
    let mut last = logits.get(prefix.len() - 1)?; // time-major rows, N = 1
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let next = pick(&last, options, &mut rng)?;
        out.push(next);
        if i + 1 == len {
            break;
        }
        let x = Tensor::from_slice(&[next], (1, 1), &device)?;
        let (logits, s) = model.logits(&x, Some(&state))?;
        // Detached: with a trainable model each state would otherwise keep every earlier step's
        // graph alive, and generation would slow down and grow with every token.
        state = StackedState { h: s.h.detach(), c: s.c.map(|c| c.detach()) };
        last = logits.get(0)?;
    }
    Ok(out)
}

/// Chooses a token from one row of logits (V).
fn pick(logits: &Tensor, options: &SamplingOptions, rng: &mut StdRng) -> Result<u32> {
    if options.is_greedy() {
        return Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?);
    }
    let t = options.temperature.unwrap_or(1.0);
    let scaled: Vec<f64> = (logits.to_dtype(DType::F64)? / t)?.to_vec1::<f64>()?;
    let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<(usize, f64)> = scaled.iter().enumerate().map(|(i, &l)| (i, (l - max).exp())).collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(k) = options.top_k {
        probs.truncate(k.max(1));
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if let Some(p) = options.top_p {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, (_, w)) in probs.iter().enumerate() {
            acc += w / total;
            if acc >= p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if !(total.is_finite() && total > 0.0) {
        return Ok(probs.first().map_or(0, |p| p.0 as u32));
    }
    let mut r = rng.random::<f64>() * total;
    for (i, w) in &probs {
        if r < *w {
            return Ok(*i as u32);
        }
        r -= w;
    }
    Ok(probs.last().map_or(0, |p| p.0 as u32))
}
