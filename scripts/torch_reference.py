"""PyTorch reference runner shared by make_fixtures.py and parity.py.

Not a script of its own: it holds the single definition of how a module described by
`module.json` is built in PyTorch and how it is run on an `inputs.safetensors` dictionary,
so that the committed fixtures and the parity tool cannot drift apart.

Semantics (the contract with `seqlm forward`, see the README and ../shared/docs/reference.md):
- module.json holds PyTorch constructor arguments; omitted keys take PyTorch's defaults.
- Inputs: `input`; optional `h0`, `c0` (cells: `hx`, `cx`); optional `lengths` (int64, one per
  batch element, 1..=seq_len); optional `grad_output`, `grad_h_n`, `grad_c_n` (cells: `grad_h`, `grad_c`).
- With `lengths` the input is packed with `pack_padded_sequence(..., enforce_sorted=False)`, run,
  and unpacked with `pad_packed_sequence(..., total_length=seq_len)`.
- Outputs: `output`, `h_n`, `c_n` (cells: `h`, `c`).  When any grad_* tensor is present, the loss
  sum(output*grad_output) + sum(h_n*grad_h_n) + sum(c_n*grad_c_n) is back-propagated and the
  gradients `grad.input`, `grad.h0`, `grad.c0` (cells `grad.hx`, `grad.cx`; only for given states)
  and `grad.<parameter name>` for every parameter are added.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

LAYER_TYPES = ("RNN", "LSTM", "GRU")
CELL_TYPES = ("RNNCell", "LSTMCell", "GRUCell")
ALL_TYPES = LAYER_TYPES + CELL_TYPES

# Constructor keys that apply to each type, with PyTorch's defaults.
_LAYER_COMMON = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False}
DEFAULTS = {
    "RNN": dict(_LAYER_COMMON, nonlinearity="tanh"),
    "LSTM": dict(_LAYER_COMMON, proj_size=0),
    "GRU": dict(_LAYER_COMMON),
    "RNNCell": {"bias": True, "nonlinearity": "tanh"},
    "LSTMCell": {"bias": True},
    "GRUCell": {"bias": True},
}

# Names of the state tensors for layers and for cells: (inputs, outputs, upstream gradients).
LAYER_NAMES = {"h_in": "h0", "c_in": "c0", "out": "output", "h_out": "h_n", "c_out": "c_n",
               "g_out": "grad_output", "g_h": "grad_h_n", "g_c": "grad_c_n"}
CELL_NAMES = {"h_in": "hx", "c_in": "cx", "h_out": "h", "c_out": "c", "g_h": "grad_h", "g_c": "grad_c"}


class ConfigError(ValueError):
    pass


def full_config(config):
    """Return the config with every applicable key filled in (PyTorch defaults) and a list of
    keys that do not apply to this type (ignored)."""
    typ = config.get("type")
    if typ not in ALL_TYPES:
        raise ConfigError(f"unknown module type {typ!r}; expected one of {', '.join(ALL_TYPES)}")
    for key in ("input_size", "hidden_size"):
        if key not in config:
            raise ConfigError(f"module.json lacks required key {key!r}")
    out = {"type": typ, "input_size": int(config["input_size"]), "hidden_size": int(config["hidden_size"])}
    for key, default in DEFAULTS[typ].items():
        out[key] = config.get(key, default)
    ignored = sorted(set(config) - set(out))
    return out, ignored


def build_module(config):
    """Build the PyTorch module described by config (a module.json dict)."""
    cfg, _ = full_config(config)
    typ = cfg.pop("type")
    cls = getattr(nn, typ)
    return cls(**cfg)


def is_cell(config):
    return config["type"] in CELL_TYPES


def has_cell_state(config):
    return config["type"] in ("LSTM", "LSTMCell")


def _zeros_like_none(grad, like):
    return torch.zeros_like(like) if grad is None else grad


def run_module(module, config, inputs, want_grads=None):
    """Run `module` (already holding its weights, in the desired mode and dtype) on `inputs`.

    Returns an ordered dict name -> tensor (detached) following the fixture/`seqlm forward`
    naming.  Gradients are computed when `want_grads` is True, or when it is None and any
    grad_* tensor is present in inputs.
    """
    cfg, _ = full_config(config)
    cell = is_cell(cfg)
    lstm = has_cell_state(cfg)
    names = CELL_NAMES if cell else LAYER_NAMES
    if want_grads is None:
        want_grads = any(k.startswith("grad_") for k in inputs)

    x = inputs["input"].detach().clone().requires_grad_(want_grads)
    h0 = inputs.get(names["h_in"])
    c0 = inputs.get(names["c_in"])
    leaves = {"input": x}
    if h0 is not None:
        h0 = h0.detach().clone().requires_grad_(want_grads)
        leaves[names["h_in"]] = h0
    if c0 is not None:
        if not lstm:
            raise ConfigError(f"{names['c_in']} given for a {cfg['type']}, which has no cell state")
        c0 = c0.detach().clone().requires_grad_(want_grads)
        leaves[names["c_in"]] = c0
    if lstm and (h0 is None) != (c0 is None):
        raise ConfigError(f"PyTorch needs both {names['h_in']} and {names['c_in']} or neither")

    results = {}
    with torch.set_grad_enabled(want_grads):
        if cell:
            if "lengths" in inputs:
                raise ConfigError("lengths make no sense for a cell")
            state = None if h0 is None else ((h0, c0) if lstm else h0)
            res = module(x, state)
            if lstm:
                h, c = res
                results["h"], results["c"] = h, c
            else:
                results["h"] = res
        else:
            state = None if h0 is None else ((h0, c0) if lstm else h0)
            lengths = inputs.get("lengths")
            if lengths is not None:
                if x.dim() != 3:
                    raise ConfigError("lengths need a batched (3-D) input")
                seq_len = x.shape[1] if cfg["batch_first"] else x.shape[0]
                packed = pack_padded_sequence(x, lengths.to(torch.int64).cpu(), batch_first=cfg["batch_first"],
                                              enforce_sorted=False)
                out_packed, hn = module(packed, state)
                out, _ = pad_packed_sequence(out_packed, batch_first=cfg["batch_first"], total_length=seq_len)
            else:
                out, hn = module(x, state)
            results["output"] = out
            if lstm:
                results["h_n"], results["c_n"] = hn
            else:
                results["h_n"] = hn

        if want_grads:
            loss = x.new_zeros(())
            pairs = [("output", names.get("g_out")), (names["h_out"], names["g_h"])]
            if lstm:
                pairs.append((names["c_out"], names["g_c"]))
            for out_name, g_name in pairs:
                if g_name is not None and g_name in inputs:
                    loss = loss + (results[out_name] * inputs[g_name].to(x.dtype)).sum()
            params = dict(module.named_parameters())
            targets = list(leaves.values()) + list(params.values())
            grads = torch.autograd.grad(loss, targets, allow_unused=True) if loss.requires_grad else [None] * len(targets)
            for (name, leaf), g in zip(list(leaves.items()) + list(params.items()), grads):
                results[f"grad.{name}"] = _zeros_like_none(g, leaf).detach()

    return {k: v.detach().contiguous() for k, v in results.items()}


def make_grad_inputs(results, config, generator=None):
    """Random upstream gradients shaped like the outputs in `results` (a forward result)."""
    cfg, _ = full_config(config)
    names = CELL_NAMES if is_cell(cfg) else LAYER_NAMES
    out = {}
    pairs = [("output", names.get("g_out")), (names["h_out"], names["g_h"]), (names["c_out"], names["g_c"])]
    for out_name, g_name in pairs:
        if g_name is not None and out_name in results:
            t = results[out_name]
            out[g_name] = torch.randn(t.shape, dtype=t.dtype, generator=generator)
    return out
