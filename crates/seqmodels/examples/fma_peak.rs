//! The machine's f32 multiply-add peak: every thread runs independent chains of fused
//! multiply-adds (`x = x * m + a`) in vector registers, with enough chains to hide the FMA
//! latency on both pipes of current x86 cores, and nothing else (no memory traffic). The widest
//! instruction set the CPU reports at run time is used: AVX-512F (16 lanes), else AVX2 + FMA (8
//! lanes), else plain `x * m + a` on f32 (which the compiler may vectorise with SSE). One FMA
//! counts 2 FLOPs per lane, as the nominal GFLOP/s of `seqlm bench` count a multiply-add.
//!
//! Threads: `--threads N`, else candle's thread count (`RAYON_NUM_THREADS`, else the physical
//! cores this process may use), as `seqlm bench`. The best of 5 timed rounds of about 0.25 s
//! each is reported, as one JSON line:
//! `{"gflops": 123.4, "simd": "avx512"|"avx2"|"scalar", "threads": 2}`.
//!
//! `cargo run --release -p seqmodels --example fma_peak [-- --threads N]`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Independent accumulators per thread: at least latency (4-5 cycles) x FMA pipes (2).
const CHAINS: usize = 12;
/// Timed rounds; the best one is reported.
const ROUNDS: usize = 5;
/// Target duration of one round, seconds.
const ROUND_SECONDS: f64 = 0.25;

/// The instruction set the chains run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    Avx512,
    Avx2,
    Scalar,
}

impl Simd {
    /// The widest one this CPU supports.
    fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Simd::Avx2;
            }
        }
        Simd::Scalar
    }

    fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512",
            Simd::Avx2 => "avx2",
            Simd::Scalar => "scalar",
        }
    }

    /// f32 lanes per chain.
    fn lanes(self) -> usize {
        match self {
            Simd::Avx512 => 16,
            Simd::Avx2 => 8,
            Simd::Scalar => 1,
        }
    }

    /// Runs `iters` steps of every chain; returns a value that depends on all of them.
    fn run(self, iters: u64) -> f32 {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` chose Avx512 only after is_x86_feature_detected!("avx512f").
            Simd::Avx512 => unsafe { x86::chains_avx512(iters) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` chose Avx2 only after detecting both avx2 and fma.
            Simd::Avx2 => unsafe { x86::chains_avx2(iters) },
            _ => chains_scalar(iters),
        }
    }
}

/// The chains on plain f32 (2 FLOPs per step of each chain).
fn chains_scalar(iters: u64) -> f32 {
    let (m, a) = (black_box(0.999_999_f32), black_box(1e-7_f32));
    let mut acc = [1.0_f32; CHAINS];
    for _ in 0..iters {
        for x in &mut acc {
            *x = *x * m + a;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::CHAINS;

    /// The chains in AVX-512 registers (16 lanes each); callers must have detected AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) fn chains_avx512(iters: u64) -> f32 {
        let (m, a) = (_mm512_set1_ps(std::hint::black_box(0.999_999)), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(*x, m, a);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x)))
    }

    /// The chains in AVX registers (8 lanes each); callers must have detected AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn chains_avx2(iters: u64) -> f32 {
        let (m, a) = (_mm256_set1_ps(std::hint::black_box(0.999_999)), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm256_fmadd_ps(*x, m, a);
            }
        }
        let sum = acc.iter().fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        let four = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps::<1>(two, two)))
    }
}

/// Seconds for `threads` threads to run `iters` steps each, started together: from the first
/// thread's start to the last one's end, as each thread reads the clock itself (the spawning
/// thread may be descheduled at any point while they run).
fn timed_round(simd: Simd, threads: usize, iters: u64) -> f64 {
    let start_line = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let start_line = Arc::clone(&start_line);
            std::thread::spawn(move || {
                start_line.wait();
                let start = Instant::now();
                black_box(simd.run(black_box(iters)));
                (start, Instant::now())
            })
        })
        .collect();
    let spans: Vec<(Instant, Instant)> =
        workers.into_iter().map(|w| w.join().expect("an FMA thread panicked")).collect();
    let first = spans.iter().map(|s| s.0).min().expect("at least one thread");
    let last = spans.iter().map(|s| s.1).max().expect("at least one thread");
    (last - first).as_secs_f64()
}

/// `--threads N` from the command line, else candle's thread count.
fn threads_from_args() -> Result<usize, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(candle_core::utils::get_num_threads()),
        [flag, n] if flag == "--threads" => match n.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("--threads: expected an integer >= 1, found '{n}'")),
        },
        _ => Err(format!("usage: fma_peak [--threads N], found {args:?}")),
    }
}

fn main() {
    let threads = match threads_from_args() {
        Ok(n) => n,
        Err(message) => {
            eprintln!("fma_peak: {message}");
            std::process::exit(2);
        }
    };
    let simd = Simd::detect();
    // Calibrate the steps per round on one short run (a few milliseconds at the peak).
    let probe = 1_000_000_u64;
    let secs = timed_round(simd, threads, probe).max(1e-6);
    let iters = ((probe as f64) * ROUND_SECONDS / secs).clamp(probe as f64, 1e3 * probe as f64) as u64;
    let best = (0..ROUNDS).map(|_| timed_round(simd, threads, iters)).fold(f64::INFINITY, f64::min);
    let flops = 2.0 * (threads * CHAINS * simd.lanes()) as f64 * iters as f64;
    println!("{{\"gflops\": {:.1}, \"simd\": \"{}\", \"threads\": {threads}}}", flops / best / 1e9, simd.name());
}
