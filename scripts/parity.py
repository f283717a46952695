#!/usr/bin/env python3
"""Compare `seqlm forward` (the Rust side) with PyTorch on the same module, weights and inputs.

Single comparison:
    python scripts/parity.py --config module.json --weights sd.safetensors --inputs in.safetensors \
        [--train] [--seqlm PATH] [--tol-out 1e-5] [--tol-grad 1e-4] [--keep DIR] \
        [--device cpu|cuda[:N]] [--impl auto|fused|composed]
  e.g. on a committed fixture:
    d=tests/fixtures/modules/lstm_l3_bidir_h0
    /work/venv/bin/python scripts/parity.py --config $d/module.json --weights $d/weights.safetensors \
        --inputs $d/inputs.safetensors

  Builds the module in PyTorch from module.json (omitted keys take PyTorch's defaults), loads
  the weights with strict=True, runs it on the inputs (with `lengths`: pack_padded_sequence with
  enforce_sorted=False -> module -> pad_packed_sequence(total_length=seq_len); gradients of
  sum(output*grad_output) + sum(h_n*grad_h_n) + sum(c_n*grad_c_n) when any grad_* input is present),
  then runs
      seqlm forward --config .. --weights .. --inputs .. --out <tmp>/out.safetensors [--train]
  and prints one line per tensor: name, shape, max abs error, tolerance, OK/FAIL.  A tensor
  missing on either side, a shape or dtype mismatch, or an error beyond tolerance is a FAIL;
  the exit status is 1 if anything failed.  The dtype follows `input`: float32 uses --tol-out /
  --tol-grad (defaults 1e-5 / 1e-4), float64 uses 1e-10 / 1e-9 unless given.
  With --train, dropout > 0 and num_layers > 1 the dropout masks cannot match: only shapes are compared.

Random trials (configurations nobody tuned for):
    python scripts/parity.py --random 20 [--seed S] [--keep DIR] [--verbose]
  Each trial picks a type among the six, random sizes and options, lets the Rust side create
  the weights with `seqlm init --config module.json --out sd.safetensors --seed K`, loads them
  into PyTorch with strict=True (a FAIL if `init` is missing or PyTorch rejects the file), and
  then compares as above.  Ends with `N passed, M failed`.

Self-check without the Rust binary:
    python scripts/parity.py --torch-only ...   (either mode)
  uses scripts/torch_manual.py, an independent step-by-step PyTorch implementation with the
  same command-line interface as seqlm, in place of the binary.

The seqlm binary defaults to target/release/seqlm if it exists, else target/debug/seqlm, relative
to the repository root (the parent of this script's directory).  Needs torch, numpy, safetensors.
"""

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
import torch_reference as ref  # noqa: E402

F64_TOL_OUT, F64_TOL_GRAD = 1e-10, 1e-9


# --------------------------------------------------------------------------------------------
# The "other side": the Rust binary, or the manual PyTorch stand-in.
# --------------------------------------------------------------------------------------------

def default_seqlm():
    release = REPO / "target" / "release" / "seqlm"
    return release if release.exists() else REPO / "target" / "debug" / "seqlm"


class Backend:
    def __init__(self, seqlm=None, torch_only=False, timeout=600, forward_args=()):
        self.torch_only = torch_only
        self.seqlm = Path(seqlm) if seqlm else default_seqlm()
        # Extra `seqlm forward` options: --device and --impl (the GPU check runs our side on CUDA).
        self.forward_args = list(forward_args)
        self.timeout = timeout

    def describe(self):
        return "scripts/torch_manual.py (--torch-only)" if self.torch_only else str(self.seqlm)

    def _cmd(self, args):
        if self.torch_only:
            return [sys.executable, str(SCRIPTS / "torch_manual.py")] + args
        return [str(self.seqlm)] + args

    def run(self, args):
        """Run a subcommand; return (ok, message)."""
        if not self.torch_only and not self.seqlm.exists():
            return False, f"seqlm binary not found at {self.seqlm} (build it with cargo build, or pass --seqlm)"
        cmd = self._cmd([str(a) for a in args])
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return False, f"timed out after {self.timeout}s: {' '.join(cmd)}"
        except OSError as e:
            return False, f"cannot run {cmd[0]}: {e}"
        if p.returncode != 0:
            msg = (p.stderr.strip() or p.stdout.strip() or "(no output)").splitlines()
            return False, f"`{' '.join(cmd)}` exited with {p.returncode}: " + " | ".join(msg[-6:])
        return True, ""

    def forward(self, config_path, weights_path, inputs_path, out_path, train):
        args = ["forward", "--config", config_path, "--weights", weights_path, "--inputs", inputs_path,
                "--out", out_path]
        if train:
            args.append("--train")
        if not self.torch_only:
            args += self.forward_args
        return self.run(args)

    def init(self, config_path, out_path, seed):
        return self.run(["init", "--config", config_path, "--out", out_path, "--seed", seed])


# --------------------------------------------------------------------------------------------
# PyTorch side and comparison
# --------------------------------------------------------------------------------------------

def torch_reference(config, state_dict, inputs, train):
    """Build, load (strict) and run the PyTorch module. Raises on any PyTorch complaint."""
    x = inputs.get("input")
    if x is None:
        raise ValueError("inputs lack the tensor `input`")
    if not x.is_floating_point():
        raise ValueError(f"`input` must be float32 or float64, got {x.dtype}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "dropout with num_layers=1", "projections with oneDNN"
        module = ref.build_module(config)
        module.to(x.dtype)
        module.load_state_dict(state_dict, strict=True)
        module.train(train)
        return ref.run_module(module, config, inputs)


def _fmt_shape(t):
    return "(" + ",".join(str(s) for s in t.shape) + ")"


def _key_order(name):
    main = ["output", "h_n", "c_n", "h", "c"]
    if name in main:
        return (0, main.index(name), name)
    if name.startswith("grad."):
        rest = name[5:]
        inp = ["input", "h0", "c0", "hx", "cx"]
        return (1, inp.index(rest), name) if rest in inp else (2, 0, name)
    return (3, 0, name)


def compare(expected, got, tol_out, tol_grad, shapes_only=False):
    """Return (lines, n_fail). expected/got: name -> tensor."""
    lines, n_fail = [], 0
    width = max([len(k) for k in list(expected) + list(got)] + [10])
    for name in sorted(set(expected) | set(got), key=_key_order):
        tol = tol_grad if name.startswith("grad.") else tol_out
        e, g = expected.get(name), got.get(name)
        if e is None:
            status, shape, err, note = "FAIL", _fmt_shape(g), "-", "unexpected: not produced by PyTorch"
        elif g is None:
            status, shape, err, note = "FAIL", _fmt_shape(e), "-", "missing in seqlm output"
        elif tuple(e.shape) != tuple(g.shape):
            status, shape, err, note = "FAIL", _fmt_shape(e), "-", f"shape mismatch: seqlm {_fmt_shape(g)}"
        elif e.dtype != g.dtype:
            status, shape, err = "FAIL", _fmt_shape(e), "-"
            note = f"dtype mismatch: PyTorch {e.dtype}, seqlm {g.dtype}"
        elif shapes_only:
            status, shape, err, note = "OK", _fmt_shape(e), "-", "shape only (dropout masks differ)"
        else:
            diff = (e.double() - g.double()).abs()
            m = diff.max().item() if diff.numel() else 0.0
            nan_mismatch = bool((torch.isnan(e) != torch.isnan(g)).any())
            if diff.numel() and torch.isnan(diff).any() and not nan_mismatch:
                m = (diff[~torch.isnan(diff)].max().item() if (~torch.isnan(diff)).any() else 0.0)
            ok = (not nan_mismatch) and (not math.isnan(m)) and m <= tol
            status, shape, err = ("OK" if ok else "FAIL"), _fmt_shape(e), f"{m:.3e}"
            note = "NaN pattern differs" if nan_mismatch else ""
        if status == "FAIL":
            n_fail += 1
        lines.append(f"  {name:<{width}} {shape:<14} err {err:>9}  tol {tol:.0e}  {status}" + (f"  {note}" if note else ""))
    return lines, n_fail


def tolerances(dtype, tol_out, tol_grad):
    if dtype == torch.float64:
        return (F64_TOL_OUT if tol_out is None else tol_out), (F64_TOL_GRAD if tol_grad is None else tol_grad)
    return (1e-5 if tol_out is None else tol_out), (1e-4 if tol_grad is None else tol_grad)


def dropout_masks_differ(config, train):
    cfg, _ = ref.full_config(config)
    return train and not ref.is_cell(cfg) and cfg["dropout"] > 0 and cfg["num_layers"] > 1


def check_files(config_path, weights_path, inputs_path, backend, train, tol_out, tol_grad, workdir):
    """Run both sides on files; return (lines, n_fail)."""
    config = json.loads(Path(config_path).read_text())
    inputs = load_file(str(inputs_path))
    state_dict = load_file(str(weights_path))
    lines = []
    try:
        expected = torch_reference(config, state_dict, inputs, train)
    except Exception as e:
        return [f"  PyTorch     FAIL  {type(e).__name__}: {e}"], 1
    shapes_only = dropout_masks_differ(config, train)
    if shapes_only:
        lines.append("  warning: --train with dropout > 0 and num_layers > 1: random dropout masks cannot "
                     "match, comparing shapes only")
    out_path = Path(workdir) / "out.safetensors"
    ok, msg = backend.forward(config_path, weights_path, inputs_path, out_path, train)
    if not ok:
        return lines + [f"  seqlm forward FAIL  {msg}"], 1
    try:
        got = load_file(str(out_path))
    except Exception as e:
        return lines + [f"  seqlm forward FAIL  cannot read {out_path}: {e}"], 1
    save_file(expected, str(Path(workdir) / "expected_torch.safetensors"))
    t_out, t_grad = tolerances(inputs["input"].dtype, tol_out, tol_grad)
    cl, n_fail = compare(expected, got, t_out, t_grad, shapes_only)
    return lines + cl, n_fail


# --------------------------------------------------------------------------------------------
# Random trials
# --------------------------------------------------------------------------------------------

def random_trial(rng, trial_seed, f32_only=False):
    """Pick a random module config and input spec. Returns (config written to module.json, spec).

    With `f32_only`, f64 draws become f32 (the fused CUDA kernels are f32 only)."""
    typ = rng.choice(ref.ALL_TYPES)
    cell = typ in ref.CELL_TYPES
    hidden = rng.randint(1, 24)
    full = {"type": typ, "input_size": rng.randint(1, 16), "hidden_size": hidden, "bias": rng.random() < 0.75}
    if typ in ("RNN", "RNNCell"):
        full["nonlinearity"] = rng.choice(["tanh", "relu"])
    if not cell:
        full.update(num_layers=rng.randint(1, 4), batch_first=rng.random() < 0.4,
                    bidirectional=rng.random() < 0.5,
                    dropout=rng.choice([0.0, 0.0, 0.25, 0.5]))
        if typ == "LSTM":
            full["proj_size"] = rng.randint(1, hidden - 1) if hidden > 1 and rng.random() < 0.4 else 0
    # As a new user would: sometimes leave keys out (then PyTorch's default applies).
    config = {"type": typ, "input_size": full["input_size"], "hidden_size": hidden}
    for k, v in full.items():
        if k not in config and (v != ref.DEFAULTS[typ][k] or rng.random() < 0.7):
            config[k] = v
    unbatched = rng.random() < 0.2
    spec = {
        "seq": rng.randint(1, 12),
        "batch": None if unbatched else rng.randint(1, 6),
        "states": rng.random() < 0.5,
        "lengths": (not cell) and (not unbatched) and rng.random() < 0.35,
        "dtype": torch.float64 if rng.random() < 0.3 and not f32_only else torch.float32,
        "grads": rng.choice(["all", "all", "all", "output_only", "states_only"]),
        "init_seed": rng.randint(0, 2**31 - 1),
        "data_seed": trial_seed,
    }
    return config, spec


def make_inputs(config, spec):
    cfg, _ = ref.full_config(config)
    g = torch.Generator().manual_seed(spec["data_seed"])
    dt = spec["dtype"]
    H = cfg["hidden_size"]
    lstm = ref.has_cell_state(cfg)
    B = spec["batch"]
    lead = () if B is None else (B,)
    inputs = {}
    if ref.is_cell(cfg):
        inputs["input"] = torch.randn(lead + (cfg["input_size"],), generator=g, dtype=dt)
        if spec["states"]:
            inputs["hx"] = torch.randn(lead + (H,), generator=g, dtype=dt)
            if lstm:
                inputs["cx"] = torch.randn(lead + (H,), generator=g, dtype=dt)
    else:
        L = spec["seq"]
        if B is None:
            shape = (L, cfg["input_size"])
        else:
            shape = (B, L, cfg["input_size"]) if cfg["batch_first"] else (L, B, cfg["input_size"])
        inputs["input"] = torch.randn(shape, generator=g, dtype=dt)
        n = (2 if cfg["bidirectional"] else 1) * cfg["num_layers"]
        h_out = cfg.get("proj_size", 0) or H
        if spec["states"]:
            inputs["h0"] = torch.randn((n,) + lead + (h_out,), generator=g, dtype=dt)
            if lstm:
                inputs["c0"] = torch.randn((n,) + lead + (H,), generator=g, dtype=dt)
        if spec["lengths"]:
            inputs["lengths"] = torch.randint(1, L + 1, (B,), generator=g, dtype=torch.int64)
    return inputs


def add_grad_inputs(config, spec, inputs, state_dict):
    """Random upstream gradients shaped like the outputs (found by a no-grad PyTorch run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = ref.build_module(config).to(spec["dtype"])
        module.load_state_dict(state_dict, strict=True)
        module.eval()
        shapes = ref.run_module(module, config, inputs, want_grads=False)
    g = torch.Generator().manual_seed(spec["data_seed"] + 1)
    grads = ref.make_grad_inputs(shapes, config, generator=g)
    if spec["grads"] == "output_only" and "grad_output" in grads:
        grads = {"grad_output": grads["grad_output"]}
    elif spec["grads"] == "states_only" and "grad_output" in grads:
        del grads["grad_output"]
    inputs.update(grads)


def init_range_problems(config, state_dict):
    """PyTorch's default init: every tensor ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
    bound = 1.0 / math.sqrt(ref.full_config(config)[0]["hidden_size"])
    bad = []
    for k, v in state_dict.items():
        if v.numel() == 0:
            continue
        m = v.double().abs().max().item()
        if m > bound * (1 + 1e-6):
            bad.append(f"{k} max |w| {m:.4f} > {bound:.4f}")
        elif v.numel() >= 64 and m < 0.5 * bound:
            bad.append(f"{k} max |w| {m:.4f} suspiciously below bound {bound:.4f}")
    return bad


def describe(config, spec):
    cfg, _ = ref.full_config(config)
    parts = [cfg["type"], f"in={cfg['input_size']}", f"hid={cfg['hidden_size']}"]
    if not ref.is_cell(cfg):
        parts.append(f"layers={cfg['num_layers']}")
        for k in ("bidirectional", "batch_first"):
            if cfg[k]:
                parts.append(k)
        if cfg["dropout"]:
            parts.append(f"dropout={cfg['dropout']}")
        if cfg.get("proj_size"):
            parts.append(f"proj={cfg['proj_size']}")
        parts.append(f"seq={spec['seq']}")
    if cfg.get("nonlinearity", "tanh") != "tanh":
        parts.append(cfg["nonlinearity"])
    if not cfg["bias"]:
        parts.append("no-bias")
    parts.append("unbatched" if spec["batch"] is None else f"batch={spec['batch']}")
    if spec["lengths"]:
        parts.append("lengths")
    if spec["states"]:
        parts.append("init-states")
    if spec["grads"] != "all":
        parts.append(f"grads={spec['grads']}")
    parts.append("f64" if spec["dtype"] == torch.float64 else "f32")
    return " ".join(parts)


def run_random(args, backend):
    rng = random.Random(args.seed)
    keep = Path(args.keep) if args.keep else None
    passed = failed = 0
    for i in range(args.random):
        f32_only = args.device != "cpu" and args.impl == "fused"
        config, spec = random_trial(rng, trial_seed=rng.randint(0, 2**31 - 1), f32_only=f32_only)
        tmp = tempfile.mkdtemp(prefix=f"parity_{i:03d}_")
        work = Path(tmp)
        lines, n_fail = [], 0
        try:
            cfg_path, w_path, in_path = work / "module.json", work / "sd.safetensors", work / "in.safetensors"
            cfg_path.write_text(json.dumps(config, indent=2) + "\n")
            ok, msg = backend.init(cfg_path, w_path, spec["init_seed"])
            state_dict = None
            if not ok:
                lines.append(f"  seqlm init  FAIL  {msg}")
                n_fail += 1
            else:
                try:
                    state_dict = load_file(str(w_path))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ref.build_module(config).load_state_dict(state_dict, strict=True)
                except Exception as e:
                    lines.append(f"  seqlm init  FAIL  PyTorch rejects the weights: {type(e).__name__}: "
                                 + str(e).replace("\n", " ")[:600])
                    n_fail += 1
                    state_dict = None
                else:
                    for p in init_range_problems(config, state_dict):
                        lines.append(f"  seqlm init  FAIL  not PyTorch's default init: {p}")
                        n_fail += 1
            if state_dict is not None:
                inputs = make_inputs(config, spec)
                add_grad_inputs(config, spec, inputs, state_dict)
                save_file(inputs, str(in_path))
                cl, nf = check_files(cfg_path, w_path, in_path, backend, args.train, args.tol_out, args.tol_grad, work)
                lines += cl
                n_fail += nf
        except Exception as e:
            lines.append(f"  harness     FAIL  {type(e).__name__}: {e}")
            n_fail += 1
        status = "OK" if n_fail == 0 else "FAIL"
        print(f"trial {i:3d}: {status:4}  {describe(config, spec)}")
        if n_fail or args.verbose:
            print("\n".join(lines))
        if keep is not None:
            dest = keep / f"trial_{i:03d}"
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(work, dest)
            if n_fail:
                print(f"  files kept in {dest}")
        shutil.rmtree(work, ignore_errors=True)
        passed += n_fail == 0
        failed += n_fail != 0
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def run_single(args, backend):
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="parity_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        lines, n_fail = check_files(args.config, args.weights, args.inputs, backend, args.train,
                                    args.tol_out, args.tol_grad, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"parity: {args.config}  (other side: {backend.describe()})")
    print("\n".join(lines))
    print("FAILED" if n_fail else "all OK" + (f" (files in {work})" if args.keep else ""))
    return 1 if n_fail else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="module.json (PyTorch constructor arguments)")
    parser.add_argument("--weights", type=Path, help="state dict saved with safetensors.torch.save_file")
    parser.add_argument("--inputs", type=Path, help="inputs.safetensors: input, h0/c0 (hx/cx), lengths, grad_*")
    parser.add_argument("--train", action="store_true", help="training mode on both sides (dropout active)")
    parser.add_argument("--seqlm", type=Path, help="path of the seqlm binary "
                        "(default: target/release/seqlm if it exists, else target/debug/seqlm)")
    parser.add_argument("--tol-out", type=float, default=None,
                        help="max abs error for outputs and states (default 1e-5 for float32, 1e-10 for float64)")
    parser.add_argument("--tol-grad", type=float, default=None,
                        help="max abs error for gradients (default 1e-4 for float32, 1e-9 for float64)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the files (seqlm's out.safetensors, PyTorch's expected_torch.safetensors; "
                             "in random mode every trial's inputs too) in DIR")
    parser.add_argument("--random", type=int, metavar="N", help="run N random trials instead of one comparison")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random trials (default 0)")
    parser.add_argument("--verbose", "-v", action="store_true", help="random mode: print every tensor line, "
                        "not only those of failing trials")
    parser.add_argument("--torch-only", action="store_true",
                        help="self-check: use scripts/torch_manual.py (a step-by-step PyTorch implementation "
                             "with seqlm's command line) instead of the Rust binary")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per seqlm call (default 600)")
    parser.add_argument("--device", default="cpu", help="where seqlm runs: cpu, cuda or cuda:N (PyTorch, the "
                        "reference, stays on the CPU); default cpu")
    parser.add_argument("--impl", choices=["auto", "fused", "composed"], default="auto",
                        help="seqlm's recurrence implementation (seqlm forward --impl); default auto")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    backend = Backend(args.seqlm, args.torch_only, args.timeout, ["--device", args.device, "--impl", args.impl])
    if args.random is not None:
        if args.config or args.weights or args.inputs:
            parser.error("--random does not take --config/--weights/--inputs")
        if args.random < 1:
            parser.error("--random needs N >= 1")
        return run_random(args, backend)
    missing = [f"--{k}" for k in ("config", "weights", "inputs") if getattr(args, k) is None]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or use --random N)")
    return run_single(args, backend)


if __name__ == "__main__":
    sys.exit(main())
