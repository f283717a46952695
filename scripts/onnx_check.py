#!/usr/bin/env python3
"""ONNX export and import against onnxruntime and PyTorch, on random configurations.

    python scripts/onnx_check.py [--random 20] [--seed 1] [--seqlm PATH] [--keep DIR]

Four checks per trial, each on a configuration drawn at random (kind, nonlinearity, 1-3 layers,
bidirectional, batch_first, bias, embedding or one-hot, tied weights, sizes, initial states,
sequence lengths):

1. module export: `seqlm init` weights -> `seqlm export --config --weights [--lengths]` -> the
   graph in onnxruntime; `output`, `h_n`, `c_n` against `seqlm forward` on the same inputs.
2. language-model export: a random checkpoint (scripts/torch_lm.py's model) -> `seqlm export
   --checkpoint` -> onnxruntime; logits and states against the PyTorch model, and the
   perplexity of a text computed from onnxruntime's logits against `seqlm eval --json`.
3. module import: a random `nn.LSTM`/`nn.GRU`/`nn.RNN` -> `torch.onnx.export` -> `seqlm import`
   -> `seqlm forward` with the written module.json and weights, against PyTorch's outputs.
4. language-model import: scripts/torch_lm.py's model -> `torch.onnx.export` -> `seqlm import
   --vocab` -> `seqlm eval --json`, against the perplexity PyTorch computes.

Outputs and states must agree within 1e-5 (absolute), perplexities within 1e-5 (relative).
Ends with `N passed, M failed`; exit status 1 if anything failed. `torch.onnx.export` runs with
`dynamo=False` (the TorchScript exporter, which writes ONNX's LSTM/GRU/RNN operators).
Needs torch, onnx, onnxruntime, safetensors and numpy; the seqlm binary defaults to
target/release/seqlm if it exists, else target/debug/seqlm.
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

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
import torch_lm  # noqa: E402

TOL = 1e-5
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def default_seqlm():
    release = REPO / "target" / "release" / "seqlm"
    return release if release.exists() else REPO / "target" / "debug" / "seqlm"


class Checker:
    def __init__(self, seqlm, work):
        self.seqlm, self.work = str(seqlm), Path(work)
        self.passed, self.failed = 0, 0

    def run(self, *args):
        p = subprocess.run([self.seqlm, *map(str, args)], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"seqlm {' '.join(map(str, args))}: {p.stderr.strip()}")
        return p.stdout

    def close(self, what, name, a, b):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            return [f"{name}: shape {a.shape} vs {b.shape}"]
        err = float(np.abs(a - b).max()) if a.size else 0.0
        return [] if err <= TOL else [f"{name}: max abs error {err:.2e}"]

    def report(self, what, problems):
        if problems:
            self.failed += 1
            print(f"FAIL {what}: {'; '.join(problems)}")
        else:
            self.passed += 1
            print(f"ok   {what}")


def random_module(rng):
    kind = rng.choice(["LSTM", "GRU", "RNN"])
    j = {"type": kind, "input_size": rng.randint(1, 6), "hidden_size": rng.randint(1, 6),
         "num_layers": rng.randint(1, 3), "bias": rng.random() < 0.7, "batch_first": rng.random() < 0.5,
         "bidirectional": rng.random() < 0.5}
    if kind == "RNN":
        j["nonlinearity"] = rng.choice(["tanh", "relu"])
    return j


def describe(j):
    keys = ["num_layers", "bidirectional", "batch_first", "bias", "nonlinearity", "embed", "tie_weights"]
    return j["type"] + "(" + ", ".join(f"{k}={j[k]}" for k in keys if k in j) + ")"


def module_inputs(j, rng, lengths):
    d = 2 if j["bidirectional"] else 1
    t, n = rng.randint(1, 6), rng.randint(1, 4)
    x = torch.randn((n, t, j["input_size"]) if j["batch_first"] else (t, n, j["input_size"]))
    inputs = {"input": x, "h0": torch.randn(d * j["num_layers"], n, j["hidden_size"])}
    if j["type"] == "LSTM":
        inputs["c0"] = torch.randn(d * j["num_layers"], n, j["hidden_size"])
    if lengths:
        inputs["lengths"] = torch.tensor([rng.randint(1, t) for _ in range(n)], dtype=torch.int64)
    return inputs


def check_module_export(c, rng, k):
    j = random_module(rng)
    lengths = rng.random() < 0.5
    d = c.work / f"export_module_{k}"
    d.mkdir()
    (d / "module.json").write_text(json.dumps(j))
    c.run("init", "--config", d / "module.json", "--out", d / "w.safetensors", "--seed", k)
    c.run("export", "--config", d / "module.json", "--weights", d / "w.safetensors", "--onnx", d / "m.onnx",
          *(["--lengths"] if lengths else []))
    inputs = module_inputs(j, rng, lengths)
    save_file(inputs, str(d / "in.safetensors"))
    c.run("forward", "--config", d / "module.json", "--weights", d / "w.safetensors", "--inputs",
          d / "in.safetensors", "--out", d / "out.safetensors")
    ours = load_file(str(d / "out.safetensors"))
    feed = {k2: v.numpy() for k2, v in inputs.items() if k2 != "lengths"}
    if lengths:
        feed["sequence_lens"] = inputs["lengths"].numpy().astype(np.int32)
    sess = ort.InferenceSession(str(d / "m.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feed)))
    problems = []
    for name in names:
        problems += c.close("", name, got[name], ours[name].numpy())
    c.report(f"export module  {describe(j)}{' lengths' if lengths else ''}: onnxruntime vs seqlm forward", problems)


def random_lm(rng):
    r = random_module(rng)
    vocab = rng.randint(3, 12)
    embed = rng.choice([None, rng.randint(1, 6)])
    d = 2 if r["bidirectional"] else 1
    tie = embed is not None and rng.random() < 0.5
    if tie:
        embed = d * r["hidden_size"]
    r["input_size"] = embed or vocab
    r.update({"dropout": 0.0, "proj_size": 0})
    return {"vocab_size": vocab, "embed": embed, "rnn": r, "dropout": 0.0, "tie_weights": tie}


def char_tokenizer(vocab_size):
    return torch_lm.TextTokenizer({"kind": "char", "cleaning": "none", "eos": None},
                                  torch_lm.Vocab(["<unk>", *LETTERS[: vocab_size - 1]]))


def perplexity(logits, targets):
    return math.exp(F.cross_entropy(torch.from_numpy(logits), targets).item())


def check_lm_export(c, rng, k):
    cfg = random_lm(rng)
    d = c.work / f"export_lm_{k}"
    model = torch_lm.LanguageModel(cfg).eval()
    tok = char_tokenizer(cfg["vocab_size"])
    torch_lm.save_checkpoint(d, model, tok)
    c.run("export", "--checkpoint", d, "--onnx", d / "lm.onnx")
    sess = ort.InferenceSession(str(d / "lm.onnx"), providers=["CPUExecutionProvider"])
    r = cfg["rnn"]
    layers = (2 if r["bidirectional"] else 1) * r["num_layers"]
    n, t = rng.randint(1, 3), rng.randint(1, 6)
    tokens = torch.randint(0, cfg["vocab_size"], (n, t))
    state = [torch.randn(layers, n, r["hidden_size"]) for _ in range(2 if r["type"] == "LSTM" else 1)]
    feed = {"tokens": tokens.numpy(), "h0": state[0].numpy()}
    if len(state) == 2:
        feed["c0"] = state[1].numpy()
    got = sess.run(None, feed)
    with torch.no_grad():
        logits, final = model(tokens, tuple(state) if len(state) == 2 else state[0])
    final = list(final) if isinstance(final, tuple) else [final]
    problems = c.close("", "logits", got[0], logits.numpy())
    for name, a, b in zip(["h_n", "c_n"], got[1:], final):
        problems += c.close("", name, a, b.numpy())
    # Perplexity of a text: onnxruntime's logits (one row, zero state) against seqlm eval.
    text = "".join(rng.choice(LETTERS[: cfg["vocab_size"] - 1]) for _ in range(rng.randint(3, 40)))
    (d / "text.txt").write_text(text)
    ids = torch.tensor(tok.encode(text))
    zero = np.zeros((layers, 1, r["hidden_size"]), dtype=np.float32)
    feed = {"tokens": ids[None, :-1].numpy(), "h0": zero}
    if r["type"] == "LSTM":
        feed["c0"] = zero
    ppl_ort = perplexity(sess.run(None, feed)[0], ids[1:])
    ppl_seqlm = json.loads(c.run("eval", "--checkpoint", d, "--text", d / "text.txt", "--json"))["perplexity"]
    if abs(ppl_ort - ppl_seqlm) > TOL * ppl_seqlm:
        problems.append(f"perplexity {ppl_ort} (onnxruntime) vs {ppl_seqlm} (seqlm eval)")
    c.report(f"export lm      vocab={cfg['vocab_size']} embed={cfg['embed']} tie={cfg['tie_weights']} "
             f"{describe(r)}: onnxruntime vs PyTorch and seqlm eval", problems)


def torch_export(model, args, input_names, output_names, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, input_names=input_names,
                          output_names=output_names)


class WithState(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, *state):
        if isinstance(self.rnn, nn.LSTM):
            y, (h, c) = self.rnn(x, tuple(state) if state else None)
            return y, h, c
        y, h = self.rnn(x, state[0] if state else None)
        return y, h


def check_module_import(c, rng, k):
    j = random_module(rng)
    d = c.work / f"import_module_{k}"
    d.mkdir()
    kwargs = {key: v for key, v in j.items() if key != "type"}
    module = WithState(getattr(nn, j["type"])(**kwargs)).eval()
    inputs = module_inputs(j, rng, False)
    with_state = rng.random() < 0.5
    state_names = ["h0", "c0"][: 2 if j["type"] == "LSTM" else 1] if with_state else []
    args = (inputs["input"], *[inputs[s] for s in state_names])
    outputs = ["output", "h_n", "c_n"][: 3 if j["type"] == "LSTM" else 2]
    torch_export(module, args, ["input", *state_names], outputs, d / "m.onnx")
    c.run("import", "--onnx", d / "m.onnx", "--out", d / "imported")
    feed = {"input": inputs["input"], **{s: inputs[s] for s in state_names}}
    save_file(feed, str(d / "in.safetensors"))
    c.run("forward", "--config", d / "imported" / "module.json", "--weights", d / "imported" / "model.safetensors",
          "--inputs", d / "in.safetensors", "--out", d / "out.safetensors")
    ours = load_file(str(d / "out.safetensors"))
    with torch.no_grad():
        expected = dict(zip(outputs, module(*args)))
    problems = []
    written = json.loads((d / "imported" / "module.json").read_text())
    for key, v in j.items():
        if written.get(key) != v:
            problems.append(f"module.json {key}: {written.get(key)} vs {v}")
    for name in outputs:
        problems += c.close("", name, ours[name].numpy(), expected[name].numpy())
    c.report(f"import module  {describe(j)}{' with h0' if with_state else ''}: seqlm forward vs PyTorch", problems)


def check_lm_import(c, rng, k):
    cfg = random_lm(rng)
    d = c.work / f"import_lm_{k}"
    d.mkdir()
    model = torch_lm.LanguageModel(cfg).eval()
    tok = char_tokenizer(cfg["vocab_size"])
    tok.vocab.save(d / "vocab.json")
    tokens = torch.randint(0, cfg["vocab_size"], (2, 4))
    torch_export(model, (tokens,), ["tokens"], ["logits"], d / "lm.onnx")
    c.run("import", "--onnx", d / "lm.onnx", "--vocab", d / "vocab.json", "--clean", "none", "--out", d / "ckpt")
    text = "".join(rng.choice(LETTERS[: cfg["vocab_size"] - 1]) for _ in range(rng.randint(3, 40)))
    (d / "text.txt").write_text(text)
    ppl_seqlm = json.loads(c.run("eval", "--checkpoint", d / "ckpt", "--text", d / "text.txt", "--json"))["perplexity"]
    ppl_torch = torch_lm.evaluate(model, tok.encode(text), 1, 256)["perplexity"]
    problems = []
    if abs(ppl_torch - ppl_seqlm) > TOL * ppl_torch:
        problems.append(f"perplexity {ppl_seqlm} (seqlm eval) vs {ppl_torch} (PyTorch)")
    c.report(f"import lm      vocab={cfg['vocab_size']} embed={cfg['embed']} tie={cfg['tie_weights']} "
             f"{describe(cfg['rnn'])}: seqlm eval vs PyTorch", problems)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random", type=int, default=20, help="trials of each of the four checks")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seqlm", type=Path, default=default_seqlm())
    ap.add_argument("--keep", type=Path, help="keep the files of every trial in this directory")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="onnx_check_"))
    work.mkdir(parents=True, exist_ok=True)
    c = Checker(args.seqlm, work)
    for k in range(args.random):
        for check in (check_module_export, check_lm_export, check_module_import, check_lm_import):
            try:
                check(c, rng, k)
            except Exception as e:  # a crash is a failure of that trial, the others still run
                c.failed += 1
                print(f"FAIL {check.__name__} trial {k}: {e}")
    if not args.keep:
        shutil.rmtree(work)
    print(f"{c.passed} passed, {c.failed} failed")
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()
