//! Speed of one recurrent layer, forward + backward, fused against composed.
//!
//! `cargo run --release -p seqmodels --example layer_speed -- [lstm|gru|rnn] [T N I H] [iters]`
//! prints the median milliseconds per training iteration (forward, backward) and per
//! inference forward, for the fused kernels and the composed path (`ONLY_FUSED=1`: fused only).

use std::time::Instant;

// Large per-iteration buffers: a caching allocator avoids fresh pages (and their faults) each time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use seqmodels::{CellKind, ForwardOptions, Implementation, RnnBase, RnnConfig};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = match args.first().map(String::as_str).unwrap_or("lstm") {
        "gru" => CellKind::Gru,
        "rnn" => CellKind::RnnTanh,
        _ => CellKind::Lstm,
    };
    let num = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (t, n, i, h, iters) = (num(1, 35), num(2, 32), num(3, 28), num(4, 256), num(5, 30));
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let base = RnnBase::new(RnnConfig::new(kind, i, h), vb)?;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (t, n, i), &Device::Cpu)?)?;
    let only_fused = std::env::var("ONLY_FUSED").is_ok();
    for imp in [Implementation::Fused, Implementation::Composed] {
        if only_fused && imp == Implementation::Composed {
            continue;
        }
        let layer = base.clone().with_implementation(imp);
        let (mut train, mut infer) = (Vec::new(), Vec::new());
        for k in 0..iters + 3 {
            let start = Instant::now();
            let out = layer.forward(x.as_tensor(), None, ForwardOptions::training())?;
            let _grads = out.output.sum_all()?.backward()?;
            let train_ms = start.elapsed().as_secs_f64() * 1e3;
            let start = Instant::now();
            let _ = layer.forward(&x.as_tensor().detach(), None, ForwardOptions::default())?;
            let infer_ms = start.elapsed().as_secs_f64() * 1e3;
            if k >= 3 {
                train.push(train_ms);
                infer.push(infer_ms);
            }
        }
        println!(
            "{kind:?} {imp:?} T={t} N={n} I={i} H={h}: train {:.3} ms/iter ({:.0} tok/s), infer {:.3} ms ({:.0} tok/s)",
            median(train.clone()),
            (t * n) as f64 / median(train) * 1e3,
            median(infer.clone()),
            (t * n) as f64 / median(infer) * 1e3
        );
    }
    Ok(())
}
