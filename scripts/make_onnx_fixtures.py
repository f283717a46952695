#!/usr/bin/env python3
"""ONNX import fixtures: small models exported by `torch.onnx.export` and PyTorch's outputs.

    python scripts/make_onnx_fixtures.py            # rewrites tests/fixtures/onnx/
    python scripts/make_onnx_fixtures.py --list     # case names

Each case writes `<case>.onnx` (TorchScript exporter, `dynamo=False`, opset 17, constant
folding on: the exporter that writes ONNX's LSTM/GRU/RNN operators) and `<case>.safetensors`
with the inputs and PyTorch's outputs in eval mode; `cases.json` lists every case with the
configuration the importer must recover. Modules: `input` (and `h0`, `c0` when the graph takes
them) -> `output`, `h_n`, `c_n`. Language models: `tokens` (N, T) int64, optional `h0`, `c0`
-> `logits` (T*N, V) with time-major rows (seqlm's layout), `h_n`, `c_n`.
Needs torch, onnx and safetensors; each case seeds torch with the CRC32 of its name.
"""

import argparse
import json
import tempfile
import warnings
import zlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"
I, H, T, N, V, E = 3, 4, 5, 2, 7, 4

# name: (module type, constructor keyword arguments, whether the graph takes initial states)
MODULES = {
    "lstm_l1": ("LSTM", {}, False),
    "lstm_l1_nobias_h0": ("LSTM", {"bias": False}, True),
    "lstm_l2_bidir_batchfirst_h0": ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}, True),
    "lstm_l3_h0": ("LSTM", {"num_layers": 3}, True),
    "gru_l1_h0": ("GRU", {}, True),
    "gru_l2_batchfirst_h0": ("GRU", {"num_layers": 2, "batch_first": True}, True),
    "gru_l3_bidir": ("GRU", {"num_layers": 3, "bidirectional": True}, False),
    "rnn_tanh_l2_h0": ("RNN", {"num_layers": 2}, True),
    "rnn_relu_l1_bidir_batchfirst": ("RNN", {"nonlinearity": "relu", "bidirectional": True, "batch_first": True}, False),
    "rnn_relu_l2_bidir_nobias_h0": ("RNN", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True, "bias": False}, True),
}

# name: (LM config as in a seqlm checkpoint's config.json "model", whether the graph takes states,
#        whether the PyTorch model is time-major (tokens (T, N)) rather than batch-first)
LMS = {
    "lm_embed_lstm_l2_state": (
        {"vocab_size": V, "embed": E, "rnn": {"type": "LSTM", "input_size": E, "hidden_size": H, "num_layers": 2,
         "batch_first": True}}, True, False),
    "lm_embed_gru_tied_timemajor": (
        {"vocab_size": V, "embed": H, "rnn": {"type": "GRU", "input_size": H, "hidden_size": H, "num_layers": 1},
         "tie_weights": True}, False, True),
    "lm_onehot_rnn_bidir_state": (
        {"vocab_size": V, "embed": None, "rnn": {"type": "RNN", "input_size": V, "hidden_size": H, "num_layers": 1,
         "nonlinearity": "tanh", "bidirectional": True, "batch_first": True}}, True, False),
}


def full_module_json(kind, kwargs):
    """module.json with every key that applies to the type (what `seqlm import` writes)."""
    j = {"type": kind, "input_size": I, "hidden_size": H, "num_layers": 1, "bias": True, "batch_first": False,
         "dropout": 0.0, "bidirectional": False}
    if kind == "RNN":
        j["nonlinearity"] = "tanh"
    if kind == "LSTM":
        j["proj_size"] = 0
    j.update(kwargs)
    return j


class StatefulModule(nn.Module):
    """Wraps an LSTM so that h0 and c0 are two graph inputs and c_n an output."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, *state):
        if isinstance(self.rnn, nn.LSTM):
            y, (h, c) = self.rnn(x, tuple(state) if state else None)
            return y, h, c
        y, h = self.rnn(x, state[0] if state else None)
        return y, h


class TorchLm(nn.Module):
    """embedding (or one-hot) -> RNN/LSTM/GRU -> linear, as a user would write it."""

    def __init__(self, cfg, time_major):
        super().__init__()
        self.cfg, self.time_major = cfg, time_major
        r = dict(cfg["rnn"])
        kind, input_size = r.pop("type"), r.pop("input_size")
        if cfg["embed"] is not None:
            self.embedding = nn.Embedding(cfg["vocab_size"], cfg["embed"])
        self.rnn = getattr(nn, kind)(input_size, **r)
        d = 2 if r.get("bidirectional") else 1
        self.decoder = nn.Linear(d * r["hidden_size"], cfg["vocab_size"])
        if cfg.get("tie_weights"):
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens, *state):
        """tokens (N, T), or (T, N) when time-major."""
        if self.cfg["embed"] is None:
            x = F.one_hot(tokens, self.cfg["vocab_size"]).float()
        else:
            x = self.embedding(tokens)
        if isinstance(self.rnn, nn.LSTM):
            y, (h, c) = self.rnn(x, tuple(state) if state else None)
            return self.decoder(y), h, c
        y, h = self.rnn(x, state[0] if state else None)
        return self.decoder(y), h


def export(model, args, input_names, output_names, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, do_constant_folding=True,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes={n: {0: "d0", 1: "d1"} for n in input_names[:1]})


def make_module(name, kind, kwargs, with_state, out):
    torch.manual_seed(zlib.crc32(name.encode()))
    rnn = getattr(nn, kind)(I, H, **kwargs).eval()
    m = StatefulModule(rnn).eval()
    lstm = kind == "LSTM"
    d, layers = (2 if kwargs.get("bidirectional") else 1), kwargs.get("num_layers", 1)
    x = torch.randn((N, T, I) if kwargs.get("batch_first") else (T, N, I))
    state = []
    if with_state:
        state = [torch.randn(d * layers, N, H) for _ in range(2 if lstm else 1)]
    names = ["input"] + ["h0", "c0"][: len(state)]
    outputs = ["output", "h_n"] + (["c_n"] if lstm else [])
    export(m, (x, *state), names, outputs, out / f"{name}.onnx")
    with torch.no_grad():
        results = m(x, *state)
    tensors = dict(zip(names, [x, *state]))
    tensors.update(zip(outputs, results))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))
    return {"name": name, "kind": "module", "config": full_module_json(kind, kwargs)}


def make_lm(name, cfg, with_state, time_major, out):
    torch.manual_seed(zlib.crc32(name.encode()))
    m = TorchLm(cfg, time_major).eval()
    r = cfg["rnn"]
    lstm = r["type"] == "LSTM"
    d = 2 if r.get("bidirectional") else 1
    tokens = torch.randint(0, cfg["vocab_size"], (N, T))
    state = [torch.randn(d * r["num_layers"], N, H) for _ in range(2 if lstm else 1)] if with_state else []
    graph_tokens = tokens.T.contiguous() if time_major else tokens
    names = ["tokens"] + ["h0", "c0"][: len(state)]
    outputs = ["logits", "h_n"] + (["c_n"] if lstm else [])
    export(m, (graph_tokens, *state), names, outputs, out / f"{name}.onnx")
    with torch.no_grad():
        logits, *final = m(graph_tokens, *state)
    if not time_major:
        logits = logits.transpose(0, 1)
    tensors = {"tokens": tokens, "logits": logits.reshape(T * N, cfg["vocab_size"])}
    tensors.update(zip(names[1:], state))
    tensors.update(zip(outputs[1:], final))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))
    full = {"vocab_size": cfg["vocab_size"], "embed": cfg["embed"], "dropout": 0.0,
            "tie_weights": cfg.get("tie_weights", False),
            "rnn": {"bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False, "proj_size": 0,
                    "nonlinearity": "tanh", **r}}
    return {"name": name, "kind": "language_model", "config": full}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.list:
        print("\n".join([*MODULES, *LMS]))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    cases = [make_module(n, *spec, args.out) for n, spec in MODULES.items()]
    cases += [make_lm(n, *spec, args.out) for n, spec in LMS.items()]
    with open(args.out / "cases.json", "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
