"""Parity fixtures for xlstm_viz.neurons (CfC, LTC) from the official ncps.torch 1.0.1.

Run through tools/make_golden.py (with the reference venv, which has torch and ncps):

    /work/venv-ref/bin/python tools/make_golden.py --out tests/fixtures/golden --only ncps

Writes <out>/ncps/:
  cases.json            per case: class, constructor kwargs, wiring spec, batch/seq sizes, and the ncps
                        state_dict's names and shapes (in ncps's order)
  <case>.safetensors    the ncps module's state_dict (torch.save-free: safetensors.torch.save_file)
  reference.npz         per case <case>/...:
      x                     input (batch_first or time-first, as the case)
      y, h[, c]             official outputs and final state(s), hx=None, no timespans, one batched call
      hx0[, cx0], ts        a random initial state and timespans [B, S] (or [B, S, 1] when the case says so)
      ts_y, ts_h[, ts_c]    official outputs with hx0 and ts, *one sample at a time* (ncps squeezes timespans to
                            [B] and cannot broadcast them for B > 1), stacked along the batch axis
      adjacency, sensory_adjacency   the ncps wiring's matrices after build (wired cases)
      edited_y              (cases with `edit`) outputs after the mask/erev edits listed in the case's `edits`

Weights: ncps's own initialisation under torch.manual_seed(case seed), then (LTC) the reversal potentials and the
input/output mappings perturbed so they are not their initial +-1 / ones / zeros, as after training.
All modules run in eval mode (backbone dropout off).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import ncps
import ncps.torch as nt
import ncps.wirings as nw

BATCH, SEQ, IN = 3, 6, 5
NCP_ARGS = [5, 4, 2, 3, 2, 3, 2]  # inter, command, motor, sensory_fanout, inter_fanout, recurrent, motor_fanin
CASES = [
    # CfC, unwired
    dict(name="cfc_default", cls="CfC", units=12, kwargs={}),
    dict(name="cfc_pure", cls="CfC", units=10, kwargs=dict(mode="pure", backbone_units=16)),
    dict(name="cfc_no_gate_silu", cls="CfC", units=10, kwargs=dict(mode="no_gate", backbone_units=16, activation="silu")),
    dict(name="cfc_backbone3_gelu_dropout", cls="CfC", units=10,
         kwargs=dict(backbone_units=8, backbone_layers=3, backbone_dropout=0.25, activation="gelu")),
    dict(name="cfc_backbone0", cls="CfC", units=10, kwargs=dict(backbone_layers=0)),
    dict(name="cfc_relu_mixed_proj", cls="CfC", units=10,
         kwargs=dict(backbone_units=16, activation="relu", mixed_memory=True, proj_size=4)),
    dict(name="cfc_tanh_timefirst_last", cls="CfC", units=10, ts_shape="BS1",
         kwargs=dict(backbone_units=16, activation="tanh", batch_first=False, return_sequences=False)),
    # CfC, wired
    dict(name="cfc_autoncp", cls="CfC", wiring=["AutoNCP", [12, 3], {}], kwargs={}, edit=True),
    dict(name="cfc_autoncp_pure", cls="CfC", wiring=["AutoNCP", [12, 3], {"sparsity_level": 0.6}],
         kwargs=dict(mode="pure")),
    dict(name="cfc_ncp_no_gate_mixed_proj", cls="CfC", wiring=["NCP", NCP_ARGS, {}], ts_shape="BS1",
         kwargs=dict(mode="no_gate", mixed_memory=True, proj_size=3)),
    dict(name="cfc_random", cls="CfC", wiring=["Random", [8, 3], {"sparsity_level": 0.5}], kwargs={}),
    dict(name="cfc_fc_timefirst", cls="CfC", wiring=["FullyConnected", [6], {}], kwargs=dict(batch_first=False)),
    # LTC
    dict(name="ltc_default", cls="LTC", units=8, kwargs={}),
    dict(name="ltc_autoncp_mixed", cls="LTC", wiring=["AutoNCP", [12, 3], {}], kwargs=dict(mixed_memory=True),
         edit=True),
    dict(name="ltc_ncp_timefirst_last", cls="LTC", wiring=["NCP", NCP_ARGS, {}], ts_shape="BS1",
         kwargs=dict(batch_first=False, return_sequences=False)),
    dict(name="ltc_random_linear_explicit", cls="LTC", wiring=["Random", [8, 3], {"sparsity_level": 0.5}],
         kwargs=dict(input_mapping="linear", output_mapping=None, ode_unfolds=3, epsilon=1e-6,
                     implicit_param_constraints=False)),
    dict(name="ltc_fc_nomap", cls="LTC", wiring=["FullyConnected", [7, 2], {}],
         kwargs=dict(input_mapping=None, output_mapping="linear", mixed_memory=True)),
]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32).copy()


def build(case: dict, seed: int):
    torch.manual_seed(seed)
    units = case.get("units")
    if "wiring" in case:
        cls, args, kwargs = case["wiring"]
        units = getattr(nw, cls)(*args, **kwargs)
    model = getattr(nt, case["cls"])(IN, units, **case["kwargs"])
    if case["cls"] == "LTC":  # move the parameters off their initial values, as training would
        g = torch.Generator().manual_seed(seed + 1)
        cell = model.rnn_cell
        with torch.no_grad():
            cell.erev.add_(0.3 * torch.randn(cell.erev.shape, generator=g))
            cell.sensory_erev.add_(0.3 * torch.randn(cell.sensory_erev.shape, generator=g))
            for name in ("input_w", "output_w"):
                if hasattr(cell, name):
                    getattr(cell, name).mul_(1 + 0.3 * torch.randn(getattr(cell, name).shape, generator=g))
            for name in ("input_b", "output_b"):
                if hasattr(cell, name):
                    getattr(cell, name).add_(0.3 * torch.randn(getattr(cell, name).shape, generator=g))
    model.eval()
    return model, (units if "wiring" in case else None)


def _state(hx, mixed):
    return (hx[0], hx[1]) if mixed else (hx, None)


def run_case(case: dict, seed: int, out: Path) -> dict[str, np.ndarray]:
    model, wiring = build(case, seed)
    kw = case["kwargs"]
    batch_first = kw.get("batch_first", True)
    mixed = kw.get("mixed_memory", False)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, SEQ, IN)).astype(np.float32)
    ts = rng.uniform(0.2, 2.0, (BATCH, SEQ)).astype(np.float32)
    if case.get("ts_shape") == "BS1":
        ts = ts[..., None]
    h0 = (0.5 * rng.standard_normal((BATCH, model.state_size))).astype(np.float32)
    c0 = (0.5 * rng.standard_normal((BATCH, model.state_size))).astype(np.float32)
    if not batch_first:
        x, ts = np.swapaxes(x, 0, 1).copy(), np.swapaxes(ts, 0, 1).copy()
    bdim = 0 if batch_first else 1
    ret_seq = kw.get("return_sequences", True)

    p = case["name"] + "/"
    ref = {p + "x": x, p + "hx0": h0, p + "ts": ts}
    if mixed:
        ref[p + "cx0"] = c0
    with torch.no_grad():
        y, hx = model(torch.from_numpy(x))
        h, c = _state(hx, mixed)
        ref[p + "y"], ref[p + "h"] = _np(y), _np(h)
        if mixed:
            ref[p + "c"] = _np(c)
        ys, hs, cs = [], [], []
        for b in range(BATCH):
            xb = torch.from_numpy(np.take(x, [b], axis=bdim))
            tb = torch.from_numpy(np.take(ts, [b], axis=bdim))
            hb = torch.from_numpy(h0[b : b + 1])
            hxb = (hb, torch.from_numpy(c0[b : b + 1])) if mixed else hb
            yb, hxo = model(xb, hxb, tb)
            hb, cb = _state(hxo, mixed)
            ys.append(_np(yb))
            hs.append(_np(hb))
            if mixed:
                cs.append(_np(cb))
        ref[p + "ts_y"] = np.concatenate(ys, axis=bdim if ret_seq else 0)
        ref[p + "ts_h"] = np.concatenate(hs, axis=0)
        if mixed:
            ref[p + "ts_c"] = np.concatenate(cs, axis=0)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"{case['name']}.safetensors"))  # before the edits below
    case["state_dict"] = [[k, list(v.shape)] for k, v in state.items()]
    if case.get("edit"):
        ref.update(run_edited(case, model, wiring, x))
    if wiring is not None:
        ref[p + "adjacency"] = wiring.adjacency_matrix.astype(np.int32)
        ref[p + "sensory_adjacency"] = wiring.sensory_adjacency_matrix.astype(np.int32)
    return ref


def run_edited(case: dict, model, wiring, x: np.ndarray) -> dict[str, np.ndarray]:
    """The official module after the tensor edits that our live wiring edits stand for: the first sensory synapse
    removed (its mask entry zeroed) and the second inter-neuron synapse flipped (LTC: erev negated; a CfC ignores
    polarity). Recorded in the case as `edits` = [[matrix, src, dest, new polarity], ...]."""
    S, A = wiring.sensory_adjacency_matrix, wiring.adjacency_matrix
    s, d = (int(i) for i in np.argwhere(S != 0)[0])
    a, b = (int(i) for i in np.argwhere(A != 0)[1])
    case["edits"] = [["sensory", s, d, 0], ["synapse", a, b, -int(A[a, b])]]
    cell = model.rnn_cell
    with torch.no_grad():
        if case["cls"] == "LTC":
            cell.sensory_sparsity_mask[s, d] = 0.0
            cell.erev[a, b] = -cell.erev[a, b]
        else:
            layer0 = wiring.get_neurons_of_layer(0)
            cell.layer_0.sparsity_mask[layer0.index(d), s] = 0.0
        y, _ = model(torch.from_numpy(x))
    return {case["name"] + "/edited_y": _np(y)}


def make(out_root: Path) -> dict:
    out = out_root / "ncps"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ref, cases = {}, []
    for i, case in enumerate(CASES):
        case = json.loads(json.dumps(case))
        case.update(seed=100 + i, batch=BATCH, seq=SEQ, input_size=IN)
        ref.update(run_case(case, case["seed"], out))
        cases.append(case)
    np.savez_compressed(out / "reference.npz", **ref)
    (out / "cases.json").write_text(json.dumps({"ncps": _version(), "cases": cases}, indent=1) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"== ncps: {len(cases)} cases, {size / 1e3:.0f} kB in {out}")
    return {"cases": len(cases), "bytes": size}


def _version() -> str:
    from importlib.metadata import version

    return version("ncps")
