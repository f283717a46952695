//! How the threads of one fused recurrence share its work: each thread owns a [`Part`] (a range
//! of hidden units of a range of batch rows) and writes only its own part of the shared buffers.
//! Threads that own units of the same rows meet at one barrier per time step.
//!
//! Sharing: the buffers every thread writes are reached through [`Shared`], a raw pointer.
//! A thread makes references only to its own part (`&mut`) or to parts nobody writes until the
//! next barrier (`&`). Buffers allocated without a zero-fill ([`Unfilled`],
//! [`super::sequence::Saved::unfilled`]) are only ever written through [`Shared::fresh`], which
//! initialises the elements before it makes a reference to them.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::real::Real;

/// A barrier that spins (then yields): a step of a small layer takes microseconds, less than
/// a futex wake-up.
pub(crate) struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    threads: usize,
}

impl SpinBarrier {
    pub(crate) fn new(threads: usize) -> Self {
        SpinBarrier { arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0), threads }
    }

    pub(crate) fn wait(&self) {
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
pub(crate) struct Shared<T>(*mut T);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}

// SAFETY: a `Shared` is only a pointer to f32 or f64 values; what makes its use across threads
// sound is the rule of the module doc (own part only, others' after a barrier), which every
// access states.
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Sync> Sync for Shared<T> {}

impl<T: Real> Shared<T> {
    /// The elements of `v` (initialised) or its spare capacity (through [`Shared::fresh`] only).
    pub(crate) fn of(v: &mut Vec<T>) -> Self {
        Shared(v.as_mut_ptr())
    }

    /// The address of element `at`, for raw reads and writes (under the module's rules).
    pub(crate) fn ptr(self, at: usize) -> *mut T {
        self.0.wrapping_add(at)
    }

    /// `start..start + len` of an initialised buffer, to read.
    ///
    /// # Safety
    /// The range must lie in the buffer, be initialised, and no thread may write it while the
    /// reference lives.
    pub(crate) unsafe fn read<'a>(self, start: usize, len: usize) -> &'a [T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.0.add(start), len) }
    }

    /// `start..start + len` of an initialised buffer, to write.
    ///
    /// # Safety
    /// The range must lie in the buffer, be initialised, and no other thread may access it while
    /// the reference lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn write<'a>(self, start: usize, len: usize) -> &'a mut [T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }

    /// The `Q` gate slices `[q * stride + start, + len)` of an initialised buffer, to write.
    ///
    /// # Safety
    /// As for [`Shared::write`], for each of them (and they must not overlap).
    pub(crate) unsafe fn write_gates<'a, const Q: usize>(
        self,
        start: usize,
        stride: usize,
        len: usize,
    ) -> [&'a mut [T]; Q] {
        // SAFETY: the caller's contract, gate by gate.
        std::array::from_fn(|q| unsafe { self.write(start + q * stride, len) })
    }

    /// `start..start + len` of a buffer that may be uninitialised there, zero-filled through the
    /// raw pointer first so that the reference covers initialised values only. The fill costs
    /// little: the caller writes the same cache lines right after.
    ///
    /// # Safety
    /// The range must lie in the buffer's allocation, and no other thread may access it while the
    /// reference lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn fresh<'a>(self, start: usize, len: usize) -> &'a mut [T] {
        // SAFETY: the caller's contract; `Real` is f32 or f64, whose all-zero bytes are the value
        // 0.0, so the slice made after the fill covers initialised values.
        unsafe {
            std::ptr::write_bytes(self.0.add(start), 0, len);
            std::slice::from_raw_parts_mut(self.0.add(start), len)
        }
    }

    /// The `Q` gate slices `[q * stride + start, + len)`, each as [`Shared::fresh`] makes it.
    ///
    /// # Safety
    /// As for [`Shared::fresh`], for each of them (and they must not overlap).
    pub(crate) unsafe fn fresh_gates<'a, const Q: usize>(
        self,
        start: usize,
        stride: usize,
        len: usize,
    ) -> [&'a mut [T]; Q] {
        // SAFETY: the caller's contract, gate by gate.
        std::array::from_fn(|q| unsafe { self.fresh(start + q * stride, len) })
    }
}

/// A buffer that the threads fill completely before anyone reads it, allocated without the
/// zero-fill that `vec![0.0; len]` would spend on it (megabytes per call, on one thread).
pub(crate) struct Unfilled<T> {
    buf: Vec<T>,
    len: usize,
}

impl<T: Real> Unfilled<T> {
    pub(crate) fn new(len: usize) -> Self {
        Unfilled { buf: Vec::with_capacity(len), len }
    }

    /// Where the threads write: the vector's spare capacity, valid for writes of `len` values
    /// (and only through [`Shared::fresh`], which initialises them).
    pub(crate) fn shared(&mut self) -> Shared<T> {
        Shared::of(&mut self.buf)
    }

    /// The filled buffer.
    ///
    /// # Safety
    /// All `len` elements must have been written through [`Unfilled::shared`].
    pub(crate) unsafe fn filled(mut self) -> Vec<T> {
        // SAFETY: the capacity is `len`, and the caller guarantees every element is initialised.
        unsafe { self.buf.set_len(self.len) };
        self.buf
    }
}

/// What one thread computes at each step: its hidden units of its batch rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub units: (usize, usize),
    pub rows: (usize, usize),
}

impl Part {
    /// All units of all rows: the work of one thread.
    pub(crate) fn whole(hidden: usize, batch: usize) -> Self {
        Part { units: (0, hidden), rows: (0, batch) }
    }
}

/// The least batch rows per thread for which the batch is split between threads instead of the
/// units: two full tiles of the panel micro-kernel's rows.
const MIN_ROWS_PER_THREAD: usize = 16;

/// The work of each step split between at most `threads` threads: by batch rows in training
/// (a forward pass that saves what backward needs, and backward) while each thread gets at least
/// [`MIN_ROWS_PER_THREAD`] rows and W_hh (`weight_bytes`) is at most
/// [`ROWS_SPLIT_MAX_WEIGHT_BYTES`]; else by hidden units (consecutive ranges of at least 16).
///
/// Threads that own whole rows never wait for each other: row n of a step needs only row n of
/// the step before. Threads that own units meet at a barrier after every step, since each needs
/// every unit of h, and a training step (which also writes the saved activations) varies enough
/// that this wait is a large part of a small layer's step. But each thread then reads all of
/// W_hh at every step instead of its share: inference keeps the units split, which holds each
/// thread's share in its own L2.
pub(crate) fn split(hidden: usize, batch: usize, threads: usize, weight_bytes: usize, training: bool) -> Vec<Part> {
    let rows_pay = training && weight_bytes <= ROWS_SPLIT_MAX_WEIGHT_BYTES;
    if rows_pay && batch / threads.max(1) >= MIN_ROWS_PER_THREAD {
        let parts = threads.min(batch).max(1);
        return (0..parts)
            .map(|k| Part { units: (0, hidden), rows: (k * batch / parts, (k + 1) * batch / parts) })
            .collect();
    }
    let parts = threads.min(hidden / 16).max(1);
    (0..parts).map(|k| Part { units: (k * hidden / parts, (k + 1) * hidden / parts), rows: (0, batch) }).collect()
}

/// The largest W_hh (bytes) for which the batch rows are split between threads: each thread
/// then reads all of it at every step, from its own cache (the L2 of a Zen 4 or 5 holds 1 MiB,
/// W_hh of d2l's 256-unit LSTM).
const ROWS_SPLIT_MAX_WEIGHT_BYTES: usize = 1 << 20;

/// The barrier the threads of `parts` meet at after each step: all of them when they share rows
/// (each owns some units of every row), else none (each runs its own rows from start to end).
pub(crate) fn step_barrier(parts: &[Part]) -> SpinBarrier {
    let sharing = parts.iter().filter(|p| p.rows == parts[0].rows).count();
    SpinBarrier::new(if sharing == parts.len() { sharing } else { 1 })
}

/// Runs `work(index, part)` on every part, on candle's persistent CPU thread pool (the calling
/// thread takes part), so that no extra threads compete for the cores.
pub(crate) fn on_threads(parts: &[Part], work: impl Fn(usize, Part) + Sync) {
    if parts.len() == 1 {
        return work(0, parts[0]);
    }
    candle_core::utils::barrier_pool().execute(|tid| {
        if let Some(&part) = parts.get(tid) {
            work(tid, part);
        }
    });
}
