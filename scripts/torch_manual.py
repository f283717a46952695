"""A step-by-step re-implementation of PyTorch's recurrent modules, written from the equations.

Used only by `parity.py --torch-only`, as a stand-in for the Rust binary (`seqlm forward` /
`seqlm init`), so that parity.py can be exercised end to end without the Rust side; because
it does not call nn.RNN/nn.LSTM/nn.GRU, a pass also checks that the semantics written in
docs/reference.md (gate order, GRU's r * (h W_hn^T + b_hn), projection, layer-major state
order, per-sequence lengths, reverse direction starting at each sequence's last valid step)
really are PyTorch's.

    python scripts/torch_manual.py forward --config module.json --weights sd.safetensors \
        --inputs in.safetensors --out out.safetensors [--train] [--seed S]
    python scripts/torch_manual.py init --config module.json --out sd.safetensors --seed K
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_reference as ref  # noqa: E402


def _step(kind, nonlinearity, x, h, c, p, sfx):
    """One time step. p: parameter dict; sfx: name suffix ('' for cells, '_l0', '_l1_reverse', ...)."""
    gi = x @ p["weight_ih" + sfx].t()
    gh = h @ p["weight_hh" + sfx].t()
    if ("bias_ih" + sfx) in p:
        gi = gi + p["bias_ih" + sfx]
        gh = gh + p["bias_hh" + sfx]
    if kind == "RNN":
        a = gi + gh
        return (torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)), None
    if kind == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        if ("weight_hr" + sfx) in p:
            h_new = h_new @ p["weight_hr" + sfx].t()
        return h_new, c_new
    # GRU
    ir, iz, in_ = gi.chunk(3, dim=-1)
    hr, hz, hn = gh.chunk(3, dim=-1)
    r = torch.sigmoid(ir + hr)
    z = torch.sigmoid(iz + hz)
    n = torch.tanh(in_ + r * hn)
    return (1 - z) * n + z * h, None


def manual_forward(config, state_dict, inputs, train=False, seed=0):
    cfg, _ = ref.full_config(config)
    x = inputs["input"]
    if not x.is_floating_point():
        raise ValueError(f"input must be a float tensor, got {x.dtype}")
    dtype = x.dtype
    want_grads = any(k.startswith("grad_") for k in inputs)
    params = {k: v.to(dtype).clone().requires_grad_(want_grads) for k, v in state_dict.items()}
    cell = ref.is_cell(cfg)
    kind = cfg["type"].replace("Cell", "")
    lstm = kind == "LSTM"
    nonlin = cfg.get("nonlinearity", "tanh")
    H = cfg["hidden_size"]
    names = ref.CELL_NAMES if cell else ref.LAYER_NAMES
    x = x.clone().requires_grad_(want_grads)
    leaves = {"input": x}
    h0 = inputs.get(names["h_in"])
    c0 = inputs.get(names["c_in"])
    if h0 is not None:
        h0 = h0.to(dtype).clone().requires_grad_(want_grads)
        leaves[names["h_in"]] = h0
    if c0 is not None:
        c0 = c0.to(dtype).clone().requires_grad_(want_grads)
        leaves[names["c_in"]] = c0
    res = {}
    with torch.set_grad_enabled(want_grads):
        if cell:
            unbatched = x.dim() == 1
            xb = x.unsqueeze(0) if unbatched else x
            hb = xb.new_zeros(xb.shape[0], H) if h0 is None else (h0.unsqueeze(0) if unbatched else h0)
            cb = None
            if lstm:
                cb = xb.new_zeros(xb.shape[0], H) if c0 is None else (c0.unsqueeze(0) if unbatched else c0)
            h, c = _step(kind, nonlin, xb, hb, cb, params, "")
            res["h"] = h.squeeze(0) if unbatched else h
            if lstm:
                res["c"] = c.squeeze(0) if unbatched else c
        else:
            gen = torch.Generator().manual_seed(seed)
            unbatched = x.dim() == 2
            xs = x.unsqueeze(1) if unbatched else (x.transpose(0, 1) if cfg["batch_first"] else x)  # (L, N, F)
            L, N = xs.shape[0], xs.shape[1]
            D = 2 if cfg["bidirectional"] else 1
            nl = cfg["num_layers"]
            h_out = cfg.get("proj_size", 0) or H
            lengths = inputs.get("lengths")
            lengths = torch.full((N,), L, dtype=torch.int64) if lengths is None else lengths.to(torch.int64)
            mask = (torch.arange(L).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)  # (L, N, 1)
            if h0 is None:
                hs0 = xs.new_zeros(D * nl, N, h_out)
            else:
                hs0 = h0.unsqueeze(1) if unbatched else h0
            cs0 = None
            if lstm:
                cs0 = xs.new_zeros(D * nl, N, H) if c0 is None else (c0.unsqueeze(1) if unbatched else c0)
            layer_in = xs
            hn, cn = [], []
            for k in range(nl):
                outs = []
                for d in range(D):
                    sfx = f"_l{k}" + ("_reverse" if d else "")
                    h = hs0[k * D + d]
                    c = cs0[k * D + d] if lstm else None
                    ys = [None] * L
                    for t in (range(L) if d == 0 else reversed(range(L))):
                        h_new, c_new = _step(kind, nonlin, layer_in[t], h, c, params, sfx)
                        m = mask[t]
                        h = torch.where(m, h_new, h)
                        if lstm:
                            c = torch.where(m, c_new, c)
                        ys[t] = torch.where(m, h_new, torch.zeros_like(h_new))
                    outs.append(torch.stack(ys))
                    hn.append(h)
                    if lstm:
                        cn.append(c)
                layer_in = torch.cat(outs, dim=-1)
                if train and cfg["dropout"] > 0 and k < nl - 1:
                    keep = (torch.rand(layer_in.shape, generator=gen, dtype=dtype) >= cfg["dropout"]).to(dtype)
                    layer_in = layer_in * keep / (1 - cfg["dropout"])
            out = layer_in
            out = out.squeeze(1) if unbatched else (out.transpose(0, 1) if cfg["batch_first"] else out)
            res["output"] = out
            res["h_n"] = torch.stack(hn).squeeze(1) if unbatched else torch.stack(hn)
            if lstm:
                res["c_n"] = torch.stack(cn).squeeze(1) if unbatched else torch.stack(cn)

        if want_grads:
            loss = x.new_zeros(())
            for out_name, g_name in [("output", names.get("g_out")), (names["h_out"], names["g_h"]),
                                     (names["c_out"], names["g_c"])]:
                if g_name in inputs and out_name in res:
                    loss = loss + (res[out_name] * inputs[g_name].to(dtype)).sum()
            targets = list(leaves.items()) + list(params.items())
            grads = torch.autograd.grad(loss, [t for _, t in targets], allow_unused=True)
            for (name, t), g in zip(targets, grads):
                res[f"grad.{name}"] = torch.zeros_like(t) if g is None else g
    return {k: v.detach().contiguous() for k, v in res.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    fw = sub.add_parser("forward", help="run a module on inputs, write outputs and gradients")
    fw.add_argument("--config", required=True, type=Path)
    fw.add_argument("--weights", required=True, type=Path)
    fw.add_argument("--inputs", required=True, type=Path)
    fw.add_argument("--out", required=True, type=Path)
    fw.add_argument("--train", action="store_true")
    fw.add_argument("--seed", type=int, default=0)
    it = sub.add_parser("init", help="write PyTorch-default-initialised weights")
    it.add_argument("--config", required=True, type=Path)
    it.add_argument("--out", required=True, type=Path)
    it.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text())
    try:
        if args.cmd == "init":
            torch.manual_seed(args.seed)
            module = ref.build_module(config)
            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(args.out))
        else:
            res = manual_forward(config, load_file(str(args.weights)), load_file(str(args.inputs)),
                                 train=args.train, seed=args.seed)
            save_file(res, str(args.out))
    except Exception as e:  # mimic a CLI: message, non-zero exit
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
