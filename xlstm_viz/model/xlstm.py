"""The xLSTM-7B ("xLSTM Large") language model: embeddings, a stack of blocks, out_norm, lm_head with logit soft cap.

The forward pass is executed by the model's wirings (xlstm_viz.execution.Executor): with the default wirings it is
exactly the NX-AI computation; edits to `model.block_wiring` or `model.cell_wirings` take effect on the next call.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model.norms import RMSNorm
from xlstm_viz.model.registry import CELL_WIRINGS, block_class


class Backbone(nn.Module):
    def __init__(self, config: XLSTMConfig):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.blocks = [block_class(kind)(config) for kind in config.layer_types()]
        if config.add_out_norm:
            self.out_norm = RMSNorm(config.embedding_dim, config.norm_eps, config.use_bias)


class _Wirings:
    """Holds the wirings outside MLX's parameter tree (nn.Module treats list/dict attributes as parameters)."""

    def __init__(self, block, cells):
        self.block = block
        self.cells = cells


class XLSTM(nn.Module):
    def __init__(self, config: XLSTMConfig, init_profile: str | None = None, seed: int = 0):
        super().__init__()
        from xlstm_viz.execution.interventions import Interventions
        from xlstm_viz.wiring import BlockWiring

        self.config = config
        self.backbone = Backbone(config)
        self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
        self._wirings = _Wirings(
            BlockWiring.from_config(config),
            [CELL_WIRINGS[kind](j, config) for j, kind in enumerate(config.layer_types())],
        )
        self.interventions = Interventions()
        self.source: str | None = None  # checkpoint folder this model was loaded from
        self.tokenizer = None
        self.task = None
        if init_profile is not None:
            self.init_from_profile(init_profile, seed)

    # -- wirings (the program the executor runs) --
    @property
    def block_wiring(self):
        return self._wirings.block

    @property
    def cell_wirings(self) -> list:
        return self._wirings.cells

    @property
    def blocks(self) -> list:
        return self.backbone.blocks

    # -- forward --
    def __call__(self, input_ids: mx.array, state: list | None = None, mode: str = "chunkwise"):
        """logits [B, S, V] (float32) and the new state (one entry per block)."""
        from xlstm_viz.execution.executor import Executor

        return Executor(self).forward(input_ids, state=state, mode=mode)

    def compiled_step(self):
        """A decode step `(token [B, 1], state) -> (logits, state)` under mx.compile, for fast generation."""
        return self.compiled("recurrent")

    def compiled(self, mode: str = "chunkwise"):
        """`(ids, state) -> (logits, state)` under mx.compile (prefill with "chunkwise", decode with "recurrent").

        The compiled graph bakes in the wiring and interventions, so it is re-traced when a wiring version or the
        intervention list changes (measured by benchmarks/trace_overhead.py); tracing and stepping stay eager.
        """
        from xlstm_viz.execution.executor import Executor, _check_ids
        from xlstm_viz.model.mlstm_cell import MLSTMState

        cache: dict = {}
        n = len(self.blocks)

        def signature():
            return (self.block_wiring.version, tuple((w.version, len(w.cells), len(w.connections)) for w in self.cell_wirings),
                    tuple(i.id for i in self.interventions.list()))

        def raw(token, flat):
            state = [MLSTMState(*flat[3 * j: 3 * j + 3]) for j in range(n)]
            logits, state = Executor(self).forward(token, state=state, mode=mode, check=False)
            return logits, [a for s in state for a in s.arrays()]

        def step(token, state):
            token = _check_ids(token, self.config.vocab_size)
            key = signature()
            fn = cache.get(key)
            if fn is None:
                cache.clear()
                fn = cache[key] = mx.compile(raw, inputs=self.state)
            state = Executor(self).check_state(state, token.shape[0])
            logits, flat = fn(token, [a for s in state for a in s.arrays()])
            return logits, [MLSTMState(*flat[3 * j: 3 * j + 3]) for j in range(n)]

        return step

    def run_with_trace(self, input_ids, probes=None, mode: str = "stats", run_mode: str = "chunkwise", state=None):
        from xlstm_viz.execution.trace import run_with_trace

        return run_with_trace(self, input_ids, probes=probes, mode=mode, run_mode=run_mode, state=state)

    def probe_names(self) -> list[str]:
        from xlstm_viz.execution.probes import probe_names

        return probe_names(self)

    # -- parameters --
    def checkpoint_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected tensor names and shapes in the NX-AI checkpoint naming."""
        return {name: tuple(value.shape) for name, value in tree_flatten(self.parameters())}

    def init_from_profile(self, profile, seed: int = 0) -> None:
        """Initialise every parameter from a HyperProfile (xlstm_viz.wiring.profiles), e.g. gate bias ranges."""
        from xlstm_viz.model.initialization import initialize

        initialize(self, profile, seed)

    def save(self, path: str | Path, dtype: str | None = None) -> Path:
        """Write config.json + model.safetensors in the NX-AI 7B naming (a folder `load_model` reads back)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        weights = dict(tree_flatten(self.parameters()))
        if dtype is not None:
            weights = {k: v.astype(getattr(mx, dtype)) for k, v in weights.items()}
        mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
        return path

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(v.shape)) for _, v in tree_flatten(self.parameters())))

    def summary(self) -> str:
        c = self.config
        lines = [
            f"xLSTM  D={c.embedding_dim}  heads={c.num_heads}  blocks={c.num_blocks}  vocab={c.vocab_size}  "
            f"qk_dim={c.qk_dim}  v_dim={c.v_dim}  ffn_dim={c.ffn_dim}  chunk={c.chunk_size}",
            f"parameters: {self.num_parameters():,}" + (f"  source: {self.source}" if self.source else ""),
            f"block types: {', '.join(c.layer_types())}",
        ]
        return "\n".join(lines)
