#!/usr/bin/env python3
"""PyTorch side of the language-model benchmark: the same contract as `seqlm bench`.

    python scripts/bench_torch.py --arch lstm|gru|rnn --vocab V --embed E --hidden H --layers L \
        --batch B --steps T --iters N [--warmup 3] [--seed 0] [--lr 1.0] [--threads N] [--device cpu|cuda[:N]] \
        [--precision f32|bf16|int8] [--lengths full|random] [--skip-training] [--json]

Model (identical to seqmodels_train::model::LanguageModel): nn.Embedding(V, E) -> nn.LSTM / nn.GRU /
nn.RNN(tanh) (L layers, hidden H, time-major input (T, B, E)) -> nn.Linear(H, V) on the (T*B, H) outputs
-> nn.CrossEntropyLoss against the (T*B,) time-major labels.  `--embed 0` feeds one-hot vectors of
size V instead of an embedding (as d2l does).  Parameters keep PyTorch's default initialisation
(seeded with --seed); the initial state is zeros in every iteration.

Tokens: `warmup + iters` random batches, drawn before timing from a generator seeded with --seed:
each row is T+1 uniform tokens, inputs its first T and labels its last T.

Lengths (--lengths): full (every sequence T steps) or random: each of the B sequences gets the length
lo + splitmix64() % (T - lo + 1), lo = ceil(T/4), from a SplitMix64 seeded with --seed (the generator
of crates/train/src/bench_lengths.rs, so `seqlm bench` draws the same lengths), sorted in decreasing
order; one draw serves every iteration.  Then the embedded batch goes through
nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=True) (time-major) into the recurrent
layers, the decoder runs on the packed output's .data (the valid tokens only) and the loss compares
with the labels packed the same way (pack_padded_sequence(labels, lengths).data), both packings inside
the timed iteration.  --lengths random runs in f32 only (exit status 2 with --precision bf16 or int8,
which `seqlm bench` refuses too).

Timed:
  * training (always f32; none with --skip-training, which leaves the initial weights): `--warmup`
    untimed iterations, then `--iters` timed ones, each zero_grad(set_to_none=True), forward, loss,
    backward, torch.optim.SGD(lr).step();
  * inference: the --precision model (below) in eval mode under torch.no_grad(), `--warmup` untimed
    then `--iters` timed forwards to the logits (no loss).
Each iteration is timed on its own with time.perf_counter(); the figures use the median:
tokens/s = tokens_per_iter / median seconds, tokens_per_iter = batch * steps, or the sum of the lengths.

Precision (inference only; built from the weights after training, or the initial ones with
--skip-training):
  * f32: the model itself.
  * bf16: a copy with every parameter cast by model.to(torch.bfloat16) (embedding, recurrent layers,
    decoder; the one-hot input is bf16 too); activations and logits are bf16.
  * int8: torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.GRU, nn.Linear}, dtype=torch.qint8),
    which converts an eval copy (default_dynamic_qconfig: weights qint8 per-tensor symmetric,
    activations quantized per call to quint8, int32 accumulation, float outputs; CPU only).
    What becomes int8, per arch:
      lstm: nn.LSTM (all layers) and the decoder nn.Linear;
      gru:  nn.GRU (all layers) and the decoder nn.Linear;
      rnn:  the decoder nn.Linear only (dynamic quantization has no nn.RNN module: the layers stay f32).
    The embedding stays f32 in every arch.  Logits come out f32.
For bf16 and int8 the inference model runs one untimed check forward when built, and is first
built from the initial weights before training too, so that an unsupported combination (int8 off
the CPU, a dtype a kernel lacks) fails at once: exit status 2 and one line on stderr naming the
precision, arch and device.

Threads: PyTorch's default (intra-op threads = physical cores; honours OMP_NUM_THREADS /
MKL_NUM_THREADS), or torch.set_num_threads(--threads).  The value used is reported as "threads".

Output: one JSON line with --json, else a readable line.  Fields:
  arch, impl ("torch"), device, precision, lengths ("full" or "random"), tokens_per_iter, train_tokens_per_s, infer_tokens_per_s, threads,
  train_ms_median, infer_ms_median, train_gflops_per_s, infer_gflops_per_s (nominal, the same count
  at every precision: see flops_per_token), loss (the last training loss, to spot a diverging run),
  config echo (vocab, embed, hidden, layers, batch, steps, iters, warmup, seed, lr), torch (version),
  blas (the BLAS torch was built with).  With --skip-training the train_* fields and loss are null.
"""

import argparse
import copy
import json
import re
import statistics
import sys
import time
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, found {value}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, found {value}")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="PyTorch language-model training and inference throughput (same contract as `seqlm bench`).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--arch", choices=["lstm", "gru", "rnn"], default="lstm", help="recurrent layer (rnn: tanh)")
    p.add_argument("--vocab", type=positive_int, default=28, help="vocabulary size V")
    p.add_argument("--embed", type=non_negative_int, default=28, help="embedding size E (0: one-hot input of size V)")
    p.add_argument("--hidden", type=positive_int, default=256, help="hidden size H")
    p.add_argument("--layers", type=positive_int, default=1, help="number of recurrent layers L")
    p.add_argument("--batch", type=positive_int, default=32, help="sequences per batch B")
    p.add_argument("--steps", type=positive_int, default=35, help="time steps per sequence T")
    p.add_argument("--iters", type=positive_int, default=20, help="timed iterations (training, then inference)")
    p.add_argument("--warmup", type=non_negative_int, default=3, help="untimed iterations before each timed phase")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameters and the random tokens")
    p.add_argument("--lr", type=float, default=1.0, help="SGD learning rate")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch.set_num_threads(N); default: PyTorch's own choice (physical cores)")
    p.add_argument("--impl", choices=["auto", "fused", "composed"], default="auto",
                   help="accepted for the shared command line; ignored (PyTorch picks its own kernels)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N (on CUDA the layers run cuDNN, PyTorch's default there)")
    p.add_argument("--precision", choices=["f32", "bf16", "int8"], default="f32",
                   help="inference precision (training is always f32): bf16 weights and activations, "
                        "or int8 dynamic quantization (CPU only)")
    p.add_argument("--lengths", choices=["full", "random"], default="full",
                   help="sequence lengths: all T steps, or drawn from --seed in [ceil(T/4), T] (f32 only)")
    p.add_argument("--skip-training", action="store_true",
                   help="no training phase (train fields null): inference runs on the initial weights")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a readable line")
    return p.parse_args(argv)


class LanguageModel(nn.Module):
    """Embedding (or one-hot) -> recurrent layers -> linear decoder, time-major logits (T*B, V)."""

    def __init__(self, arch, vocab, embed, hidden, layers):
        super().__init__()
        self.vocab = vocab
        self.input_dtype = torch.float32  # of the one-hot input; bf16 in the bf16 inference copy
        self.embedding = nn.Embedding(vocab, embed) if embed > 0 else None
        layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[arch]
        self.rnn = layer(embed if embed > 0 else vocab, hidden, num_layers=layers)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens, lengths=None):
        """tokens: (B, T) int64; lengths: None, or a CPU int64 tensor of B lengths in decreasing order.

        Returns the time-major logits (T*B, V), or with lengths those of the valid tokens only, in
        packed order (sum(lengths), V).
        """
        time_major = tokens.t()
        if self.embedding is not None:
            x = self.embedding(time_major)
        else:
            x = nn.functional.one_hot(time_major, self.vocab).to(self.input_dtype)
        if lengths is not None:
            y, _ = self.rnn(pack_padded_sequence(x, lengths, enforce_sorted=True))
            return self.decoder(y.data)
        y, _ = self.rnn(x)
        return self.decoder(y.reshape(-1, y.shape[-1]))


class SplitMix64:
    """Vigna's SplitMix64, as crates/train/src/bench_lengths.rs: all arithmetic modulo 2^64.

    From seed 0 the first outputs are 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f.
    """

    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = seed & self.MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)


def random_lengths(batch, steps, seed):
    """`batch` lengths lo + next() % (steps - lo + 1), lo = ceil(steps / 4), in decreasing order.

    The same values as `random_lengths` in crates/train/src/bench_lengths.rs (its test asserts them too):
      random_lengths(8, 35, 0) == [32, 31, 21, 19, 17, 16, 16, 9]
      random_lengths(3, 4, 5) == [4, 3, 1]
    """
    lo = (steps + 3) // 4
    rng = SplitMix64(seed)
    return sorted((lo + rng.next() % (steps - lo + 1) for _ in range(batch)), reverse=True)


def check_random_lengths():
    """The fixed values of random_lengths's docstring (cheap; run before every --lengths random bench)."""
    assert SplitMix64(0).next() == 0xE220A8397B1DCDAF
    assert random_lengths(8, 35, 0) == [32, 31, 21, 19, 17, 16, 16, 9]
    assert random_lengths(3, 4, 5) == [4, 3, 1]


def flops_per_token(arch, vocab, embed, hidden, layers):
    """Nominal multiply-add FLOPs per token of one forward pass: the recurrent GEMMs and the decoder.

    Gates G = 4 (LSTM), 3 (GRU), 1 (RNN); layer l has input size E (l = 0; V with one-hot input) or H.
    forward = sum_l 2*G*H*(I_l + H) + 2*H*V; training is counted as 3x forward (backward: 2x).
    Must match `flops_per_token` in crates/train/src/throughput.rs.
    """
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[arch]
    total = 0
    for layer in range(layers):
        inp = (embed if embed > 0 else vocab) if layer == 0 else hidden
        total += 2 * gates * hidden * (inp + hidden)
    return total + 2 * hidden * vocab


def median_ms(samples):
    return statistics.median(samples) * 1e3


# The module types torch.ao.quantization.quantize_dynamic converts to int8 here: those of the
# model that its default dynamic mapping covers (it has no nn.RNN, only nn.RNNCell).
INT8_MODULES = {nn.LSTM, nn.GRU, nn.Linear}


def unsupported(args, reason):
    """Exit with status 2 and one line naming the precision, arch and device."""
    print(f"bench_torch.py: precision {args.precision} is not supported for arch {args.arch} "
          f"on device {args.device}: {reason}", file=sys.stderr)
    sys.exit(2)


def inference_model(model, precision):
    """The model the inference phase runs at `precision` (see the module docstring), in eval mode."""
    if precision == "f32":
        return model.eval()
    if precision == "bf16":
        cast = copy.deepcopy(model).to(torch.bfloat16)
        cast.input_dtype = torch.bfloat16
        return cast.eval()
    with warnings.catch_warnings():
        # torch.ao.quantization and quantized tensors are deprecated (torchao replaces them).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, INT8_MODULES, dtype=torch.qint8)


def checked_inference_model(model, args, inputs):
    """inference_model, run once on `inputs` (bf16, int8); exits 2 when the combination is unsupported."""
    infer_model = inference_model(model, args.precision)
    if args.precision != "f32":
        try:
            with torch.no_grad():
                infer_model(inputs)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, NotImplementedError) as error:
            first = str(error).strip().splitlines()
            unsupported(args, first[0] if first else type(error).__name__)
    return infer_model


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if args.precision == "int8" and device.type != "cpu":
        unsupported(args, "dynamic quantization runs on the CPU only")
    if args.lengths == "random" and args.precision != "f32":
        print(f"bench_torch.py: --lengths random runs in f32 only (as seqlm bench), found --precision {args.precision}",
              file=sys.stderr)
        sys.exit(2)
    lengths = None  # full: every sequence has all T steps
    if args.lengths == "random":
        check_random_lengths()
        lengths = torch.tensor(random_lengths(args.batch, args.steps, args.seed), dtype=torch.int64)
    model = LanguageModel(args.arch, args.vocab, args.embed, args.hidden, args.layers).to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    gen = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(args.warmup + args.iters):
        seq = torch.randint(0, args.vocab, (args.batch, args.steps + 1), generator=gen)
        inputs = seq[:, :-1].contiguous()
        labels = seq[:, 1:].t().reshape(-1).contiguous()  # time-major, as the logits
        batches.append((inputs.to(device), labels.to(device)))

    def sync():
        # GPU work is asynchronous: an iteration ends when the device is done.
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def train_step(inputs, labels):
        optimizer.zero_grad(set_to_none=True)
        if lengths is not None:
            labels = pack_padded_sequence(labels.view(args.steps, args.batch), lengths, enforce_sorted=True).data
        loss = loss_fn(model(inputs, lengths), labels)
        loss.backward()
        optimizer.step()
        return loss

    train_s = []
    final_loss = None
    if args.skip_training:
        infer_model = checked_inference_model(model, args, batches[0][0])
    else:
        if args.precision != "f32":
            # Fail before training when the precision is unsupported here; the copy is discarded.
            checked_inference_model(model, args, batches[0][0])
        model.train()
        for i, (inputs, labels) in enumerate(batches):
            start = time.perf_counter()
            loss = train_step(inputs, labels)
            sync()
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                train_s.append(elapsed)
        final_loss = float(loss.item())
        optimizer.zero_grad(set_to_none=True)  # no gradients in the inference copies
        infer_model = checked_inference_model(model, args, batches[0][0])

    infer_s = []
    with torch.no_grad():
        for i, (inputs, _) in enumerate(batches):
            start = time.perf_counter()
            infer_model(inputs, lengths)
            sync()
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                infer_s.append(elapsed)

    tokens = args.batch * args.steps if lengths is None else int(lengths.sum())
    fpt = flops_per_token(args.arch, args.vocab, args.embed, args.hidden, args.layers)
    train_med = statistics.median(train_s) if train_s else None
    infer_med = statistics.median(infer_s)
    report = {
        "arch": args.arch,
        "impl": "torch",
        "device": args.device,
        "precision": args.precision,
        "lengths": args.lengths,
        "tokens_per_iter": tokens,
        "train_tokens_per_s": tokens / train_med if train_s else None,
        "infer_tokens_per_s": tokens / infer_med,
        "threads": torch.get_num_threads(),
        "train_ms_median": train_med * 1e3 if train_s else None,
        "infer_ms_median": infer_med * 1e3,
        "train_gflops_per_s": 3 * fpt * tokens / train_med / 1e9 if train_s else None,
        "infer_gflops_per_s": fpt * tokens / infer_med / 1e9,
        "loss": final_loss,
        "vocab": args.vocab,
        "embed": args.embed,
        "hidden": args.hidden,
        "layers": args.layers,
        "batch": args.batch,
        "steps": args.steps,
        "iters": args.iters,
        "warmup": args.warmup,
        "seed": args.seed,
        "lr": args.lr,
        "torch": torch.__version__,
        "blas": blas_name(),
    }
    if args.json:
        print(json.dumps(report))
    else:
        if train_s:
            train = (f"train {report['train_tokens_per_s']:.0f} tokens/s ({report['train_ms_median']:.2f} ms/iter, "
                     f"{report['train_gflops_per_s']:.1f} GFLOP/s, loss {final_loss:.4f})")
        else:
            train = "train skipped"
        print(
            f"torch {args.arch} ({args.lengths} lengths, {tokens} tokens/iter): {train}, "
            f"infer ({args.precision}) {report['infer_tokens_per_s']:.0f} tokens/s "
            f"({report['infer_ms_median']:.2f} ms/iter, {report['infer_gflops_per_s']:.1f} GFLOP/s), "
            f"{report['threads']} threads"
        )


def blas_name():
    """The BLAS PyTorch was built with, from torch.__config__.show() (e.g. "mkl")."""
    found = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return found.group(1) if found else "unknown"

if __name__ == "__main__":
    main()
