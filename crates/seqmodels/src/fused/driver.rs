//! The one loop of the fused CPU kernels: forward over the whole sequence and backpropagation
//! through time, for every cell kind and option, with the products and row passes of an
//! [`Engine`] (vectorised f32 or generic).
//!
//! Each thread computes a [`Part`] of every step ([`Engine::parts`]): some hidden units of all
//! batch rows, or all units of some rows (a projection keeps one part). Each thread packs the
//! weights of its units once. Threads that share rows meet at one barrier per step; threads
//! that own rows never wait (see [`super::threads`] for how they share buffers).
//!
//! Forward, per step and thread: gh[my rows, my gates] = h_prev[my rows] W_hh[my gates]^T (all
//! columns of h_prev are needed, hence the barrier when units are split) and the input part of
//! my gates (projected in this step, or read from one GEMM over all steps), then the fused gate
//! pass of my units, which writes my part of h'; with a projection, then h' = hh W_hr^T for the
//! whole batch.
//! Backward, per step and thread: the gate gradients of my part (they need only my part of dh)
//! and their column sums (the bias gradients), a barrier when units are split, then
//! dh[my rows, my columns] = dgates[my rows] W_hh[:, my columns] (all gate columns are needed).
//! The weight gradients are GEMMs over all steps afterwards ([`Sequence::weight_grads`]).

use super::engine::Engine;
use super::gemm::{as_is, matmul, product, transposed, Init};
use super::real::Real;
use super::row::{GateRow, GradRow, RowOut};
use super::sequence::{gates_mut, Biases, Forward, Grads, InputSide, Saved, Sequence};
use super::threads::{on_threads, step_barrier, Part, Shared, Unfilled};
use crate::config::CellKind;

/// The threads' parts in training or not: the engine's split, or one part with a projection
/// (h' mixes all units through W_hr, for the whole batch at once).
fn parts<T: Real, E: Engine<T>>(engine: E, seq: &Sequence, training: bool) -> Vec<Part> {
    let d = seq.dims;
    match d.proj {
        true => vec![Part::whole(d.hidden, d.batch)],
        false => engine.parts(d.hidden, d.batch, d.gates() * d.h_out * std::mem::size_of::<T>(), training),
    }
}

/// The columns of h (H_out wide) a thread owns: its units, or all of them with a projection.
fn out_columns(seq: &Sequence, (u0, u1): (usize, usize)) -> (usize, usize) {
    match seq.dims.proj {
        true => (0, seq.dims.h_out),
        false => (u0, u1),
    }
}

/// How many of a part's rows `n0..n1` are within their length at a step where the first `active`
/// rows are.
fn active_in((n0, n1): (usize, usize), active: usize) -> usize {
    active.min(n1).saturating_sub(n0)
}

/// Forward pass over the sequence. `input` is the layer input with W_ih and b_ih, `params` the
/// packed recurrent parameters, `state0` h0 then c0. Returns the result (output, h_n, c_n) and,
/// when `save`, what backward needs.
pub(crate) fn forward<T: Real, E: Engine<T>>(
    engine: E,
    seq: &Sequence,
    input: InputSide<T>,
    params: &[T],
    state0: &[T],
    save: bool,
) -> (Vec<T>, Option<Saved<T>>) {
    let d = seq.dims;
    let (m, h, ho, g, q_n, i) = (d.batch, d.hidden, d.h_out, d.gates(), d.kind.num_gates(), input.size);
    let zero = T::zero();
    let p = seq.split_params(params);
    let biases = Biases::new(g, input.b_ih, p.b_hh);
    // Every element of the result and of the saved buffers is written below (zeros past a
    // row's length), so none is zero-filled first.
    let mut result = Unfilled::new(d.result_len());
    // Without lengths, h before each step is the previous step's output (or h0), which backward
    // reads there; GRU's gate gradients read it row by row, so GRU keeps it.
    let keep_h_prev = seq.lengths.is_some() || d.kind == CellKind::Gru;
    let mut saved = save.then(|| Saved::unfilled(&d, keep_h_prev));
    // h before and after the step, alternating halves.
    let mut hbuf = vec![zero; 2 * m * ho];
    hbuf[..m * ho].copy_from_slice(&state0[..m * ho]);
    let c0 = &state0[m * ho..];
    // The input part of all steps as one GEMM, when the engine does not project step by step.
    let per_step = engine.input_per_step(g, i);
    let gi_all = (!per_step).then(|| {
        let dims = (d.seq_len * m, g, i);
        product(dims, Init::Zero, as_is(input.x), transposed(input.w_ih), engine.threads())
    });
    let parts = parts(engine, seq, save);
    let barrier = step_barrier(&parts);
    let (out, hs) = (result.shared(), Shared::of(&mut hbuf));
    // The saved buffers' spare capacity, written only through `Shared::fresh`.
    let s_ptrs = saved.as_mut().map(|s| {
        let (h_prev, act, c_prev) = (Shared::of(&mut s.h_prev), Shared::of(&mut s.act), Shared::of(&mut s.c_prev));
        (h_prev, act, c_prev, Shared::of(&mut s.tanh_c), Shared::of(&mut s.ghn), Shared::of(&mut s.hh))
    });
    let order = seq.order();
    let zero_start = state0[..m * ho].iter().all(|v| *v == zero);
    // Width of a row of the saved activations: the gates, or h' itself for RNN.
    let act_w = if q_n == 1 { h } else { g };

    on_threads(&parts, |_, part| {
        let ((u0, u1), (n0, n1)) = (part.units, part.rows);
        let (nu, mine_n) = (u1 - u0, n1 - n0);
        let (o0, o1) = out_columns(seq, (u0, u1));
        let no = o1 - o0;
        // My gate rows of W_hh and W_ih, transposed: column (q, j) of each packed matrix is row
        // q*H + u0 + j.
        let mine = |width: usize| move |col: usize| ((col / nu) * h + u0 + col % nu) * width;
        let packed = engine.pack(ho, q_n * nu, p.w_hh, 1, mine(ho));
        let packed_ih = per_step.then(|| engine.pack(i, q_n * nu, input.w_ih, 1, mine(i)));
        let ldc = E::padded_cols(&packed);
        // The products and c of my rows (local row n - n0).
        let mut gh = vec![zero; mine_n * ldc];
        let mut gx = vec![zero; if per_step { mine_n * ldc } else { 0 }];
        // My part of c0 (LSTM); other kinds get an unused zero buffer.
        let mut c: Vec<T> = match d.kind {
            CellKind::Lstm => (n0..n1).flat_map(|n| c0[n * h + u0..n * h + u1].to_vec()).collect(),
            _ => vec![zero; mine_n * nu],
        };
        // Where a row's activations, tanh(c') and GRU's hidden n part go when nothing is saved.
        let (mut act, mut tanh_c, mut ghn) = (vec![zero; 4 * nu], vec![zero; nu], vec![zero; nu]);
        // With a projection: o * tanh(c') of the batch when nothing is saved, and h' = that W_hr^T.
        let (mut hh, mut projected) = match d.proj {
            true => (vec![zero; m * h], vec![zero; m * ho]),
            false => (Vec::new(), Vec::new()),
        };
        for (s, &t) in order.iter().enumerate() {
            let (prev_at, next_at) = ((s % 2) * m * ho, ((s + 1) % 2) * m * ho);
            // SAFETY: nobody writes my rows of the h_prev half of hbuf during this step: it was
            // written before the last barrier by the threads that share my rows, or by this
            // thread alone, and is written again only after the next barrier.
            let h_prev_mine = unsafe { hs.read(prev_at + n0 * ho, mine_n * ho) };
            // Rows from `active` on have ended: their products are not computed (nor read).
            let active = active_in(part.rows, seq.active_rows(t));
            if s == 0 && zero_start {
                gh.fill(zero); // h0 = 0: the recurrent product of the first step is zero.
            } else {
                engine.product(&packed, active, &h_prev_mine[..active * ho], &mut gh);
            }
            if let Some(packed_ih) = &packed_ih {
                let x_t = &input.x[(t * m + n0) * i..(t * m + n0 + active) * i];
                engine.product(packed_ih, active, x_t, &mut gx);
            }
            for n in n0..n1 {
                let (at, ln) = ((t * m + n) * h + u0, n - n0);
                let at_o = (t * m + n) * ho + o0;
                let h_prev = &h_prev_mine[ln * ho + o0..ln * ho + o1];
                // SAFETY (every `Shared` access in this loop): the range is this thread's columns
                // (units u0..u1, or h columns o0..o1) of row (t, n), one of its rows, of one gate
                // where the buffer has several; other threads touch only their own parts.
                let h_next = unsafe { hs.write(next_at + n * ho + o0, no) };
                if !seq.valid(t, n) {
                    h_next.copy_from_slice(h_prev);
                    // Past the row's length: zero output, and zeros in what backward reads.
                    // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                    unsafe { out.fresh(at_o, no) };
                    if let Some((sh, sa, sc, st, sg, shh)) = s_ptrs {
                        if keep_h_prev {
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            unsafe { sh.fresh(at_o, no) };
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
                                if d.proj {
                                    shh.fresh(at, nu);
                                }
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
                let c_row = &mut c[ln * nu..(ln + 1) * nu];
                // Training writes straight into the saved buffers; inference into scratch.
                let mut row_out = RowOut { act: gates_mut(&mut act), tanh_c: &mut tanh_c, ghn: &mut ghn };
                // h' of my units: into h, or before projection into hh (saved when training).
                let mut hh_row: Option<&mut [T]> = d.proj.then(|| &mut hh[n * h..(n + 1) * h]);
                if let Some((sh, sa, sc, st, sg, shh)) = s_ptrs {
                    if keep_h_prev {
                        // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                        unsafe { sh.fresh(at_o, no) }.copy_from_slice(h_prev);
                    }
                    match d.kind {
                        CellKind::Lstm => {
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            unsafe { sc.fresh(at, nu) }.copy_from_slice(c_row);
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            row_out.act = unsafe { sa.fresh_gates::<4>((t * m + n) * act_w + u0, h, nu) };
                            // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                            row_out.tanh_c = unsafe { st.fresh(at, nu) };
                            if d.proj {
                                // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                                hh_row = Some(unsafe { shh.fresh(at, nu) });
                            }
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
                // My gate columns of the input part: a full row of G from unit u0 (one GEMM over
                // all steps), or this step's product of my columns.
                let (my_gx, gx_stride) = match &gi_all {
                    Some(gi) => (&gi[(t * m + n) * g + u0..(t * m + n + 1) * g], h),
                    None => (&gx[ln * ldc..ln * ldc + q_n * nu], nu),
                };
                let h_out_row = match hh_row {
                    Some(hh_row) => hh_row,
                    None => &mut *h_next,
                };
                let row = GateRow {
                    kind: d.kind,
                    gh: &gh[ln * ldc..ln * ldc + q_n * nu],
                    gx: my_gx,
                    gx_stride,
                    biases: &biases,
                    u0,
                    h_prev,
                    c: c_row,
                    out: row_out,
                    h_next: h_out_row,
                };
                engine.gate_pass(row);
                if d.proj {
                    continue; // h' and the output follow from the projection below.
                }
                // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                unsafe { out.fresh(at_o, no) }.copy_from_slice(h_next);
                if let (Some((_, sa, ..)), true) = (s_ptrs, q_n == 1) {
                    // SAFETY: this thread's columns of row (t, n) (the loop's note above).
                    unsafe { sa.fresh(at, nu) }.copy_from_slice(h_next); // RNN saves h' as its activation.
                }
            }
            if let Some(w_hr) = p.w_hr {
                // One range: every row of hh is this thread's, written above (zeros past a row's
                // length, which are not used).
                let hh_t: &[T] = match s_ptrs {
                    // SAFETY: the rows of step t of the saved hh, all written by this thread above.
                    Some((.., shh)) => unsafe { shh.read(t * m * h, m * h) },
                    None => &hh,
                };
                matmul((m, ho, h), &mut projected, Init::Zero, as_is(hh_t), transposed(w_hr), engine.threads());
                for n in (0..m).filter(|&n| seq.valid(t, n)) {
                    let row = &projected[n * ho..(n + 1) * ho];
                    // SAFETY: one part owns all rows and columns; row (t, n) of the output and of h'.
                    unsafe { hs.write(next_at + n * ho, ho) }.copy_from_slice(row);
                    unsafe { out.fresh((t * m + n) * ho, ho) }.copy_from_slice(row);
                }
            }
            barrier.wait();
        }
        let last = (order.len() % 2) * m * ho;
        let end = d.seq_len * m * ho;
        for n in n0..n1 {
            // SAFETY: columns o0..o1 (u0..u1 of c) of my rows are this thread's; after the last
            // barrier nobody writes them in hbuf, and this thread alone writes them in h_n, c_n.
            let h_n = unsafe { hs.read(last + n * ho + o0, no) };
            unsafe { out.fresh(end + n * ho + o0, no) }.copy_from_slice(h_n);
            if d.kind == CellKind::Lstm {
                let c_n = &c[(n - n0) * nu..(n - n0 + 1) * nu];
                unsafe { out.fresh(end + m * ho + n * h + u0, nu) }.copy_from_slice(c_n);
            }
        }
    });
    // SAFETY: the threads wrote their columns of every row of each (valid rows in the gate
    // pass or the projection, the others with zeros above; the final state after the loop),
    // and the ranges cover all columns.
    let result = unsafe { result.filled() };
    if let Some(saved) = saved.as_mut() {
        // SAFETY: as for the result, for every buffer `Saved::unfilled` gave room to.
        unsafe { saved.assume_filled(&d) };
    }
    (result, saved)
}

/// `v[range]` where a cell kind uses it, else empty.
fn units<T>(v: &[T], range: std::ops::Range<usize>, used: bool) -> &[T] {
    if used {
        &v[range]
    } else {
        &[]
    }
}

/// Backpropagation through time from the gradient of the result (output, h_n, c_n); the
/// gradient of the packed params leaves `head` zeros before the recurrent ones, for the input
/// side's.
pub(crate) fn backward<T: Real, E: Engine<T>>(
    engine: E,
    seq: &Sequence,
    (forward, dresult): (Forward<T>, &[T]),
    (params, head): (&[T], usize),
    saved: &Saved<T>,
) -> Grads<T> {
    let d = seq.dims;
    let (m, h, ho, g, q_n) = (d.batch, d.hidden, d.h_out, d.gates(), d.kind.num_gates());
    let zero = T::zero();
    let tn = d.seq_len * m;
    let p = seq.split_params(params);
    let end = tn * ho;
    let (dout, dh_n, dc_n) = (&dresult[..end], &dresult[end..end + m * ho], &dresult[end + m * ho..]);
    // The gate gradients, gate-major (G, T*N) as the weight gradients read them (see
    // `Grads::gi`); every element is written below (zeros past a row's length).
    let mut dgi = Unfilled::new(tn * g);
    let mut dgh_gru = Unfilled::new(if d.kind == CellKind::Gru { tn * g } else { 0 });
    // The gate gradients of one step, row-major (N, G), as the row kernels write them and the
    // step's product reads them; each thread then copies its part into the gate-major buffers.
    // Two of them, for alternate steps: a thread may write the next step's while another still
    // reads this one's.
    let mut step_i = vec![zero; 2 * m * g];
    let mut step_h = vec![zero; if d.kind == CellKind::Gru { 2 * m * g } else { 0 }];
    // The gradient of the projected outputs, for dW_hr.
    let mut dproj = Unfilled::new(if d.proj { tn * ho } else { 0 });
    let mut dstate0 = vec![zero; d.state_len()];
    let parts = parts(engine, seq, true);
    let barrier = step_barrier(&parts);
    // Column sums of the hidden and input parts of the gate gradients (db_hh; db_ih for GRU,
    // where they differ), each thread summing its part as it writes it, into its own G columns.
    let sums_w = if d.kind == CellKind::Gru { 2 * g } else { g };
    let mut sums = vec![zero; parts.len() * sums_w];
    let (dgi_s, dgh_s, dproj_s) = (dgi.shared(), dgh_gru.shared(), dproj.shared());
    let (step_i_s, step_h_s) = (Shared::of(&mut step_i), Shared::of(&mut step_h));
    let ds0 = Shared::of(&mut dstate0);
    let sums_s = Shared::of(&mut sums);
    let order = seq.order();
    let act_w = if q_n == 1 { h } else { g };

    on_threads(&parts, |index, part| {
        let ((u0, u1), (n0, n1)) = (part.units, part.rows);
        let (nu, mine_n) = (u1 - u0, n1 - n0);
        let (o0, o1) = out_columns(seq, (u0, u1));
        let no = o1 - o0;
        // My columns of W_hh (G x H_out): dh[my rows, my columns] = dgates[my rows] W_hh[:, my columns].
        let packed = engine.pack(g, no, p.w_hh, ho, |col| o0 + col);
        let ldc = E::padded_cols(&packed);
        // The buffers below hold my rows (local row n - n0).
        let mut prod = vec![zero; mine_n * ldc];
        let mine = |v: &[T], width: usize, (a, b): (usize, usize)| -> Vec<T> {
            (n0..n1).flat_map(|n| v[n * width + a..n * width + b].to_vec()).collect()
        };
        let mut dh = mine(dh_n, ho, (o0, o1));
        let mut dc = if d.kind == CellKind::Lstm { mine(dc_n, h, (u0, u1)) } else { vec![zero; mine_n * nu] };
        // dh past the recurrence (rows past their length, and GRU's z * dh), and dh of the step.
        let (mut direct, mut dh_tot) = (vec![zero; mine_n * no], vec![zero; mine_n * no]);
        // With a projection: the gradient of o * tanh(c'), dh_tot W_hr.
        let mut dhh = vec![zero; if d.proj { m * h } else { 0 }];
        // My columns of the sums, gate after gate.
        let (mut my_sums_h, mut my_sums_i) = (vec![zero; q_n * nu], vec![zero; q_n * nu]);
        for (s, &t) in order.iter().enumerate().rev() {
            for n in n0..n1 {
                let (r, at_o) = ((n - n0) * no..(n - n0 + 1) * no, (t * m + n) * ho + o0);
                if seq.valid(t, n) {
                    for ((tot, &dh), &out) in
                        dh_tot[r.clone()].iter_mut().zip(&dh[r.clone()]).zip(&dout[at_o..at_o + no])
                    {
                        *tot = dh + out;
                    }
                    direct[r].fill(zero);
                } else {
                    dh_tot[r.clone()].fill(zero);
                    direct[r.clone()].copy_from_slice(&dh[r]);
                }
            }
            if let Some(w_hr) = p.w_hr {
                // One range: all rows and columns are this thread's.
                // SAFETY: step t's rows of dproj, written only here, by the one thread.
                unsafe { dproj_s.fresh(t * m * ho, m * ho) }.copy_from_slice(&dh_tot);
                matmul((m, h, ho), &mut dhh, Init::Zero, as_is(&dh_tot), as_is(w_hr), engine.threads());
            }
            let step_at = (s % 2) * m * g;
            for n in n0..n1 {
                let (row, ln) = (step_at + n * g + u0, n - n0);
                // SAFETY (every `Shared` access in this loop): columns u0..u1 of each gate of
                // row n, one of this thread's rows, of this step's gate gradients belong to this
                // thread; other threads read them only after the barrier below, or never.
                if !seq.valid(t, n) {
                    for q in 0..q_n {
                        unsafe { step_i_s.write(row + q * h, nu) }.fill(zero);
                        if d.kind == CellKind::Gru {
                            // SAFETY: this thread's columns of row n (the loop's note above).
                            unsafe { step_h_s.write(row + q * h, nu) }.fill(zero);
                        }
                    }
                    continue;
                }
                let at = (t * m + n) * h + u0;
                // The gradient of h' of my units (before the projection, if any).
                let dh_row = match d.proj {
                    true => &dhh[ln * h..(ln + 1) * h],
                    false => &dh_tot[ln * no..(ln + 1) * no],
                };
                let act: [&[T]; 4] = std::array::from_fn(|q| {
                    let start = (t * m + n) * act_w + q.min(q_n - 1) * h + u0;
                    &saved.act[start..start + nu]
                });
                let (lstm, gru) = (d.kind == CellKind::Lstm, d.kind == CellKind::Gru);
                // SAFETY (the two `write_gates`): this thread's columns of row n of the step
                // buffers, which were zero-filled when allocated (the loop's note above); a
                // kind's unused gates are empty. The row kernel overwrites every element.
                let dgates = match d.kind {
                    CellKind::Lstm => unsafe { step_i_s.write_gates::<4>(row, h, nu) },
                    CellKind::Gru => {
                        let [r, z, n_] = unsafe { step_i_s.write_gates::<3>(row, h, nu) };
                        [r, z, n_, &mut []]
                    }
                    CellKind::RnnTanh | CellKind::RnnRelu => {
                        [unsafe { step_i_s.write(row, nu) }, &mut [], &mut [], &mut []]
                    }
                };
                let dgh = match gru {
                    // SAFETY: this thread's columns of row n (the loop's note above).
                    true => unsafe { step_h_s.write_gates::<3>(row, h, nu) },
                    false => [&mut [][..], &mut [], &mut []],
                };
                engine.gate_grads(GradRow {
                    kind: d.kind,
                    dh: dh_row,
                    dc: if lstm { &mut dc[ln * nu..(ln + 1) * nu] } else { &mut [] },
                    act,
                    c_prev: units(&saved.c_prev, at..at + nu, lstm),
                    tanh_c: units(&saved.tanh_c, at..at + nu, lstm),
                    ghn: units(&saved.ghn, at..at + nu, gru),
                    h_prev: units(&saved.h_prev, at..at + nu, gru),
                    dgates,
                    dgh,
                    direct: if gru { &mut direct[ln * no..(ln + 1) * no] } else { &mut [] },
                });
                // The gate gradients just written by this thread.
                let written = |buf: Shared<T>| -> [&[T]; 4] {
                    // SAFETY: written by this thread just above; nobody writes them until the barrier.
                    std::array::from_fn(|q| unsafe { buf.read(row + q.min(q_n - 1) * h, nu) })
                };
                let hidden_part = if d.kind == CellKind::Gru { step_h_s } else { step_i_s };
                engine.add_gates(&mut my_sums_h, &written(hidden_part)[..q_n]);
                if d.kind == CellKind::Gru {
                    engine.add_gates(&mut my_sums_i, &written(step_i_s)[..q_n]);
                }
            }
            // My part of this step's gate gradients into the gate-major buffers: for each of my
            // gate columns, its values of my rows, which lie side by side there.
            let buffers = [(step_i_s, dgi_s), (step_h_s, dgh_s)];
            for (step_s, major_s) in buffers.into_iter().take(if d.kind == CellKind::Gru { 2 } else { 1 }) {
                for q in 0..q_n {
                    let (src, dst) =
                        (step_s.ptr(step_at + n0 * g + q * h + u0), major_s.ptr((q * h + u0) * tn + t * m + n0));
                    // SAFETY: the source is this thread's columns of its rows of this step, written
                    // above; the destination, gate rows q*h + u0..q*h + u1 at columns
                    // t*m + n0..t*m + n1, is this thread's alone, in a buffer with room for it.
                    unsafe { engine.transpose((mine_n, nu), (src, g), (dst, tn)) };
                }
            }
            barrier.wait();
            if s == 0 && !seq.state_grad {
                break; // dh of the first step is only the initial state's gradient: not wanted.
            }
            let dgh_t = if d.kind == CellKind::Gru { step_h_s } else { step_i_s };
            // SAFETY: after the barrier the gate gradients of my rows of this step are written
            // (every gate column, by the threads that share my rows or by this one), and nobody
            // writes them until the barrier after the next step (the next step writes the other
            // buffer).
            let dgates = unsafe { dgh_t.read(step_at + n0 * g, mine_n * g) };
            // Rows from `active` on have ended: their gate gradients are zero, dh is `direct`.
            let active = active_in(part.rows, seq.active_rows(t));
            engine.product(&packed, active, &dgates[..active * g], &mut prod);
            let (dh_active, dh_ended) = dh.split_at_mut(active * no);
            for ((dh, prod), direct) in
                dh_active.chunks_exact_mut(no).zip(prod.chunks_exact(ldc)).zip(direct.chunks_exact(no))
            {
                for ((dh, &prod), &direct) in dh.iter_mut().zip(prod).zip(direct) {
                    *dh = prod + direct;
                }
            }
            dh_ended.copy_from_slice(&direct[active * no..]);
        }
        // SAFETY (the writes below): the thread's own sums, and columns u0..u1 of each gate
        // (o0..o1 of h) of my rows, are this thread's, in buffers initialised when allocated.
        let own = sums_w * index;
        for q in 0..q_n {
            unsafe { sums_s.write(own + q * h + u0, nu) }.copy_from_slice(&my_sums_h[q * nu..(q + 1) * nu]);
            if d.kind == CellKind::Gru {
                unsafe { sums_s.write(own + g + q * h + u0, nu) }.copy_from_slice(&my_sums_i[q * nu..(q + 1) * nu]);
            }
        }
        for n in n0..n1 {
            let ln = n - n0;
            // SAFETY: this thread's part of an initialised buffer (see above).
            unsafe { ds0.write(n * ho + o0, no) }.copy_from_slice(&dh[ln * no..(ln + 1) * no]);
            if d.kind == CellKind::Lstm {
                // SAFETY: this thread's part of an initialised buffer (see above).
                unsafe { ds0.write(m * ho + n * h + u0, nu) }.copy_from_slice(&dc[ln * nu..(ln + 1) * nu]);
            }
        }
    });
    // SAFETY: each thread wrote its columns of every row of each (the rows loop above runs for
    // every step and row, including step 0 before the loop may stop; dproj by the one thread of
    // a projection at every step), and the ranges cover all columns.
    let (dgi, dgh_gru, dproj) = unsafe { (dgi.filled(), dgh_gru.filled(), dproj.filled()) };
    // The parts' sums, added (a part's sums are zero outside its units).
    let mut sums_h = vec![zero; g];
    let mut sums_i = vec![zero; if d.kind == CellKind::Gru { g } else { 0 }];
    for own in sums.chunks_exact(sums_w) {
        sums_h.iter_mut().zip(&own[..g]).for_each(|(a, b)| *a += *b);
        sums_i.iter_mut().zip(&own[g..]).for_each(|(a, b)| *a += *b);
    }
    let dgh = if d.kind == CellKind::Gru { &dgh_gru } else { &dgi };
    let mut dparams = vec![zero; head + d.params_len()];
    seq.weight_grads(&mut dparams[head..], (dgh, &dproj), (saved, Some(forward)), Some(&sums_h));
    let gi_sums = (d.kind == CellKind::Gru).then_some(sums_i);
    Grads { gi: dgi, params: dparams, state0: dstate0, gi_sums }
}
