//! Build script. With the `cuda` feature it compiles the fused recurrence's CUDA kernels
//! (`src/fused/cuda/kernels.cu`) to PTX in OUT_DIR, which `src/fused/cuda.rs` embeds; without the
//! feature it does nothing (no CUDA toolkit needed).
//!
//! nvcc: `$NVCC`, else `nvcc` on the PATH, else `$CUDA_HOME/bin/nvcc`. Target: PTX for
//! `compute_$CUDA_COMPUTE_CAP` (default 90), which the driver compiles for the GPU it runs on
//! (the same or a newer architecture). See docs/cuda.md and scripts/setup_cuda_build.sh.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CUDA source, relative to the package root.
const KERNELS: &str = "src/fused/cuda/kernels.cu";
/// The PTX file in OUT_DIR (the name src/fused/cuda.rs includes).
const PTX: &str = "fused_recurrence.ptx";
/// Where to look when the toolkit is missing.
const HELP: &str = "see docs/cuda.md; on a machine without CUDA, `bash scripts/setup_cuda_build.sh` \
                    installs nvcc, then `source ~/.cache/seqmodels/cuda-13.0/env.sh`";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed={KERNELS}");
    for var in ["NVCC", "CUDA_HOME", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let nvcc = find_nvcc();
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".to_string());
    if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_alphanumeric()) {
        panic!("CUDA_COMPUTE_CAP={cap:?} is not a compute capability like 90 or 80 ({HELP})");
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(PTX);
    let output = Command::new(&nvcc)
        .args(["--ptx", &format!("-arch=compute_{cap}"), "-O3", "-o"])
        .arg(&out)
        .arg(KERNELS)
        .output()
        .unwrap_or_else(|e| panic!("could not run {} to compile {KERNELS}: {e} ({HELP})", nvcc.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!("{} failed on {KERNELS} ({}):\n{stderr}\n({HELP})", nvcc.display(), output.status);
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo:warning=nvcc: {line}");
    }
}

/// nvcc from `$NVCC`, the PATH or `$CUDA_HOME/bin`; panics with directions when none is found.
fn find_nvcc() -> PathBuf {
    if let Some(path) = env::var_os("NVCC") {
        return PathBuf::from(path);
    }
    let on_path = env::var_os("PATH")
        .and_then(|paths| env::split_paths(&paths).map(|dir| dir.join("nvcc")).find(|candidate| candidate.is_file()));
    if let Some(path) = on_path {
        return path;
    }
    if let Some(home) = env::var_os("CUDA_HOME") {
        let path = Path::new(&home).join("bin").join("nvcc");
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "the `cuda` feature needs nvcc to compile {KERNELS}: set NVCC, put nvcc on the PATH or set CUDA_HOME ({HELP})"
    );
}
