//! What the recurrence driver ([`super::driver`]) leaves to an engine: the per-step products
//! with weights packed once per sequence, the row passes, and how the work of a step is split
//! between threads.
//!
//! - [`Vectorised`] (f32 on x86-64 with AVX-512F or AVX2 + FMA): each thread packs its share of
//!   the weights into 32-column panels kept in its cache ([`super::panel`]), projects the input
//!   step by step, and runs the row passes compiled for the detected instruction set with the
//!   fast activations.
//! - [`Generic`] (f32 or f64, any CPU): one part, products in the `gemm` crate split
//!   between the threads, the input projection as one GEMM over all steps, exact activations.

use super::gemm::{as_is, matmul, transposed, Init};
use super::real::{Exact, Real};
use super::row::{backward_gates, forward_gates, GateRow, GradRow};
use super::threads::Part;
use super::transpose::transpose;

/// The per-step products and row passes of one driver run.
pub(crate) trait Engine<T: Real>: Copy + Send + Sync {
    /// A K x ncols block of a weight matrix, packed for [`Engine::product`].
    type Panel;

    /// Whether each thread projects the input of each step itself (its gate columns of
    /// `x_t W_ih^T`), instead of one GEMM over all steps before the loop; W_ih is (gates, input).
    fn input_per_step(self, gates: usize, input: usize) -> bool;

    /// What each thread computes of a step of `batch` rows and `hidden` units, with a W_hh of
    /// `weight_bytes`, in training (a forward pass that saves for backward, or backward) or not.
    fn parts(self, hidden: usize, batch: usize, weight_bytes: usize, training: bool) -> Vec<Part>;

    /// Packs the K x ncols matrix whose element (row kk, column col) is
    /// `source[start(col) + kk * stride]`.
    fn pack(self, k: usize, ncols: usize, source: &[T], stride: usize, start: impl Fn(usize) -> usize) -> Self::Panel;

    /// Row length of a product's destination.
    fn padded_cols(panel: &Self::Panel) -> usize;

    /// `c` (m rows of [`Engine::padded_cols`]) = `a` (m rows of K) times the panel.
    fn product(self, panel: &Self::Panel, m: usize, a: &[T], c: &mut [T]);

    /// Threads of the products over all steps (and of the projection's).
    fn threads(self) -> usize;

    /// The fused forward pass of one row (see [`GateRow`]).
    fn gate_pass(self, row: GateRow<T>);

    /// The gate gradients of one row (see [`GradRow`]).
    fn gate_grads(self, row: GradRow<T>);

    /// `sums[q * nu + j] += gates[q][j]`: a thread's column sums of one row's gate gradients.
    fn add_gates(self, sums: &mut [T], gates: &[&[T]]);

    /// The transpose of a rows x cols block at `src` (row stride given) into `dst` (see
    /// [`transpose`]).
    ///
    /// # Safety
    /// As for [`transpose`].
    unsafe fn transpose(self, dims: (usize, usize), src: (*const T, usize), dst: (*mut T, usize));
}

/// Any float type on any CPU: the `gemm` crate and exact activations.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Generic {
    pub threads: usize,
}

/// A K x ncols matrix stored densely as its transpose (ncols rows of K).
pub(crate) struct Dense<T> {
    k: usize,
    ncols: usize,
    data: Vec<T>,
}

impl<T: Real> Engine<T> for Generic {
    type Panel = Dense<T>;
    fn input_per_step(self, _: usize, _: usize) -> bool {
        false
    }

    fn parts(self, hidden: usize, batch: usize, _: usize, _: bool) -> Vec<Part> {
        vec![Part::whole(hidden, batch)]
    }

    fn pack(self, k: usize, ncols: usize, source: &[T], stride: usize, start: impl Fn(usize) -> usize) -> Dense<T> {
        // Stored transposed, a column per row: the forward products' columns are contiguous
        // runs of their weight rows (stride 1), copied as they are.
        let mut data = vec![T::zero(); k * ncols];
        for (col, column) in data.chunks_exact_mut(k).enumerate() {
            let at = start(col);
            match stride {
                1 => column.copy_from_slice(&source[at..at + k]),
                _ => column.iter_mut().enumerate().for_each(|(kk, v)| *v = source[at + kk * stride]),
            }
        }
        Dense { k, ncols, data }
    }

    fn padded_cols(panel: &Dense<T>) -> usize {
        panel.ncols
    }

    fn product(self, panel: &Dense<T>, m: usize, a: &[T], c: &mut [T]) {
        let dims = (m, panel.ncols, panel.k);
        matmul(dims, c, Init::Zero, as_is(&a[..m * panel.k]), transposed(&panel.data), self.threads);
    }

    fn threads(self) -> usize {
        self.threads
    }

    fn gate_pass(self, row: GateRow<T>) {
        forward_gates::<T, Exact>(row)
    }

    fn gate_grads(self, row: GradRow<T>) {
        backward_gates(row)
    }

    fn add_gates(self, sums: &mut [T], gates: &[&[T]]) {
        add_gates(sums, gates);
    }

    unsafe fn transpose(self, dims: (usize, usize), src: (*const T, usize), dst: (*mut T, usize)) {
        // SAFETY: the caller's contract.
        unsafe { transpose(None, dims, src, dst) }
    }
}

#[inline(always)]
fn add_gates<T: Real>(sums: &mut [T], gates: &[&[T]]) {
    for (sums, gate) in sums.chunks_exact_mut(gates[0].len()).zip(gates) {
        sums.iter_mut().zip(*gate).for_each(|(s, v)| *s += *v);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use vectorised::Vectorised;

#[cfg(target_arch = "x86_64")]
mod vectorised {
    use super::super::panel::Packed;
    use super::super::row::{gate_grads, gate_pass, GateRow, GradRow};
    use super::super::threads::{split, Part};
    use super::Engine;
    use crate::simd::{simd_variants, Simd};

    /// The largest W_ih (bytes) that the vectorised engine projects step by step: the d2l
    /// character models' (115 KiB) gain from it; from the word models' (640 KiB) up, one GEMM
    /// over all steps is as fast or faster (measured with `examples/layer_speed.rs`).
    const INPUT_PER_STEP_MAX_BYTES: usize = 256 << 10;

    /// f32 with the instruction set `simd`: packed panels per thread, the fast activations.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Vectorised {
        pub simd: Simd,
        pub threads: usize,
    }

    impl Engine<f32> for Vectorised {
        type Panel = Packed;
        /// Step by step while W_ih is small enough to stay in cache beside W_hh from one step
        /// to the next: then the gate pass never streams a (T*N x G) buffer from memory. A
        /// larger W_ih would be read from memory at every step (once per step instead of once
        /// per sequence, which dominates at small batches).
        fn input_per_step(self, gates: usize, input: usize) -> bool {
            gates * input * std::mem::size_of::<f32>() <= INPUT_PER_STEP_MAX_BYTES
        }

        fn parts(self, hidden: usize, batch: usize, weight_bytes: usize, training: bool) -> Vec<Part> {
            split(hidden, batch, self.threads.min(crate::pool::threads()), weight_bytes, training)
        }

        fn pack(self, k: usize, ncols: usize, source: &[f32], stride: usize, start: impl Fn(usize) -> usize) -> Packed {
            Packed::new(self.simd, (k, ncols), source, stride, start)
        }

        fn padded_cols(panel: &Packed) -> usize {
            panel.padded_cols()
        }

        fn product(self, panel: &Packed, m: usize, a: &[f32], c: &mut [f32]) {
            let (k, ldc) = (panel.depth(), panel.padded_cols());
            assert!(a.len() >= m * k && c.len() >= m * ldc, "packed product operand sizes");
            // SAFETY: `simd` was detected; the assertion puts m rows of k values (stride k) in
            // `a` and m rows of ldc in `c`, which are borrowed for the call.
            unsafe { panel.product(self.simd, m, a.as_ptr(), k, c.as_mut_ptr(), ldc) }
        }

        fn threads(self) -> usize {
            self.threads
        }

        fn gate_pass(self, row: GateRow<f32>) {
            gate_pass(Some(self.simd), row);
        }

        fn gate_grads(self, row: GradRow<f32>) {
            gate_grads(Some(self.simd), row);
        }

        fn add_gates(self, sums: &mut [f32], gates: &[&[f32]]) {
            add_gates(self.simd, sums, gates);
        }

        unsafe fn transpose(self, dims: (usize, usize), src: (*const f32, usize), dst: (*mut f32, usize)) {
            // SAFETY: the caller's contract.
            unsafe { super::transpose(Some(self.simd), dims, src, dst) }
        }
    }

    // The column sums compiled for the detected instruction set, so that they vectorise.

    simd_variants! {
        fn add_gates(sums: &mut [f32], gates: &[&[f32]]) {
            super::add_gates(sums, gates)
        }
    }
}
