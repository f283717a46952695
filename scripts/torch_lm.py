#!/usr/bin/env python3
"""The PyTorch side of `seqlm train/eval/generate`: the same language model, the same
tokenization, the same checkpoint directories.

    python scripts/torch_lm.py eval --checkpoint DIR (--text FILE | --corpus NAME) [--json]
    python scripts/torch_lm.py generate --checkpoint DIR --prefix "time traveller" [--len 50]
    python scripts/torch_lm.py train [--corpus timemachine] [--epochs 500] ... --out DIR
    python scripts/torch_lm.py make-fixtures --seqlm target/debug/seqlm --out tests/fixtures/lm

`eval` loads a checkpoint written by `seqlm train` (or by `train` here) into the PyTorch module
with strict state-dict loading and computes the perplexity exactly as `seqlm eval` does (the text
cut into --batch contiguous rows read in windows of --steps tokens, the state carried).
`train` follows d2l's recipe (the options and defaults of `seqlm train`: one-hot LSTM H=256,
batch 32, 35 steps, SGD lr 1, gradient clipping at 1, sequential partitioning, the first 10,000
tokens, validation on a held-out tail) and writes a checkpoint directory (config.json,
model.safetensors, vocab.json) that `seqlm eval` and `seqlm generate` use as their own, plus
metrics.jsonl with the same fields as seqlm's.

Needs torch, safetensors and numpy. Corpora by name are read from $SEQMODELS_DATA
(default ../shared/data beside the repository). BPE checkpoints are not supported here.
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

FORMAT = "seqlm-checkpoint"
VERSION = 1
NAMED = {"timemachine": ("timemachine.txt", "d2l"), "tinyshakespeare": ("tinyshakespeare.txt", "none")}
REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- text


def read_corpus(spec):
    """Text of a corpus name or file, as `seqlm` finds it (SEQMODELS_DATA for names)."""
    if spec in NAMED and not Path(spec).is_file():
        data = Path(os.environ.get("SEQMODELS_DATA", REPO.parent / "shared" / "data"))
        path = data / NAMED[spec][0]
    else:
        path = Path(spec)
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def default_cleaning(spec):
    return NAMED[spec][1] if spec in NAMED else "none"


def split_lines(text):
    """Lines as Python's text mode splits them (\\n, \\r\\n, \\r), terminators dropped."""
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def clean(text, cleaning):
    if cleaning == "d2l":
        return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in split_lines(text)]
    if cleaning == "d2l-v1":
        return [re.sub("[^A-Za-z]+", " ", text).lower()]
    if cleaning == "none":
        return [text]
    raise SystemExit(f"unknown cleaning {cleaning!r}: expected d2l, d2l-v1 or none")


def tokenize(lines, kind, eos):
    if kind == "char":
        return [c for line in lines for c in line]
    if kind == "word":
        out = []
        for element in lines:
            if eos is None:
                out.extend(element.split())
            else:
                for line in split_lines(element):
                    words = line.split()
                    if words:
                        out.extend(words)
                        out.append(eos)
        return out
    raise SystemExit(f"tokenizer {kind!r} is not supported by torch_lm.py (char and word are)")


class Vocab:
    """d2l's Vocab: <unk> first, then tokens by descending frequency (ties: first seen)."""

    def __init__(self, tokens, unk="<unk>"):
        self.unk_token = unk
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.unk = self.index[unk]

    @classmethod
    def build(cls, tokens):
        counts = Counter(tokens)
        first = {}
        for i, t in enumerate(tokens):
            first.setdefault(t, i)
        ordered = sorted(counts, key=lambda t: (-counts[t], first[t]))
        itos = ["<unk>"] + [t for t in ordered if t != "<unk>"]
        v = cls(itos)
        v.freqs = [[t, counts[t]] for t in ordered]
        return v

    @classmethod
    def load(cls, path):
        with open(path) as f:
            d = json.load(f)
        return cls(d["tokens"], d["unk_token"])

    def save(self, path):
        d = {"unk_token": self.unk_token, "tokens": self.tokens, "token_freqs": getattr(self, "freqs", [])}
        with open(path, "w") as f:
            json.dump(d, f)

    def encode(self, tokens):
        return [self.index.get(t, self.unk) for t in tokens]

    def decode(self, ids):
        return [self.tokens[i] if 0 <= i < len(self.tokens) else self.unk_token for i in ids]


class TextTokenizer:
    def __init__(self, spec, vocab):
        self.spec = spec
        self.vocab = vocab

    def encode(self, text, eos=True):
        lines = clean(text, self.spec["cleaning"])
        return self.vocab.encode(tokenize(lines, self.spec["kind"], self.spec.get("eos") if eos else None))

    def decode(self, ids):
        toks = self.vocab.decode(ids)
        if self.spec["kind"] == "word":
            out = ""
            for t in toks:
                if t == self.spec.get("eos"):
                    out += "\n"
                else:
                    if out and not out.endswith("\n"):
                        out += " "
                    out += t
            return out
        return "".join(toks)


# ---------------------------------------------------------------- model


class LanguageModel(nn.Module):
    """embedding (or one-hot) -> RNN/LSTM/GRU -> dropout -> linear decoder; names as seqlm's."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        v, e, r = cfg["vocab_size"], cfg.get("embed"), cfg["rnn"]
        if e is not None:
            self.embedding = nn.Embedding(v, e)
        kwargs = dict(
            input_size=r["input_size"],
            hidden_size=r["hidden_size"],
            num_layers=r["num_layers"],
            bias=r["bias"],
            batch_first=r.get("batch_first", False),
            dropout=r.get("dropout", 0.0),
            bidirectional=r.get("bidirectional", False),
        )
        if r["type"] == "RNN":
            kwargs["nonlinearity"] = r.get("nonlinearity", "tanh")
        if r["type"] == "LSTM":
            kwargs["proj_size"] = r.get("proj_size", 0)
        self.rnn = getattr(nn, r["type"])(**kwargs)
        self.drop = nn.Dropout(cfg.get("dropout", 0.0))
        d = 2 if r.get("bidirectional", False) else 1
        h_out = r.get("proj_size", 0) or r["hidden_size"]
        self.decoder = nn.Linear(d * h_out, v)
        if cfg.get("tie_weights", False):
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens, state=None):
        """tokens (N, T) -> logits (T*N, V) with time-major rows, final state."""
        x = tokens.T
        if self.cfg.get("embed") is not None:
            x = self.drop(self.embedding(x))
        else:
            x = F.one_hot(x, self.cfg["vocab_size"]).to(torch.float32)
        if self.cfg["rnn"].get("batch_first", False):
            x = x.transpose(0, 1)
        y, state = self.rnn(x, state)
        if self.cfg["rnn"].get("batch_first", False):
            y = y.transpose(0, 1)
        y = self.drop(y)
        return self.decoder(y.reshape(-1, y.shape[-1])), state


def detach(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def load_checkpoint(path):
    path = Path(path)
    for d in (path, path / "checkpoint", path / "checkpoint.prev"):
        if (d / "config.json").is_file():
            path = d
            break
    else:
        raise SystemExit(f"{path}: not a checkpoint (no config.json)")
    with open(path / "config.json") as f:
        cfg = json.load(f)
    if cfg.get("format") != FORMAT or cfg.get("version") != VERSION:
        raise SystemExit(f"{path}/config.json: expected format {FORMAT} version {VERSION}")
    spec = cfg["tokenizer"]
    if spec["kind"] == "bpe":
        raise SystemExit("BPE checkpoints are not supported by torch_lm.py")
    tok = TextTokenizer(spec, Vocab.load(path / "vocab.json"))
    model = LanguageModel(cfg["model"])
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    model.eval()
    return cfg, model, tok


def save_checkpoint(out, model, tok, producer="torch_lm.py"):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"format": FORMAT, "version": VERSION, "model": model.cfg, "tokenizer": tok.spec, "producer": producer}
    with open(out / "config.json", "w") as f:
        json.dump(cfg, f, indent=2)
    # Tied weights share memory: safetensors wants separate copies (both keys are kept).
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "model.safetensors"))
    tok.vocab.save(out / "vocab.json")


# ---------------------------------------------------------------- evaluation and generation


@torch.no_grad()
def evaluate(model, ids, batch, steps):
    """Perplexity as `seqlm eval` computes it (see crates/train/src/trainer.rs `evaluate`)."""
    was_training = model.training
    model.eval()
    m = len(ids) - 1
    if m < 1:
        raise SystemExit("the evaluation text needs at least 2 tokens")
    rows = min(batch, m)
    row_len = m // rows
    data = torch.tensor(ids, dtype=torch.long)
    state, loss_sum, count, start = None, 0.0, 0, 0
    while start < row_len:
        w = min(steps, row_len - start)
        x = torch.stack([data[r * row_len + start: r * row_len + start + w] for r in range(rows)])
        y = torch.stack([data[r * row_len + start + 1: r * row_len + start + 1 + w] for r in range(rows)])
        logits, state = model(x, state)
        loss = F.cross_entropy(logits, y.T.reshape(-1)).item()
        loss_sum += loss * rows * w
        count += rows * w
        start += w
    model.train(was_training)
    loss = loss_sum / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count}


@torch.no_grad()
def greedy(model, prefix_ids, n):
    model.eval()
    logits, state = model(torch.tensor([prefix_ids]), None)
    last = logits[-1]
    out = []
    for i in range(n):
        nxt = int(last.argmax())
        out.append(nxt)
        if i + 1 == n:
            break
        logits, state = model(torch.tensor([[nxt]]), state)
        last = logits[0]
    return out


# ---------------------------------------------------------------- training


def sequential_batches(ids, batch, steps, rng):
    """d2l's seq_data_iter_sequential."""
    offset = rng.randint(0, steps)
    num_tokens = ((len(ids) - offset - 1) // batch) * batch
    xs = torch.tensor(ids[offset: offset + num_tokens]).reshape(batch, -1)
    ys = torch.tensor(ids[offset + 1: offset + 1 + num_tokens]).reshape(batch, -1)
    for i in range(0, (xs.shape[1] // steps) * steps, steps):
        yield xs[:, i: i + steps], ys[:, i: i + steps]


def random_batches(ids, batch, steps, rng):
    """d2l's seq_data_iter_random."""
    offset = rng.randint(0, steps - 1)
    corpus = ids[offset:]
    n = (len(corpus) - 1) // steps
    starts = list(range(0, n * steps, steps))
    rng.shuffle(starts)
    for i in range(0, (n // batch) * batch, batch):
        chunk = starts[i: i + batch]
        yield (torch.tensor([corpus[s: s + steps] for s in chunk]),
               torch.tensor([corpus[s + 1: s + 1 + steps] for s in chunk]))


def clip_gradients(model, theta):
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
    if theta > 0 and norm > theta:
        for p in params:
            p.grad[:] *= theta / norm
    return float(norm)


def cmd_train(a):
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    text = read_corpus(a.corpus)
    spec = {"kind": a.tokenizer, "cleaning": a.clean or default_cleaning(a.corpus), "eos": "<eos>" if a.eos else None}
    if spec["eos"] and spec["kind"] != "word":
        raise SystemExit("--eos needs --tokenizer word")
    tokens = tokenize(clean(text, spec["cleaning"]), spec["kind"], spec["eos"])
    vocab = Vocab.build(tokens)
    tok = TextTokenizer(spec, vocab)
    ids = vocab.encode(tokens)
    n = len(ids)
    budget = n if a.max_tokens == "all" else min(int(a.max_tokens), n)
    if a.valid:
        train_ids = ids[:budget]
        with open(a.valid, encoding="utf-8") as f:
            valid_ids = tok.encode(f.read())
    elif a.val_fraction > 0:
        val_len = max(2, math.ceil(a.val_fraction * budget))
        train_ids, valid_ids = ids[: min(budget, n - val_len)], ids[n - val_len:]
    else:
        train_ids, valid_ids = ids[:budget], None
    rnn_type = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[a.model]
    cfg = {
        "vocab_size": len(vocab.tokens),
        "embed": a.embed,
        "rnn": {
            "type": rnn_type, "input_size": a.embed or len(vocab.tokens), "hidden_size": a.hidden,
            "num_layers": a.layers, "nonlinearity": a.nonlinearity, "bias": not a.no_bias, "batch_first": False,
            "dropout": a.dropout, "bidirectional": a.bidirectional, "proj_size": a.proj_size,
        },
        "dropout": a.dropout,
        "tie_weights": a.tie_weights,
    }
    model = LanguageModel(cfg)
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    elif a.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = open(out / "metrics.jsonl", "w")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(train_ids)} training tokens, "
          f"vocabulary {len(vocab.tokens)}, {sum(p.numel() for p in model.parameters())} parameters", flush=True)
    step = 0
    t_start = time.time()
    batches = sequential_batches if a.sampling == "sequential" else random_batches
    for epoch in range(1, a.epochs + 1):
        model.train()
        state, loss_sum, count = None, 0.0, 0
        t0 = time.time()
        for x, y in batches(train_ids, a.batch, a.steps, rng):
            if a.sampling == "random":
                state = None
            logits, state = model(x, state)
            loss = F.cross_entropy(logits, y.T.reshape(-1))
            opt.zero_grad()
            loss.backward()
            clip_gradients(model, a.clip)
            opt.step()
            state = detach(state)
            step += 1
            loss_sum += loss.item() * y.numel()
            count += y.numel()
        seconds = time.time() - t0
        train_loss = loss_sum / count
        m = {"epoch": epoch, "step": step, "lr": a.lr, "train_loss": train_loss, "train_ppl": math.exp(train_loss),
             "val_loss": None, "val_ppl": None, "tokens": count, "seconds": seconds, "tokens_per_s": count / seconds}
        if valid_ids is not None:
            v = evaluate(model, valid_ids, a.batch, a.steps)
            m["val_loss"], m["val_ppl"] = v["loss"], v["perplexity"]
        metrics.write(json.dumps(m) + "\n")
        metrics.flush()
        if epoch == 1 or epoch % a.log_every == 0 or epoch == a.epochs:
            val = f"  val ppl {m['val_ppl']:8.3f}" if m["val_ppl"] is not None else ""
            print(f"epoch {epoch}/{a.epochs}  train ppl {m['train_ppl']:8.3f}{val}  "
                  f"{m['tokens_per_s'] / 1e3:.1f}k tok/s  {seconds:.2f}s  (elapsed {time.time() - t_start:.0f}s)",
                  flush=True)
    save_checkpoint(out / "checkpoint", model, tok)
    model.eval()
    prefix = tok.encode(a.prefix, eos=False)
    if prefix:
        print(tok.decode(prefix + greedy(model, prefix, 50)))
    print(f"wrote {out / 'checkpoint'} and {out / 'metrics.jsonl'} ({time.time() - t_start:.0f}s)")


def cmd_eval(a):
    _, model, tok = load_checkpoint(a.checkpoint)
    text = read_corpus(a.corpus) if a.corpus else open(a.text, encoding="utf-8").read()
    ids = tok.encode(text)
    if a.max_tokens:
        ids = ids[: a.max_tokens]
    r = evaluate(model, ids, a.batch, a.steps)
    if a.json:
        print(json.dumps({"perplexity": r["perplexity"], "tokens": r["tokens"]}))
    else:
        print(f"perplexity {r['perplexity']:.6f} on {r['tokens']} tokens")


def cmd_generate(a):
    _, model, tok = load_checkpoint(a.checkpoint)
    prefix = tok.encode(a.prefix, eos=False)
    print(tok.decode(prefix + greedy(model, prefix, a.len)))


# ---------------------------------------------------------------- fixtures


def run(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def expected_for(ckpt, text_path, steps, prefix, n):
    _, model, tok = load_checkpoint(ckpt)
    ids = tok.encode(open(text_path, encoding="utf-8").read())
    r = evaluate(model, ids, 1, steps)
    p = tok.encode(prefix, eos=False)
    # The margin between the two best logits at every greedy step: a generation comparison is
    # only meaningful where no step is a near tie.
    with torch.no_grad():
        logits, state = model(torch.tensor([p]), None)
        last, margins, out = logits[-1], [], []
        for _ in range(n):
            top = torch.topk(last, 2).values
            margins.append(float(top[0] - top[1]))
            nxt = int(last.argmax())
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]]), state)
            last = logits[0]
    return {
        "torch_version": torch.__version__,
        "perplexity": r["perplexity"],
        "loss": r["loss"],
        "tokens": r["tokens"],
        "batch": 1,
        "steps": steps,
        "prefix": prefix,
        "len": n,
        "generated": tok.decode(p + out),
        "min_greedy_margin": min(margins),
    }


def cmd_make_fixtures(a):
    out = Path(a.out)
    text = out / "text.txt"
    if not text.is_file():
        raise SystemExit(f"{text} is missing: it is the committed fixture text")
    tmp = Path(tempfile.mkdtemp())
    try:
        # (a) Rust -> PyTorch: a checkpoint trained by seqlm, evaluated by PyTorch.
        run([a.seqlm, "train", "--corpus", text, "--clean", "d2l", "--tokenizer", "char", "--max-tokens", "all",
             "--hidden", "32", "--batch", "4", "--steps", "16", "--epochs", "8", "--seed", "3",
             "--sample-every", "0", "--out", tmp / "rust", "--no-progress"])
        dst = out / "rust_lstm_char"
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for f in ("config.json", "model.safetensors", "vocab.json"):
            shutil.copy(tmp / "rust" / "checkpoint" / f, dst / f)
        # (b) PyTorch -> Rust: checkpoints trained here, used by seqlm eval and generate.
        torch_runs = {
            "torch_gru_word_tied": ["--tokenizer", "word", "--eos", "--model", "gru", "--layers", "2", "--embed", "16",
                                    "--hidden", "16", "--tie-weights", "--clean", "d2l", "--steps", "8"],
            "torch_lstm_proj_char": ["--tokenizer", "char", "--model", "lstm", "--layers", "2", "--embed", "8",
                                     "--hidden", "16", "--proj-size", "8", "--tie-weights", "--clean", "none",
                                     "--steps", "16"],
            "torch_rnn_relu_bidir": ["--tokenizer", "char", "--model", "rnn", "--nonlinearity", "relu",
                                     "--bidirectional", "--hidden", "12", "--clean", "d2l", "--steps", "16"],
        }
        for name, extra in torch_runs.items():
            sys.argv = ["torch_lm.py", "train", "--corpus", str(text), "--max-tokens", "all", "--batch", "4",
                        "--epochs", "8", "--seed", "5", "--log-every", "100", "--out", str(tmp / name)] + extra
            cmd_train(parse_args(sys.argv[1:]))
            dst = out / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(tmp / name / "checkpoint", dst)
        for name in ["rust_lstm_char"] + list(torch_runs):
            prefix = "the time " if "word" not in name else "the time"
            exp = expected_for(out / name, text, 64, prefix, 30)
            with open(out / name / "expected.json", "w") as f:
                json.dump(exp, f, indent=2)
            print(name, json.dumps(exp))
    finally:
        shutil.rmtree(tmp)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train in PyTorch with seqlm's recipe and write a checkpoint directory")
    t.add_argument("--corpus", default="timemachine")
    t.add_argument("--valid")
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--tokenizer", choices=["char", "word"], default="char")
    t.add_argument("--clean", choices=["d2l", "d2l-v1", "none"])
    t.add_argument("--eos", action="store_true")
    t.add_argument("--max-tokens", default="10000")
    t.add_argument("--model", choices=["rnn", "lstm", "gru"], default="lstm")
    t.add_argument("--nonlinearity", choices=["tanh", "relu"], default="tanh")
    t.add_argument("--layers", type=int, default=1)
    t.add_argument("--hidden", type=int, default=256)
    t.add_argument("--embed", type=int)
    t.add_argument("--tie-weights", action="store_true")
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--bidirectional", action="store_true")
    t.add_argument("--proj-size", type=int, default=0)
    t.add_argument("--no-bias", action="store_true")
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--steps", type=int, default=35)
    t.add_argument("--epochs", type=int, default=500)
    t.add_argument("--lr", type=float, default=1.0)
    t.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd")
    t.add_argument("--momentum", type=float, default=0.0)
    t.add_argument("--clip", type=float, default=1.0)
    t.add_argument("--sampling", choices=["sequential", "random"], default="sequential")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--prefix", default="time traveller")
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--out", default="runs/torch-lm")

    e = sub.add_parser("eval", help="perplexity of a checkpoint on a text, as seqlm eval computes it")
    e.add_argument("--checkpoint", required=True)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--corpus")
    e.add_argument("--batch", type=int, default=1)
    e.add_argument("--steps", type=int, default=256)
    e.add_argument("--max-tokens", type=int)
    e.add_argument("--json", action="store_true")

    g = sub.add_parser("generate", help="greedy continuation of a prefix")
    g.add_argument("--checkpoint", required=True)
    g.add_argument("--prefix", required=True)
    g.add_argument("--len", type=int, default=50)

    f = sub.add_parser("make-fixtures", help="regenerate tests/fixtures/lm (needs a built seqlm)")
    f.add_argument("--seqlm", default=str(REPO / "target" / "debug" / "seqlm"))
    f.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "lm"))
    return p.parse_args(argv)


def main():
    a = parse_args(sys.argv[1:])
    {"train": cmd_train, "eval": cmd_eval, "generate": cmd_generate, "make-fixtures": cmd_make_fixtures}[a.cmd](a)


if __name__ == "__main__":
    main()
