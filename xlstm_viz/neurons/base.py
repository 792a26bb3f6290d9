"""What CfC and LTC share: ncps.torch's sequence loop, the mixed-memory LSTM, and ncps-named state dicts.

The sequence loop is ncps.torch 1.0.1's `CfC.forward`/`LTC.forward` with two differences, both fixes:
`timespans` of a batch keep one elapsed time per sample ([B, S] or [B, S, 1]; ncps squeezes them to [B] and then
fails to broadcast for B > 1), and shapes are checked up front with errors that name the tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

import xlstm_viz.blas  # noqa: F401  (fast BLAS must be bound before MLX loads)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from xlstm_viz.wiring import Wiring

from .cells import lstm_cell


class NeuronStateDictError(ValueError):
    """An ncps state_dict that does not fit the module: lists every missing, unexpected or mis-shaped tensor."""


def xavier_uniform(shape) -> mx.array:
    """torch.nn.init.xavier_uniform_ for a [fan_out, fan_in] matrix."""
    return nn.init.glorot_uniform()(mx.zeros(shape))


def orthogonal(shape) -> mx.array:
    """torch.nn.init.orthogonal_ (QR of a Gaussian matrix, signs fixed by diag(R))."""
    rows, cols = shape
    a = np.array(mx.random.normal((max(rows, cols), min(rows, cols))), dtype=np.float64)
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return mx.array((q if rows >= cols else q.T).astype(np.float32))


class LSTMCell(nn.Module):
    """ncps.torch `lstm.LSTMCell`: `input_map` (with bias) and `recurrent_map` (no bias), ncps's initialisation."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.input_map = nn.Linear(input_size, 4 * hidden_size, bias=True)
        self.recurrent_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.input_map.weight = xavier_uniform(self.input_map.weight.shape)
        self.input_map.bias = mx.random.uniform(-0.1, 0.1, (4 * hidden_size,))
        self.recurrent_map.weight = orthogonal(self.recurrent_map.weight.shape)

    def __call__(self, inputs, state):
        _, state = lstm_cell(inputs, dict(tree_flatten(self.parameters())), state)
        return state


def _as_array(value, what: str) -> mx.array:
    if isinstance(value, mx.array):
        return value
    try:
        return mx.array(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be an array, got {type(value).__name__}: {err}") from None


def check_wiring(wiring, input_size: int, who: str) -> Wiring:
    if not isinstance(wiring, Wiring):
        raise TypeError(
            f"{who}: units must be an int or an xlstm_viz.wiring Wiring (FullyConnected, Random, NCP, AutoNCP), "
            f"got {type(wiring).__name__}"
        )
    wiring.build(input_size)  # idempotent for our wirings; a different input_dim raises
    if wiring.output_dim is None:
        raise ValueError(f"{who}: the wiring has no output_dim; call wiring.set_output_dim(motor_neurons) first")
    return wiring


def check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class NeuronRNN(nn.Module):
    """Sequence driver of ncps.torch's CfC/LTC. Subclasses set `rnn_cell`, sizes and implement `_step`."""

    input_size: int
    state_size: int
    output_size: int

    def __init__(self, input_size, return_sequences: bool, batch_first: bool, mixed_memory: bool):
        super().__init__()
        self.input_size = check_count("input_size", input_size)
        self.return_sequences = bool(return_sequences)
        self.batch_first = bool(batch_first)
        self.use_mixed = bool(mixed_memory)

    # -- subclass hooks ------------------------------------------------------------------------
    def _cell_weights(self):  # pragma: no cover - abstract
        """The cell's ncps-named weights, masks and reversal potentials for this forward pass."""
        raise NotImplementedError

    def _step(self, x, weights, h, ts):  # pragma: no cover - abstract
        raise NotImplementedError

    def _readout(self, out):
        return out

    def _derived_tensors(self) -> dict[str, mx.array]:
        """State-dict entries that come from the wiring (masks, reversal potentials), by ncps name."""
        return {}

    def _check_derived(self, tensors: dict[str, mx.array]) -> list[str]:
        return []

    def _after_load(self) -> None:
        pass

    @property
    def state_order(self) -> list[int]:
        """Wiring neuron id of each state entry (LTC: ids in order; wired CfC: layer by layer)."""
        return list(range(self.state_size))

    # -- forward -------------------------------------------------------------------------------
    def __call__(self, input, hx=None, timespans=None):
        """`input` [B, S, F] (batch_first), [S, B, F] or unbatched [S, F]; returns `(output, hx)` like ncps.

        `hx`: [B, state_size] (unbatched: [state_size]); with mixed_memory a pair (h, c) of those.
        `timespans`: elapsed time per step, [B, S] or [B, S, 1] (time-first: [S, B] / [S, B, 1]; unbatched [S] / [S, 1]).
        """
        x = _as_array(input, "input")
        if x.ndim not in (2, 3):
            raise ValueError(f"input must be 3-D (batched) or 2-D (unbatched), got shape {tuple(x.shape)}")
        batched = x.ndim == 3
        if not batched:
            x = x[None]
        elif not self.batch_first:
            x = x.transpose(1, 0, 2)
        B, S, F = x.shape
        if F != self.input_size:
            raise ValueError(f"input has {F} features per step, the module was built for input_size={self.input_size}")
        if S == 0:
            raise ValueError("input has an empty sequence (0 steps)")
        ts = self._timespans(timespans, B, S, batched)
        h, c = self._initial_state(hx, B, batched, x.dtype)

        weights = self._cell_weights()
        lstm = dict(tree_flatten(self.lstm.parameters())) if self.use_mixed else None
        outputs = []
        for t in range(S):
            xt = x[:, t]
            if lstm is not None:
                _, (h, c) = lstm_cell(xt, lstm, (h, c))
            out, h = self._step(xt, weights, h, 1.0 if ts is None else ts[:, t])
            if self.return_sequences:
                outputs.append(self._readout(out))
        if self.return_sequences:
            y = mx.stack(outputs, axis=1)
            if batched and not self.batch_first:
                y = y.transpose(1, 0, 2)
        else:
            y = self._readout(out)
        if not batched:
            y, h = y[0], h[0]
            c = None if c is None else c[0]
        return y, ((h, c) if self.use_mixed else h)

    def _timespans(self, timespans, B, S, batched):
        if timespans is None:
            return None
        ts = _as_array(timespans, "timespans")
        shape = tuple(ts.shape)
        if batched:
            order = (B, S) if self.batch_first else (S, B)
            ok = shape in (order, order + (1,))
            expected = f"{order} or {order + (1,)}"
        else:
            ok = shape in ((S,), (S, 1))
            expected = f"({S},) or ({S}, 1)"
        if not ok:
            raise ValueError(f"timespans has shape {shape}; for this input it must be {expected}")
        ts = ts.reshape(shape[:2] if batched else (1, S))
        if batched and not self.batch_first:
            ts = ts.T
        self._check_timespans(ts)
        return ts[..., None]  # [B, S, 1]: one elapsed time per sample and step

    def _check_timespans(self, ts) -> None:
        pass

    def _initial_state(self, hx, B, batched, dtype):
        shape = (B, self.state_size) if batched else (self.state_size,)
        if hx is None:
            zeros = mx.zeros((B, self.state_size), dtype=dtype)
            return zeros, (zeros if self.use_mixed else None)
        if self.use_mixed:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    "with mixed_memory=True, hx must be a pair (h0, c0) of state arrays, "
                    f"got {type(hx).__name__}"
                )
            parts = [("hx[0] (h0)", hx[0]), ("hx[1] (c0)", hx[1])]
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError("with mixed_memory=False, hx is one state array, not a tuple")
            parts = [("hx", hx)]
        states = []
        for name, value in parts:
            value = _as_array(value, name)
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {shape} for this input")
            states.append(value if batched else value[None])
        return states[0], (states[1] if self.use_mixed else None)

    # -- ncps state dicts ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, mx.array]:
        """Every tensor of the ncps.torch module's `state_dict()`, by its ncps name. Masks and reversal potentials
        reflect the wiring as it is now, so ncps loading this file computes what this module computes."""
        tensors = dict(tree_flatten(self.parameters()))
        tensors.update(self._derived_tensors())
        return tensors

    def save_state_dict(self, path: Union[str, Path]) -> None:
        """Write `state_dict()` as safetensors (float32), loadable by `ncps.torch` with `load_state_dict`."""
        mx.save_safetensors(str(path), {k: v.astype(mx.float32) for k, v in self.state_dict().items()})

    def load_state_dict(self, source) -> "NeuronRNN":
        """Load an ncps.torch state_dict: a safetensors path or a {name: array} dict (numpy, MLX).

        Strict: one `NeuronStateDictError` lists every missing, unexpected and mis-shaped tensor, and every mask
        that disagrees with the wiring. Values are cast to float32.
        """
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"no state_dict file at {path}")
            tensors = mx.load(str(path))
            if not isinstance(tensors, dict):
                raise NeuronStateDictError(f"{path.name} is not a safetensors file of named tensors")
        elif isinstance(source, dict):
            tensors = {k: _as_array(v, f"state_dict[{k!r}]") for k, v in source.items()}
        else:
            raise TypeError(f"load_state_dict takes a safetensors path or a dict, got {type(source).__name__}")

        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        problems = [f"  missing: {k} (shape {expected[k]})" for k in expected if k not in tensors]
        problems += [f"  unexpected: {k} (shape {tuple(tensors[k].shape)})" for k in tensors if k not in expected]
        problems += [
            f"  wrong shape: {k} is {tuple(tensors[k].shape)}, expected {expected[k]}"
            for k in expected
            if k in tensors and tuple(tensors[k].shape) != expected[k]
        ]
        if not problems:
            problems = self._check_derived(tensors)
        if problems:
            raise NeuronStateDictError(
                f"state_dict does not fit {type(self).__name__} ({len(problems)} problem(s)):\n" + "\n".join(problems)
            )
        params = dict(tree_flatten(self.parameters()))
        self.update(tree_unflatten([(k, tensors[k].astype(params[k].dtype)) for k in params]))
        self._after_load()
        return self


def mask_problems(name: str, loaded: mx.array, expected: np.ndarray) -> list[str]:
    """The entries where a loaded mask differs from the one the wiring gives (first few named)."""
    bad = np.argwhere(np.array(loaded.astype(mx.float32)) != expected)
    if not len(bad):
        return []
    first = ", ".join(str(tuple(int(i) for i in b)) for b in bad[:5])
    return [
        f"  {name} differs from the wiring's mask at {len(bad)} entries (first: {first}); the wiring was "
        "edited or built from another seed/input size than the one the file was trained with"
    ]
