//! The fast f32 path on x86-64 with AVX-512: the hidden units of a layer are split between
//! threads, each thread keeps its share of W_hh packed in its own cache for the whole
//! sequence (see [`super::panel`]), computes the recurrent product and the gates of its units,
//! and the threads meet at one barrier per time step.
//!
//! Forward, per step and thread: gh[:, my gates] = h_prev W_hh[my gates]^T (all rows of h_prev
//! are needed, hence the barrier), then the fused gate pass for my units, which writes my
//! columns of h'. Backward, per step and thread: the gate gradients of my units (they need only
//! my columns of dh), a barrier, then dh[:, my units] = dgates W_hh[:, my units] (all gate
//! columns are needed). Weight gradients are single GEMMs afterwards, as in the generic path.
//! Results are written by each thread into disjoint columns of shared buffers.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::panel::Packed;
use super::real::Fast;
use super::sequence::{gates, gates_mut, Dims, Grads, Saved, Sequence};
use super::{gru, lstm, rnn};
use crate::config::CellKind;

/// Whether this path can run `dims` here (no projection; AVX-512F at run time).
pub(crate) fn available(dims: &Dims) -> bool {
    !dims.proj && std::arch::is_x86_feature_detected!("avx512f")
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

// SAFETY: every thread writes only its own columns, and reads of other threads' columns are
// separated from their writes by a barrier (or by the end of the scope).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn of(v: &mut [f32]) -> Self {
        Shared(v.as_mut_ptr())
    }

    /// # Safety
    /// `start..start + len` must lie in the buffer and no other thread may access it meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }

    /// The `Q` gate slices `[q * stride + start, + len)`, as mutable slices.
    ///
    /// # Safety
    /// As for [`Shared::slice`], for each of them.
    unsafe fn gates<'a, const Q: usize>(self, start: usize, stride: usize, len: usize) -> [&'a mut [f32]; Q] {
        std::array::from_fn(|q| self.slice(start + q * stride, len))
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

/// Threads available: candle's pool workers plus the calling thread.
pub(crate) fn pool_threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// Forward pass; the same results and saved values as [`Sequence::forward`].
pub(crate) fn forward(
    seq: &Sequence,
    gi: &[f32],
    params: &[f32],
    state0: &[f32],
    save: bool,
) -> (Vec<f32>, Option<Saved<f32>>) {
    let d = seq.dims;
    let (m, h, g, q_n) = (d.batch, d.hidden, d.gates(), d.kind.num_gates());
    let (w_hh, rest) = params.split_at(g * h);
    let b_hh = d.bias.then(|| &rest[..g]);
    let mut result = vec![0f32; d.result_len()];
    let mut saved = save.then(|| Saved::new(&d));
    let mut hbuf = vec![0f32; 2 * m * h];
    hbuf[..m * h].copy_from_slice(&state0[..m * h]);
    let c0 = &state0[m * h..];
    let ranges = unit_ranges(h, seq.threads.min(pool_threads()));
    let barrier = SpinBarrier::new(ranges.len());
    let (out, hs) = (Shared::of(&mut result), Shared::of(&mut hbuf));
    let s_ptrs = saved.as_mut().map(|s| {
        let ptr = |v: &mut Vec<f32>| Shared::of(v);
        (ptr(&mut s.h_prev), ptr(&mut s.act), ptr(&mut s.c_prev), ptr(&mut s.tanh_c), ptr(&mut s.ghn))
    });
    let order = seq.order();
    let zero_start = state0[..m * h].iter().all(|v| *v == 0.0);

    on_threads(&ranges, |_, (u0, u1)| {
        let nu = u1 - u0;
        // My gate rows of W_hh, transposed: column (q, j) of the packed matrix is row q*H + u0 + j.
        let packed = Packed::new(h, q_n * nu, w_hh, 1, |col| ((col / nu) * h + u0 + col % nu) * h);
        let ldc = packed.padded_cols();
        let mut gh = vec![0f32; m * ldc];
        // My columns of c0 (LSTM); other kinds get an unused zero buffer.
        let mut c: Vec<f32> = match d.kind {
            CellKind::Lstm => (0..m).flat_map(|n| c0[n * h + u0..n * h + u1].to_vec()).collect(),
            _ => vec![0f32; m * nu],
        };
        let mut act = vec![0f32; q_n * nu];
        let (mut tanh_c, mut hh, mut ghn) = (vec![0f32; nu], vec![0f32; nu], vec![0f32; nu]);
        let mut pre = vec![0f32; q_n * nu];
        for (s, &t) in order.iter().enumerate() {
            let (prev_at, next_at) = ((s % 2) * m * h, ((s + 1) % 2) * m * h);
            if s == 0 && zero_start {
                gh.fill(0.0); // h0 = 0: the recurrent product of the first step is zero.
            } else {
                // SAFETY: AVX-512F was detected; h_prev has m rows of h values; gh has m rows of ldc.
                unsafe { packed.product(m, hs.0.add(prev_at), h, gh.as_mut_ptr(), ldc) };
            }
            for n in 0..m {
                // SAFETY (all slices below): columns u0..u1 of row n belong to this thread.
                let h_prev = unsafe { hs.slice(prev_at + n * h + u0, nu) };
                let h_next = unsafe { hs.slice(next_at + n * h + u0, nu) };
                if !seq.valid(t, n) {
                    h_next.copy_from_slice(h_prev);
                    continue;
                }
                let row = (t * m + n) * g;
                for q in 0..q_n {
                    let hidden_part = &gh[n * ldc + q * nu..n * ldc + (q + 1) * nu];
                    // GRU keeps the hidden part of n apart: n = tanh(gi_n + r * gh_n).
                    let input_part = (d.kind != CellKind::Gru).then(|| &gi[row + q * h + u0..row + q * h + u1]);
                    let bias = b_hh.map(|b| &b[q * h + u0..q * h + u1]);
                    // SAFETY: AVX-512F was detected.
                    unsafe { sum_into(&mut pre[q * nu..(q + 1) * nu], hidden_part, input_part, bias) };
                }
                let c_row = &mut c[n * nu..(n + 1) * nu];
                let at = (t * m + n) * h + u0;
                if let Some((sh, _, sc, _, _)) = s_ptrs {
                    unsafe { sh.slice(at, nu) }.copy_from_slice(h_prev);
                    if d.kind == CellKind::Lstm {
                        unsafe { sc.slice(at, nu) }.copy_from_slice(c_row);
                    }
                }
                // SAFETY: the fused passes below run on a CPU with AVX-512F (checked by `available`).
                unsafe {
                    gate_pass(
                        d.kind,
                        &pre,
                        gi,
                        row,
                        h,
                        u0,
                        h_prev,
                        &mut act,
                        c_row,
                        &mut tanh_c,
                        &mut hh,
                        &mut ghn,
                        h_next,
                    )
                };
                unsafe { out.slice((t * m + n) * h + u0, nu) }.copy_from_slice(h_next);
                if let Some((_, sa, _, st, sg)) = s_ptrs {
                    let act_w = if q_n == 1 { h } else { g };
                    for q in 0..q_n {
                        unsafe { sa.slice((t * m + n) * act_w + q * h + u0, nu) }
                            .copy_from_slice(&act[q * nu..(q + 1) * nu]);
                    }
                    match d.kind {
                        CellKind::Lstm => unsafe { st.slice(at, nu) }.copy_from_slice(&tanh_c),
                        CellKind::Gru => unsafe { sg.slice(at, nu) }.copy_from_slice(&ghn),
                        _ => {}
                    }
                }
            }
            barrier.wait();
        }
        let last = (order.len() % 2) * m * h;
        let end = d.seq_len * m * h;
        for n in 0..m {
            let h_n = unsafe { hs.slice(last + n * h + u0, nu) };
            unsafe { out.slice(end + n * h + u0, nu) }.copy_from_slice(h_n);
            if d.kind == CellKind::Lstm {
                unsafe { out.slice(end + m * h + n * h + u0, nu) }.copy_from_slice(&c[n * nu..(n + 1) * nu]);
            }
        }
    });
    (result, saved)
}

/// dst = a [+ b] [+ c], vectorised.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn sum_into(dst: &mut [f32], a: &[f32], b: Option<&[f32]>, c: Option<&[f32]>) {
    dst.copy_from_slice(a);
    for addend in [b, c].into_iter().flatten() {
        dst.iter_mut().zip(addend).for_each(|(d, x)| *d += *x);
    }
}

/// The fused gate pass of one row over my units, vectorised with AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn gate_pass(
    kind: CellKind,
    pre: &[f32],
    gi: &[f32],
    row: usize,
    h: usize,
    u0: usize,
    h_prev: &[f32],
    act: &mut [f32],
    c: &mut [f32],
    tanh_c: &mut [f32],
    hh: &mut [f32],
    ghn: &mut [f32],
    h_next: &mut [f32],
) {
    let nu = h_next.len();
    match kind {
        CellKind::Lstm => {
            lstm::forward_row::<f32, Fast>(gates(pre), gates_mut(act), c, tanh_c, hh);
            h_next.copy_from_slice(hh);
        }
        CellKind::Gru => {
            let gi_units: [&[f32]; 3] = std::array::from_fn(|q| &gi[row + q * h + u0..row + q * h + u0 + nu]);
            gru::forward_row::<f32, Fast>(gi_units, gates(pre), h_prev, gates_mut(act), ghn, h_next);
        }
        CellKind::RnnTanh | CellKind::RnnRelu => {
            rnn::forward_row::<f32, Fast>(kind == CellKind::RnnRelu, pre, h_next);
            act.copy_from_slice(h_next);
        }
    }
}

/// Backpropagation through time; the same gradients as [`Sequence::backward`].
pub(crate) fn backward(seq: &Sequence, dresult: &[f32], params: &[f32], saved: &Saved<f32>) -> Grads<f32> {
    let d = seq.dims;
    let (m, h, g, q_n) = (d.batch, d.hidden, d.gates(), d.kind.num_gates());
    let tn = d.seq_len * m;
    let w_hh = &params[..g * h];
    let end = tn * h;
    let (dout, dh_n, dc_n) = (&dresult[..end], &dresult[end..end + m * h], &dresult[end + m * h..]);
    let mut dgi = vec![0f32; tn * g];
    let mut dgh_gru = if d.kind == CellKind::Gru { vec![0f32; tn * g] } else { Vec::new() };
    let mut dstate0 = vec![0f32; d.state_len()];
    let ranges = unit_ranges(h, seq.threads.min(pool_threads()));
    let barrier = SpinBarrier::new(ranges.len());
    let (dgi_s, dgh_s, ds0) = (Shared::of(&mut dgi), Shared::of(&mut dgh_gru), Shared::of(&mut dstate0));
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
        for (s, &t) in order.iter().enumerate().rev() {
            for n in 0..m {
                let (dh_row, direct_row) = (&dh[n * nu..(n + 1) * nu], &mut direct[n * nu..(n + 1) * nu]);
                if !seq.valid(t, n) {
                    direct_row.copy_from_slice(dh_row);
                    continue;
                }
                let at = (t * m + n) * h + u0;
                for j in 0..nu {
                    dh_tot[j] = dh_row[j] + dout[at + j];
                }
                let act: [&[f32]; 4] = std::array::from_fn(|q| {
                    let start = (t * m + n) * act_w + q.min(q_n - 1) * h + u0;
                    &saved.act[start..start + nu]
                });
                let row = (t * m + n) * g + u0;
                // SAFETY: columns u0..u1 of each gate of row (t, n) belong to this thread.
                unsafe {
                    match d.kind {
                        CellKind::Lstm => {
                            let c_row = &mut dc[n * nu..(n + 1) * nu];
                            direct_row.fill(0.0);
                            let dpre = dgi_s.gates::<4>(row, h, nu);
                            lstm_backward(
                                &dh_tot,
                                c_row,
                                act,
                                &saved.c_prev[at..at + nu],
                                &saved.tanh_c[at..at + nu],
                                dpre,
                            );
                        }
                        CellKind::Gru => {
                            let (dgi_row, dgh_row) = (dgi_s.gates::<3>(row, h, nu), dgh_s.gates::<3>(row, h, nu));
                            let act3 = [act[0], act[1], act[2]];
                            gru_backward(
                                &dh_tot,
                                act3,
                                &saved.ghn[at..at + nu],
                                &saved.h_prev[at..at + nu],
                                dgi_row,
                                dgh_row,
                                direct_row,
                            );
                        }
                        CellKind::RnnTanh | CellKind::RnnRelu => {
                            direct_row.fill(0.0);
                            rnn_backward(d.kind == CellKind::RnnRelu, &dh_tot, act[0], dgi_s.slice(row, nu));
                        }
                    }
                }
            }
            barrier.wait();
            if s == 0 && !seq.state_grad {
                break; // dh of the first step is only the initial state's gradient: not wanted.
            }
            let dgh_t = if d.kind == CellKind::Gru { dgh_s } else { dgi_s };
            // SAFETY: AVX-512F was detected; after the barrier every thread's gate gradients of
            // step t are written, and nobody writes them again.
            unsafe { packed.product(m, dgh_t.0.add(t * m * g), g, prod.as_mut_ptr(), ldc) };
            for n in 0..m {
                for j in 0..nu {
                    dh[n * nu + j] = prod[n * ldc + j] + direct[n * nu + j];
                }
            }
        }
        for n in 0..m {
            unsafe { ds0.slice(n * h + u0, nu) }.copy_from_slice(&dh[n * nu..(n + 1) * nu]);
            if d.kind == CellKind::Lstm {
                unsafe { ds0.slice(m * h + n * h + u0, nu) }.copy_from_slice(&dc[n * nu..(n + 1) * nu]);
            }
        }
    });
    let dgh = if d.kind == CellKind::Gru { &dgh_gru } else { &dgi };
    let params = seq.weight_grads(dgh, &[], saved);
    Grads { gi: dgi, params, state0: dstate0 }
}

// The backward passes of one row, compiled with AVX-512 so that they vectorise.

#[target_feature(enable = "avx512f")]
unsafe fn lstm_backward(
    dhh: &[f32],
    dc: &mut [f32],
    act: [&[f32]; 4],
    c_prev: &[f32],
    tanh_c: &[f32],
    dpre: [&mut [f32]; 4],
) {
    lstm::backward_row(dhh, dc, act, c_prev, tanh_c, dpre);
}

#[target_feature(enable = "avx512f")]
unsafe fn gru_backward(
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

#[target_feature(enable = "avx512f")]
unsafe fn rnn_backward(relu: bool, dh: &[f32], h_next: &[f32], dpre: &mut [f32]) {
    rnn::backward_row(relu, dh, h_next, dpre);
}
