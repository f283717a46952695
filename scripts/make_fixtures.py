#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures under tests/fixtures/.

What it writes
  tests/fixtures/modules/<case>/{module.json, weights.safetensors, inputs.safetensors, expected.safetensors}
      for every case in CASES below: small RNN/LSTM/GRU layers and cells in eval mode, float32,
      with outputs, final states and gradients computed by PyTorch (see torch_reference.py for
      the exact semantics, which are those of `seqlm forward`).
  tests/fixtures/seed_lstm_cell/
      the seed example: nn.LSTMCell(10, 20) looped over 2 time steps of a (2, 3, 10) input.

Every case seeds torch with a value derived from its name (CRC32), so regenerating gives
byte-identical files and adding a case does not change the others.

Run (needs PyTorch, numpy and safetensors; CI does not run this):
    /work/venv/bin/python scripts/make_fixtures.py            # regenerate everything
    /work/venv/bin/python scripts/make_fixtures.py --list     # list the cases
    /work/venv/bin/python scripts/make_fixtures.py --only lstm_l1_h0 gru_l3_h0
    /work/venv/bin/python scripts/make_fixtures.py --check    # regenerate into a temp dir and
                                                              # compare bytes with the committed files
"""

import argparse
import json
import shutil
import sys
import warnings
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_reference as ref  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


def C(name, typ, input_size, hidden_size, *, seq=None, batch=3, states=False, lengths=None, **opts):
    """One case. batch=None means unbatched. For cells `seq` is unused (one step)."""
    config = {"type": typ, "input_size": input_size, "hidden_size": hidden_size}
    config.update(ref.DEFAULTS[typ])
    config.update(opts)
    unknown = set(opts) - set(ref.DEFAULTS[typ])
    assert not unknown, f"{name}: options {unknown} do not apply to {typ}"
    if lengths is not None:
        assert batch is not None and len(lengths) == batch, name
        assert all(1 <= n <= seq for n in lengths), name
    return {"name": name, "config": config, "seq": seq, "batch": batch, "states": states, "lengths": lengths}


# fmt: off
CASES = [
    # --- cells: one step; with and without initial states; bias=False; unbatched -------------
    C("rnncell_tanh_hx",             "RNNCell", 4, 5, batch=3, states=True),
    C("rnncell_tanh_nohx",           "RNNCell", 3, 6, batch=2),
    C("rnncell_relu_hx",             "RNNCell", 5, 4, batch=4, states=True, nonlinearity="relu"),
    C("rnncell_relu_unbatched_nohx", "RNNCell", 3, 5, batch=None, nonlinearity="relu"),
    C("lstmcell_hx",                 "LSTMCell", 4, 5, batch=3, states=True),
    C("lstmcell_nohx",               "LSTMCell", 6, 3, batch=2),
    C("lstmcell_nobias_hx",          "LSTMCell", 3, 4, batch=3, states=True, bias=False),
    C("grucell_hx",                  "GRUCell", 5, 6, batch=2, states=True),
    C("grucell_nohx",                "GRUCell", 2, 5, batch=4),
    C("grucell_unbatched_hx",        "GRUCell", 4, 3, batch=None, states=True),
    # --- layers: each kind with 1 and 3 layers, with and without initial states ----------------
    C("rnn_tanh_l1_h0",              "RNN", 4, 5, seq=5, batch=3, states=True),
    C("rnn_tanh_l3",                 "RNN", 3, 4, seq=4, batch=2, num_layers=3),
    C("rnn_relu_l1",                 "RNN", 5, 6, seq=6, batch=3, nonlinearity="relu"),
    C("rnn_relu_l3_h0",              "RNN", 2, 5, seq=5, batch=4, states=True, num_layers=3, nonlinearity="relu"),
    C("lstm_l1_h0",                  "LSTM", 4, 5, seq=5, batch=3, states=True),
    C("lstm_l3",                     "LSTM", 3, 4, seq=4, batch=2, num_layers=3),
    C("gru_l1",                      "GRU", 5, 3, seq=6, batch=3),
    C("gru_l3_h0",                   "GRU", 4, 6, seq=5, batch=2, states=True, num_layers=3),
    # --- bidirectional ------------------------------------------------------------------------
    C("rnn_tanh_l1_bidir_h0",        "RNN", 4, 5, seq=5, batch=3, states=True, bidirectional=True),
    C("rnn_relu_l3_bidir",           "RNN", 3, 4, seq=4, batch=2, num_layers=3, bidirectional=True, nonlinearity="relu"),
    C("lstm_l3_bidir_h0",            "LSTM", 3, 4, seq=5, batch=2, states=True, num_layers=3, bidirectional=True),
    C("gru_l3_bidir_h0",             "GRU", 5, 3, seq=4, batch=3, states=True, num_layers=3, bidirectional=True),
    # --- batch_first --------------------------------------------------------------------------
    C("rnn_tanh_l2_batchfirst",      "RNN", 3, 5, seq=6, batch=3, num_layers=2, batch_first=True),
    C("lstm_l3_bidir_batchfirst_h0", "LSTM", 4, 3, seq=4, batch=3, states=True, num_layers=3, bidirectional=True,
      batch_first=True),
    C("gru_l1_batchfirst_h0",        "GRU", 6, 4, seq=5, batch=2, states=True, batch_first=True),
    # --- LSTM proj_size -----------------------------------------------------------------------
    C("lstm_proj_l2_h0",             "LSTM", 4, 6, seq=5, batch=3, states=True, num_layers=2, proj_size=3),
    C("lstm_proj_l2_bidir_h0",       "LSTM", 3, 5, seq=4, batch=2, states=True, num_layers=2, bidirectional=True,
      proj_size=2),
    C("lstm_proj_l1",                "LSTM", 5, 7, seq=6, batch=2, proj_size=4),
    # --- bias=False ---------------------------------------------------------------------------
    C("rnn_relu_l2_nobias_h0",       "RNN", 4, 5, seq=5, batch=3, states=True, num_layers=2, nonlinearity="relu",
      bias=False),
    C("lstm_l2_bidir_nobias",        "LSTM", 3, 4, seq=4, batch=2, num_layers=2, bidirectional=True, bias=False),
    C("gru_l1_nobias_h0",            "GRU", 5, 6, seq=6, batch=3, states=True, bias=False),
    # --- unbatched ----------------------------------------------------------------------------
    C("rnn_tanh_unbatched_h0",       "RNN", 4, 5, seq=5, batch=None, states=True),
    C("lstm_l2_bidir_unbatched_h0",  "LSTM", 3, 4, seq=4, batch=None, states=True, num_layers=2, bidirectional=True),
    C("gru_l2_unbatched",            "GRU", 5, 3, seq=6, batch=None, num_layers=2),
    C("lstm_proj_unbatched_h0",      "LSTM", 2, 5, seq=4, batch=None, states=True, proj_size=2),
    # --- variable lengths (packed sequences): unsorted, some shorter than seq_len --------------
    C("rnn_tanh_lengths_h0",         "RNN", 4, 5, seq=5, batch=3, states=True, lengths=[3, 5, 1]),
    C("rnn_relu_l2_bidir_lengths",   "RNN", 3, 4, seq=6, batch=4, num_layers=2, bidirectional=True,
      nonlinearity="relu", lengths=[2, 6, 4, 6]),
    C("lstm_l1_lengths",             "LSTM", 5, 6, seq=6, batch=3, lengths=[4, 2, 5]),   # max < seq_len
    C("lstm_l2_bidir_lengths_batchfirst_h0", "LSTM", 4, 3, seq=5, batch=4, states=True, num_layers=2,
      bidirectional=True, batch_first=True, lengths=[5, 2, 3, 1]),
    C("lstm_proj_bidir_lengths_h0",  "LSTM", 3, 5, seq=4, batch=3, states=True, bidirectional=True, proj_size=3,
      lengths=[2, 4, 3]),
    C("gru_l2_lengths_h0",           "GRU", 5, 4, seq=5, batch=3, states=True, num_layers=2, lengths=[4, 5, 2]),
    C("gru_l1_bidir_lengths",        "GRU", 3, 6, seq=6, batch=2, bidirectional=True, lengths=[3, 5]),  # max < seq_len
    # --- dropout between layers: inactive in eval mode (checked equal to dropout=0) -------------
    C("lstm_l3_dropout_eval_h0",     "LSTM", 4, 5, seq=5, batch=3, states=True, num_layers=3, dropout=0.5),
    C("gru_l3_bidir_dropout_eval",   "GRU", 3, 4, seq=4, batch=2, num_layers=3, bidirectional=True, dropout=0.5),
]
# fmt: on


def case_seed(name):
    return zlib.crc32(name.encode("utf-8"))


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2) + "\n")


def make_case(case, out_root):
    name, config = case["name"], case["config"]
    torch.manual_seed(case_seed(name))
    module = ref.build_module(config).eval()
    cell = ref.is_cell(config)
    lstm = ref.has_cell_state(config)
    h_size = config["hidden_size"]
    batch = case["batch"]

    inputs = {}
    if cell:
        x_shape = (config["input_size"],) if batch is None else (batch, config["input_size"])
        inputs["input"] = torch.randn(x_shape)
        if case["states"]:
            s_shape = (h_size,) if batch is None else (batch, h_size)
            inputs["hx"] = torch.randn(s_shape)
            if lstm:
                inputs["cx"] = torch.randn(s_shape)
    else:
        seq, bf = case["seq"], config["batch_first"]
        if batch is None:
            x_shape = (seq, config["input_size"])
        else:
            x_shape = (batch, seq, config["input_size"]) if bf else (seq, batch, config["input_size"])
        inputs["input"] = torch.randn(x_shape)
        d = 2 if config["bidirectional"] else 1
        h_out = config.get("proj_size", 0) or h_size
        n_states = d * config["num_layers"]
        if case["states"]:
            lead = (n_states,) if batch is None else (n_states, batch)
            inputs["h0"] = torch.randn(lead + (h_out,))
            if lstm:
                inputs["c0"] = torch.randn(lead + (h_size,))
        if case["lengths"] is not None:
            inputs["lengths"] = torch.tensor(case["lengths"], dtype=torch.int64)

    # Upstream gradients shaped like the outputs.
    shapes = ref.run_module(module, config, inputs, want_grads=False)
    inputs.update(ref.make_grad_inputs(shapes, config))
    expected = ref.run_module(module, config, inputs, want_grads=True)

    # Sanity checks on what we are about to commit.
    for k, v in shapes.items():
        # no-grad and grad-enabled runs may take different PyTorch kernels: close, not equal
        assert torch.allclose(v, expected[k], rtol=0, atol=1e-6), f"{name}: {k} differs between runs"
    if case["lengths"] is not None:
        out = expected["output"]
        if not config["batch_first"]:
            out = out.transpose(0, 1)
        for b, n in enumerate(case["lengths"]):
            assert torch.all(out[b, n:] == 0), f"{name}: padding not zero"
    if config.get("dropout", 0) > 0:
        nodrop = dict(config, dropout=0.0)
        m2 = ref.build_module(nodrop).eval()
        m2.load_state_dict(module.state_dict(), strict=True)
        again = ref.run_module(m2, nodrop, inputs, want_grads=True)
        for k, v in expected.items():
            assert torch.equal(v, again[k]), f"{name}: eval-mode dropout changed {k}"

    case_dir = out_root / name
    case_dir.mkdir(parents=True, exist_ok=True)
    write_json(case_dir / "module.json", config)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(case_dir / "weights.safetensors"))
    save_file(inputs, str(case_dir / "inputs.safetensors"))
    save_file(expected, str(case_dir / "expected.safetensors"))


def make_seed_example(out_dir):
    """The example from PyTorch's LSTMCell documentation."""
    from torch import nn

    torch.manual_seed(0)
    rnn = nn.LSTMCell(10, 20)  # (input_size, hidden_size)
    input = torch.randn(2, 3, 10)  # (time_steps, batch, input_size)
    hx = torch.randn(3, 20)  # (batch, hidden_size)
    cx = torch.randn(3, 20)
    inputs = {"input": input.clone(), "hx": hx.clone(), "cx": cx.clone()}
    output = []
    with torch.no_grad():
        for i in range(input.size()[0]):
            hx, cx = rnn(input[i], (hx, cx))
            output.append(hx)
    output = torch.stack(output, dim=0)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "module.json", {"type": "LSTMCell", "input_size": 10, "hidden_size": 20, "bias": True})
    save_file({k: v.contiguous() for k, v in rnn.state_dict().items()}, str(out_dir / "weights.safetensors"))
    save_file(inputs, str(out_dir / "inputs.safetensors"))
    save_file({"output": output.contiguous(), "h": hx.contiguous(), "c": cx.contiguous()},
              str(out_dir / "expected.safetensors"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=FIXTURES,
                        help="fixtures root (default: tests/fixtures of this repository)")
    parser.add_argument("--only", nargs="+", metavar="CASE", help="generate only these cases (no seed example)")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.add_argument("--check", action="store_true",
                        help="regenerate everything into a temporary directory and compare it byte for byte "
                             "with --out (exit 1 on any difference); writes nothing under --out")
    args = parser.parse_args()

    names = [c["name"] for c in CASES]
    assert len(set(names)) == len(names), "duplicate case names"
    if args.list:
        print("\n".join(names))
        return 0

    torch.set_num_threads(1)  # deterministic reductions
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
    if args.check:
        import filecmp
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for case in CASES:
                make_case(case, tmp / "modules")
            make_seed_example(tmp / "seed_lstm_cell")
            fresh = {p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file()}
            old = {p.relative_to(args.out) for p in args.out.rglob("*") if p.is_file()} - {Path("README.md")}
            bad = sorted(str(p) + " (missing)" for p in fresh - old) + sorted(str(p) + " (stale)" for p in old - fresh)
            bad += sorted(str(p) for p in fresh & old if not filecmp.cmp(tmp / p, args.out / p, shallow=False))
        print("\n".join(bad) if bad else f"fixtures up to date ({len(fresh)} files)")
        return 1 if bad else 0
    modules_root = args.out / "modules"
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
        selected = [c for c in CASES if c["name"] in args.only]
    else:
        selected = CASES
        if modules_root.exists():  # drop stale cases
            shutil.rmtree(modules_root)
    for case in selected:
        make_case(case, modules_root)
        print(f"wrote {modules_root / case['name']}")
    if not args.only:
        make_seed_example(args.out / "seed_lstm_cell")
        print(f"wrote {args.out / 'seed_lstm_cell'}")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(selected)} cases; fixtures total {total / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
