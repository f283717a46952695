//! The fast f32 path on x86-64 with AVX-512 or AVX2 + FMA (chosen at run time, see
//! [`crate::simd`]): the hidden units of a layer are split between
//! threads, each thread keeps its share of W_hh packed in its own cache for the whole
//! sequence (see [`super::panel`]), computes the recurrent product and the gates of its units,
//! and the threads meet at one barrier per time step.
//!
//! Forward, per step and thread: gh[:, my gates] = h_prev W_hh[my gates]^T (all rows of h_prev
//! are needed, hence the barrier) and gx[:, my gates] = x_t W_ih[my gates]^T, then the fused
//! gate pass for my units (sums, biases, activations, state), which writes my columns of h'.
//! Backward, per step and thread: the gate gradients of my units (they need only my columns of
//! dh) and their column sums (the bias gradients), a barrier, then
//! dh[:, my units] = dgates W_hh[:, my units] (all gate columns are needed). dW_hh is one GEMM
//! afterwards, as in the generic path. Results are written by each thread into disjoint columns
//! of shared buffers.
//!
//! Sharing: the buffers every thread writes are reached through [`Shared`], a raw pointer.
//! A thread makes references only to its own columns (`&mut`) or to columns nobody writes until
//! the next barrier (`&`), and reads other threads' columns through raw pointers after a barrier.
//! Buffers allocated without a zero-fill ([`Unfilled`], [`Saved::unfilled`]) are only ever written
//! through [`Shared::fresh`], which initialises the elements before it makes a reference to them.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::panel::Packed;
use super::row::{gate_pass, GateRow, RowOut};
use super::sequence::{gates_mut, Biases, Dims, Forward, Grads, InputSide, Saved, Sequence};
use super::{gru, lstm, rnn};
use crate::config::CellKind;
use crate::simd::{simd_variants, Simd};

/// The instruction set this path runs `dims` with here: none with a projection, or on a CPU
/// without AVX-512F or AVX2 + FMA (see [`Simd::detect`]).
pub(crate) fn available(dims: &Dims) -> Option<Simd> {
    Simd::detect().filter(|_| !dims.proj)
}

/// A barrier that spins (then yields): a step of a small layer takes microseconds, less than
/// a futex wake-up.
struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    threads: usize,
}

impl SpinBarrier {
    fn new(threads: usize) -> Self {
        SpinBarrier { arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0), threads }
    }

    fn wait(&self) {
        if self.threads == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            std::hint::spin_loop();
            spins += 1;
            if spins > 20_000 {
                std::thread::yield_now();
            }
        }
    }
}

/// A buffer that several threads write in disjoint column ranges.
#[derive(Clone, Copy)]
struct Shared(*mut f32);

// SAFETY: a `Shared` is only a pointer; what makes its use across threads sound is the rule of
// the module doc (own columns only, others' after a barrier), which every access states.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn of(v: &mut [f32]) -> Self {
        Shared(v.as_mut_ptr())
    }

    /// `start..start + len` of an initialised buffer, to read.
    ///
    /// # Safety
    /// The range must lie in the buffer, be initialised, and no thread may write it while the
    /// reference lives.
    unsafe fn read<'a>(self, start: usize, len: usize) -> &'a [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.0.add(start), len) }
    }

    /// `start..start + len` of an initialised buffer, to write.
    ///
    /// # Safety
    /// The range must lie in the buffer, be initialised, and no other thread may access it while
    /// the reference lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn write<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }

    /// `start..start + len` of a buffer that may be uninitialised there, zero-filled through the
    /// raw pointer first so that the reference covers initialised values only. The fill costs
    /// little: the caller writes the same cache lines right after.
    ///
    /// # Safety
    /// The range must lie in the buffer's allocation, and no other thread may access it while the
    /// reference lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn fresh<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        // SAFETY: the caller's contract; the zero bytes are the value 0.0, so the slice made
        // after the fill covers initialised f32s.
        unsafe {
            std::ptr::write_bytes(self.0.add(start), 0, len);
            std::slice::from_raw_parts_mut(self.0.add(start), len)
        }
    }

    /// The `Q` gate slices `[q * stride + start, + len)`, each as [`Shared::fresh`] makes it.
    ///
    /// # Safety
    /// As for [`Shared::fresh`], for each of them (and they must not overlap).
    unsafe fn fresh_gates<'a, const Q: usize>(self, start: usize, stride: usize, len: usize) -> [&'a mut [f32]; Q] {
        // SAFETY: the caller's contract, gate by gate.
        std::array::from_fn(|q| unsafe { self.fresh(start + q * stride, len) })
    }
}

/// A buffer that the threads fill completely before anyone reads it, allocated without the
/// zero-fill that `vec![0.0; len]` would spend on it (megabytes per call, on one thread).
struct Unfilled {
    buf: Vec<f32>,
    len: usize,
}

impl Unfilled {
    fn new(len: usize) -> Self {
        Unfilled { buf: Vec::with_capacity(len), len }
    }

    /// Where the threads write: the vector's spare capacity, valid for writes of `len` values
    /// (and only through [`Shared::fresh`], which initialises them).
    fn shared(&mut self) -> Shared {
        Shared(self.buf.as_mut_ptr())
    }

    /// The filled buffer.
    ///
    /// # Safety
    /// All `len` elements must have been written through [`Unfilled::shared`].
    unsafe fn filled(mut self) -> Vec<f32> {
        // SAFETY: the capacity is `len`, and the caller guarantees every element is initialised.
        unsafe { self.buf.set_len(self.len) };
        self.buf
    }
}

/// Unit ranges, one per thread, at least 16 units each.
fn unit_ranges(hidden: usize, threads: usize) -> Vec<(usize, usize)> {
    let parts = threads.min(hidden / 16).max(1);
    (0..parts).map(|k| (k * hidden / parts, (k + 1) * hidden / parts)).collect()
}

/// Runs `work(thread, units)` on every unit range, on candle's persistent CPU thread pool
/// (the calling thread takes part), so that no extra threads compete for the cores.
fn on_threads(ranges: &[(usize, usize)], work: impl Fn(usize, (usize, usize)) + Sync) {
    if ranges.len() == 1 {
        return work(0, ranges[0]);
    }
    candle_core::utils::barrier_pool().execute(|tid| {
        if let Some(&range) = ranges.get(tid) {
            work(tid, range);
        }
    });
}

/// Forward pass; the same results and saved values as [`Sequence::forward`].
pub(crate) fn forward(
    simd: Simd,
    seq: &Sequence,
    input: InputSide<f32>,
    params: &[f32],
    state0: &[f32],
    save: bool,
) -> (Vec<f32>, Option<Saved<f32>>) {
    let d = seq.dims;
    let (m, h, g, q_n, i) = (d.batch, d.hidden, d.gates(), d.kind.num_gates(), input.size);
    let (w_hh, rest) = params.split_at(g * h);
    let biases = Biases::new(g, input.b_ih, d.bias.then(|| &rest[..g]));
    // Every element of the result and of the saved buffers is written below (zeros past a
    // row's length), so none is zero-filled first.
    let mut result = Unfilled::new(d.result_len());
    // Without lengths, h before each step is the previous step's output (or h0), which backward
    // reads there; GRU's gate gradients read it row by row, so GRU keeps it.
    let keep_h_prev = seq.lengths.is_some() || d.kind == CellKind::Gru;
    let mut saved = save.then(|| Saved::unfilled(&d, keep_h_prev));
    let mut hbuf = vec![0f32; 2 * m * h];
    hbuf[..m * h].copy_from_slice(&state0[..m * h]);
    let c0 = &state0[m * h..];
    let ranges = unit_ranges(h, seq.threads.min(crate::pool::threads()));
    let barrier = SpinBarrier::new(ranges.len());
    let (out, hs) = (result.shared(), Shared::of(&mut hbuf));
    // The saved buffers' spare capacity, written only through `Shared::fresh`.
    let s_ptrs = saved.as_mut().map(|s| {
        let ptr = |v: &mut Vec<f32>| Shared(v.as_mut_ptr());
        (ptr(&mut s.h_prev), ptr(&mut s.act), ptr(&mut s.c_prev), ptr(&mut s.tanh_c), ptr(&mut s.ghn))
    });
    let order = seq.order();
    let zero_start = state0[..m * h].iter().all(|v| *v == 0.0);
    // Width of a row of the saved activations: the gates, or h' itself for RNN.
    let act_w = if q_n == 1 { h } else { g };

    on_threads(&ranges, |_, (u0, u1)| {
        let nu = u1 - u0;
        // My gate rows of W_hh and W_ih, transposed: column (q, j) of each packed matrix is row
        // q*H + u0 + j. The input side is projected step by step too (gx = x_t W_ih[mine]^T),
        // which costs the same products as one GEMM over all steps but never writes the (T, N, G)
        // projection out to memory and reads it back.
        let mine = |width: usize| move |col: usize| ((col / nu) * h + u0 + col % nu) * width;
        let packed = Packed::new(h, q_n * nu, w_hh, 1, mine(h));
        let packed_ih = Packed::new(i, q_n * nu, input.w_ih, 1, mine(i));
        let ldc = packed.padded_cols();
        let (mut gh, mut gx) = (vec![0f32; m * ldc], vec![0f32; m * ldc]);
        // My columns of c0 (LSTM); other kinds get an unused zero buffer.
        let mut c: Vec<f32> = match d.kind {
            CellKind::Lstm => (0..m).flat_map(|n| c0[n * h + u0..n * h + u1].to_vec()).collect(),
            _ => vec![0f32; m * nu],
        };
        // Where a row's activations, tanh(c') and GRU's hidden n part go when nothing is saved.
        let (mut act, mut tanh_c, mut ghn) = (vec![0f32; 4 * nu], vec![0f32; nu], vec![0f32; nu]);
        for (s, &t) in order.iter().enumerate() {
            let (prev_at, next_at) = ((s % 2) * m * h, ((s + 1) % 2) * m * h);
            if s == 0 && zero_start {
                gh.fill(0.0); // h0 = 0: the recurrent product of the first step is zero.
            } else {
                // SAFETY: `simd` was detected; the h_prev half of hbuf holds m rows of h values,
                // all written before the last barrier and not written again until the next one;
                // gh is this thread's, m rows of ldc.
                unsafe { packed.product(simd, m, hs.0.add(prev_at), h, gh.as_mut_ptr(), ldc) };
            }
            // SAFETY: as above; x_t is m rows of i values of the input, which nobody writes.
            unsafe { packed_ih.product(simd, m, input.x[t * m * i..].as_ptr(), i, gx.as_mut_ptr(), ldc) };
            for n in 0..m {
                let at = (t * m + n) * h + u0;
                // SAFETY (every `Shared` access in this loop): the range is columns u0..u1 of
                // row (t, n), of one gate where the buffer has several; those columns belong to
                // this thread, and other threads touch only their own until the barrier below.
                // The h_prev half is only read during the step (the products above read it too).
                let h_prev = unsafe { hs.read(prev_at + n * h + u0, nu) };
                let h_next = unsafe { hs.write(next_at + n * h + u0, nu) };
                if !seq.valid(t, n) {
                    h_next.copy_from_slice(h_prev);
                    // Past the row's length: zero output, and zeros in what backward reads.
                    // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                    unsafe { out.fresh(at, nu) };
                    if let Some((sh, sa, sc, st, sg)) = s_ptrs {
                        if keep_h_prev {
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            unsafe { sh.fresh(at, nu) };
                        }
                        for q in 0..q_n {
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            unsafe { sa.fresh((t * m + n) * act_w + q * h + u0, nu) };
                        }
                        match d.kind {
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            CellKind::Lstm => unsafe {
                                sc.fresh(at, nu);
                                st.fresh(at, nu);
                            },
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            CellKind::Gru => unsafe {
                                sg.fresh(at, nu);
                            },
                            CellKind::RnnTanh | CellKind::RnnRelu => {}
                        }
                    }
                    continue;
                }
                let c_row = &mut c[n * nu..(n + 1) * nu];
                // Training writes straight into the saved buffers; inference into scratch.
                let mut row_out = RowOut { act: gates_mut(&mut act), tanh_c: &mut tanh_c, ghn: &mut ghn };
                if let Some((sh, sa, sc, st, sg)) = s_ptrs {
                    if keep_h_prev {
                        // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                        unsafe { sh.fresh(at, nu) }.copy_from_slice(h_prev);
                    }
                    match d.kind {
                        CellKind::Lstm => {
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            unsafe { sc.fresh(at, nu) }.copy_from_slice(c_row);
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            row_out.act = unsafe { sa.fresh_gates::<4>((t * m + n) * act_w + u0, h, nu) };
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            row_out.tanh_c = unsafe { st.fresh(at, nu) };
                        }
                        CellKind::Gru => {
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            let [r, z, n_] = unsafe { sa.fresh_gates::<3>((t * m + n) * act_w + u0, h, nu) };
                            let [.., spare] = row_out.act;
                            row_out.act = [r, z, n_, spare];
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            row_out.ghn = unsafe { sg.fresh(at, nu) };
                        }
                        CellKind::RnnTanh | CellKind::RnnRelu => {}
                    }
                }
                let (my_gh, my_gx) = (&gh[n * ldc..n * ldc + q_n * nu], &gx[n * ldc..n * ldc + q_n * nu]);
                let row = GateRow {
                    kind: d.kind,
                    gh: my_gh,
                    gx: my_gx,
                    biases: &biases,
                    u0,
                    h_prev,
                    c: c_row,
                    out: row_out,
                    h_next,
                };
                gate_pass(Some(simd), row);
                // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                unsafe { out.fresh(at, nu) }.copy_from_slice(h_next);
                if let (Some((_, sa, ..)), true) = (s_ptrs, q_n == 1) {
                    // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                    unsafe { sa.fresh(at, nu) }.copy_from_slice(h_next); // RNN saves h' as its activation.
                }
            }
            barrier.wait();
        }
        let last = (order.len() % 2) * m * h;
        let end = d.seq_len * m * h;
        for n in 0..m {
            // SAFETY: columns u0..u1 of each row are this thread's; after the last barrier
            // nobody writes hbuf, and this thread alone writes these columns of h_n and c_n.
            let h_n = unsafe { hs.read(last + n * h + u0, nu) };
            unsafe { out.fresh(end + n * h + u0, nu) }.copy_from_slice(h_n);
            if d.kind == CellKind::Lstm {
                unsafe { out.fresh(end + m * h + n * h + u0, nu) }.copy_from_slice(&c[n * nu..(n + 1) * nu]);
            }
        }
    });
    // SAFETY: the threads wrote their columns of every row of each (valid rows in the gate
    // pass, the others with zeros above; the final state after the loop), and the unit ranges
    // cover all columns.
    let result = unsafe { result.filled() };
    if let Some(saved) = saved.as_mut() {
        // SAFETY: as for the result, for every buffer `Saved::unfilled` gave room to.
        unsafe { saved.assume_filled(&d) };
    }
    (result, saved)
}

/// Backpropagation through time; the same gradients as [`Sequence::backward`].
pub(crate) fn backward(
    simd: Simd,
    seq: &Sequence,
    forward: Forward<f32>,
    dresult: &[f32],
    params: &[f32],
    saved: &Saved<f32>,
) -> Grads<f32> {
    let d = seq.dims;
    let (m, h, g, q_n) = (d.batch, d.hidden, d.gates(), d.kind.num_gates());
    let tn = d.seq_len * m;
    let w_hh = &params[..g * h];
    let end = tn * h;
    let (dout, dh_n, dc_n) = (&dresult[..end], &dresult[end..end + m * h], &dresult[end + m * h..]);
    // Every row of the gate gradients is written below (zeros past a row's length).
    let mut dgi = Unfilled::new(tn * g);
    let mut dgh_gru = Unfilled::new(if d.kind == CellKind::Gru { tn * g } else { 0 });
    let mut dstate0 = vec![0f32; d.state_len()];
    // Column sums of the hidden and input parts of the gate gradients (db_hh; db_ih for GRU,
    // where they differ), each thread summing its columns as it writes them.
    let (mut sums_h, mut sums_i) = (vec![0f32; g], vec![0f32; if d.kind == CellKind::Gru { g } else { 0 }]);
    let ranges = unit_ranges(h, seq.threads.min(crate::pool::threads()));
    let barrier = SpinBarrier::new(ranges.len());
    let (dgi_s, dgh_s, ds0) = (dgi.shared(), dgh_gru.shared(), Shared::of(&mut dstate0));
    let (sums_h_s, sums_i_s) = (Shared::of(&mut sums_h), Shared::of(&mut sums_i));
    let order = seq.order();
    let act_w = if q_n == 1 { h } else { g };

    on_threads(&ranges, |_, (u0, u1)| {
        let nu = u1 - u0;
        // My columns of W_hh (G x H): dh[:, my units] = dgates W_hh[:, my units].
        let packed = Packed::new(g, nu, w_hh, h, |col| u0 + col);
        let ldc = packed.padded_cols();
        let mut prod = vec![0f32; m * ldc];
        let mine = |v: &[f32]| -> Vec<f32> { (0..m).flat_map(|n| v[n * h + u0..n * h + u1].to_vec()).collect() };
        let mut dh = mine(dh_n);
        let mut dc = if d.kind == CellKind::Lstm { mine(dc_n) } else { vec![0f32; m * nu] };
        let mut direct = vec![0f32; m * nu];
        let mut dh_tot = vec![0f32; nu];
        // My columns of the sums, gate after gate.
        let (mut my_sums_h, mut my_sums_i) = (vec![0f32; q_n * nu], vec![0f32; q_n * nu]);
        for (s, &t) in order.iter().enumerate().rev() {
            for n in 0..m {
                let (dh_row, direct_row) = (&dh[n * nu..(n + 1) * nu], &mut direct[n * nu..(n + 1) * nu]);
                let row = (t * m + n) * g + u0;
                // SAFETY (every `Shared` access in this loop): columns u0..u1 of each gate of
                // row (t, n) of the gate gradients belong to this thread; other threads read
                // them only after the barrier below.
                if !seq.valid(t, n) {
                    direct_row.copy_from_slice(dh_row);
                    for q in 0..q_n {
                        unsafe { dgi_s.fresh(row + q * h, nu) };
                        if d.kind == CellKind::Gru {
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            unsafe { dgh_s.fresh(row + q * h, nu) };
                        }
                    }
                    continue;
                }
                let at = (t * m + n) * h + u0;
                for ((tot, &dh), &out) in dh_tot.iter_mut().zip(dh_row).zip(&dout[at..at + nu]) {
                    *tot = dh + out;
                }
                let act: [&[f32]; 4] = std::array::from_fn(|q| {
                    let start = (t * m + n) * act_w + q.min(q_n - 1) * h + u0;
                    &saved.act[start..start + nu]
                });
                match d.kind {
                    CellKind::Lstm => {
                        let c_row = &mut dc[n * nu..(n + 1) * nu];
                        direct_row.fill(0.0);
                        // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                        let dpre = unsafe { dgi_s.fresh_gates::<4>(row, h, nu) };
                        let (c_prev, tanh_c) = (&saved.c_prev[at..at + nu], &saved.tanh_c[at..at + nu]);
                        lstm_backward(simd, &dh_tot, c_row, act, c_prev, tanh_c, dpre);
                    }
                    CellKind::Gru => {
                        // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                        let dgi_row = unsafe { dgi_s.fresh_gates::<3>(row, h, nu) };
                        // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                        let dgh_row = unsafe { dgh_s.fresh_gates::<3>(row, h, nu) };
                        let act3 = [act[0], act[1], act[2]];
                        let (ghn, h_prev) = (&saved.ghn[at..at + nu], &saved.h_prev[at..at + nu]);
                        gru_backward(simd, &dh_tot, act3, ghn, h_prev, dgi_row, dgh_row, direct_row);
                    }
                    CellKind::RnnTanh | CellKind::RnnRelu => {
                        direct_row.fill(0.0);
                        // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                        let dpre = unsafe { dgi_s.fresh(row, nu) };
                        rnn_backward(simd, d.kind == CellKind::RnnRelu, &dh_tot, act[0], dpre);
                    }
                }
                // The gate gradients just written by this thread.
                let mine = |buf: Shared| -> [&[f32]; 4] {
                    // SAFETY: written by this thread just above; nobody writes them until the barrier.
                    std::array::from_fn(|q| unsafe { buf.read(row + q.min(q_n - 1) * h, nu) })
                };
                add_gates(simd, &mut my_sums_h, &mine(if d.kind == CellKind::Gru { dgh_s } else { dgi_s })[..q_n]);
                if d.kind == CellKind::Gru {
                    add_gates(simd, &mut my_sums_i, &mine(dgi_s)[..q_n]);
                }
            }
            barrier.wait();
            if s == 0 && !seq.state_grad {
                break; // dh of the first step is only the initial state's gradient: not wanted.
            }
            let dgh_t = if d.kind == CellKind::Gru { dgh_s } else { dgi_s };
            // SAFETY: `simd` was detected; after the barrier every thread's gate gradients of
            // step t are written (m rows of g), and nobody writes them again; prod is this
            // thread's, m rows of ldc.
            unsafe { packed.product(simd, m, dgh_t.0.add(t * m * g), g, prod.as_mut_ptr(), ldc) };
            for ((dh, prod), direct) in dh.chunks_exact_mut(nu).zip(prod.chunks_exact(ldc)).zip(direct.chunks_exact(nu))
            {
                for ((dh, &prod), &direct) in dh.iter_mut().zip(prod).zip(direct) {
                    *dh = prod + direct;
                }
            }
        }
        // SAFETY (the writes below): columns u0..u1 of each gate and row are this thread's,
        // in buffers that were initialised when allocated.
        for q in 0..q_n {
            unsafe { sums_h_s.write(q * h + u0, nu) }.copy_from_slice(&my_sums_h[q * nu..(q + 1) * nu]);
            if d.kind == CellKind::Gru {
                unsafe { sums_i_s.write(q * h + u0, nu) }.copy_from_slice(&my_sums_i[q * nu..(q + 1) * nu]);
            }
        }
        for n in 0..m {
            // SAFETY: this thread's columns of an initialised buffer (see above).
            unsafe { ds0.write(n * h + u0, nu) }.copy_from_slice(&dh[n * nu..(n + 1) * nu]);
            if d.kind == CellKind::Lstm {
                // SAFETY: this thread's columns of an initialised buffer (see above).
                unsafe { ds0.write(m * h + n * h + u0, nu) }.copy_from_slice(&dc[n * nu..(n + 1) * nu]);
            }
        }
    });
    // SAFETY: each thread wrote its columns of every row of both (the rows loop above runs for
    // every step and row, including step 0 before the loop may stop), and the unit ranges cover
    // all columns.
    let (dgi, dgh_gru) = unsafe { (dgi.filled(), dgh_gru.filled()) };
    let dgh = if d.kind == CellKind::Gru { &dgh_gru } else { &dgi };
    let params = seq.weight_grads(dgh, &[], (saved, Some(forward)), Some(&sums_h));
    let gi_sums = (d.kind == CellKind::Gru).then_some(sums_i);
    Grads { gi: dgi, params, state0: dstate0, gi_sums }
}

simd_variants! {
    /// sums[q * nu + j] += gates[q][j]: this thread's column sums of one row's gate gradients.
    fn add_gates(sums: &mut [f32], gates: &[&[f32]]) {
        for (sums, gate) in sums.chunks_exact_mut(gates[0].len()).zip(gates) {
            sums.iter_mut().zip(*gate).for_each(|(s, v)| *s += *v);
        }
    }
}

// The backward passes of one row, compiled for the detected instruction set so that they
// vectorise.

simd_variants! {
    fn lstm_backward(
        dhh: &[f32],
        dc: &mut [f32],
        act: [&[f32]; 4],
        c_prev: &[f32],
        tanh_c: &[f32],
        dpre: [&mut [f32]; 4],
    ) {
        lstm::backward_row(dhh, dc, act, c_prev, tanh_c, dpre);
    }
}

simd_variants! {
    fn gru_backward(
        dh: &[f32],
        act: [&[f32]; 3],
        ghn: &[f32],
        h_prev: &[f32],
        dgi: [&mut [f32]; 3],
        dgh: [&mut [f32]; 3],
        direct: &mut [f32],
    ) {
        gru::backward_row(dh, act, ghn, h_prev, dgi, dgh, direct);
    }
}

simd_variants! {
    fn rnn_backward(relu: bool, dh: &[f32], h_next: &[f32], dpre: &mut [f32]) {
        rnn::backward_row(relu, dh, h_next, dpre);
    }
}
