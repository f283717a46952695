//! Variable-length batches with PyTorch's packed-sequence semantics, as per-step masks.

use candle_core::{DType, Device, Tensor};

use crate::cell::State;
use crate::error::{Error, Result};

/// For each time step t, a (N, 1) mask that is 1 where t < length and 0 past the end.
///
/// Blending with these masks makes every sequence stop at its own length: the state is frozen
/// after the last valid step (so h_n is the state there), outputs past the end are zero, and
/// a reverse direction, which runs from t = L-1 down, keeps its initial state until it reaches
/// the sequence's last valid step.
#[derive(Debug)]
pub(crate) struct StepMasks {
    keep: Vec<Tensor>,
    keep_old: Vec<Tensor>,
}

impl StepMasks {
    /// Masks for validated `lengths` (each in 1..=seq_len, one per batch element); `None` when every
    /// sequence is full length, so that the common case pays nothing.
    pub(crate) fn new(
        lengths: &[usize],
        seq_len: usize,
        batch: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Self>> {
        if lengths.iter().all(|&l| l == seq_len) {
            return Ok(None);
        }
        let mut keep = Vec::with_capacity(seq_len);
        let mut keep_old = Vec::with_capacity(seq_len);
        for t in 0..seq_len {
            let m: Vec<f64> = lengths.iter().map(|&l| if t < l { 1.0 } else { 0.0 }).collect();
            let m = Tensor::from_vec(m, (batch, 1), device)?.to_dtype(dtype)?;
            keep_old.push((1.0 - &m)?);
            keep.push(m);
        }
        Ok(Some(StepMasks { keep, keep_old }))
    }

    /// The state after step t: `next` where t is valid, `prev` where the sequence has ended.
    pub(crate) fn keep_finished(&self, t: usize, next: State, prev: &State) -> Result<State> {
        let blend = |new: &Tensor, old: &Tensor| -> Result<Tensor> {
            Ok((new.broadcast_mul(&self.keep[t])? + old.broadcast_mul(&self.keep_old[t])?)?)
        };
        let h = blend(&next.h, &prev.h)?;
        let c = match (&next.c, &prev.c) {
            (Some(nc), Some(pc)) => Some(blend(nc, pc)?),
            _ => None,
        };
        Ok(State { h, c })
    }

    /// The output at step t: zero past each sequence's end.
    pub(crate) fn zero_finished(&self, t: usize, h: &Tensor) -> Result<Tensor> {
        Ok(h.broadcast_mul(&self.keep[t])?)
    }
}

/// Every length must be in 1..=seq_len, one per batch element.
pub fn validate_lengths(lengths: &[usize], seq_len: usize, batch: usize) -> Result<()> {
    if lengths.len() != batch {
        return Err(Error::Lengths(format!(
            "expected one length per batch element ({batch}), found {}",
            lengths.len()
        )));
    }
    if let Some((i, &l)) = lengths.iter().enumerate().find(|(_, &l)| l == 0 || l > seq_len) {
        return Err(Error::Lengths(format!(
            "lengths[{i}] = {l}: every length must be between 1 and the sequence length {seq_len}"
        )));
    }
    Ok(())
}
