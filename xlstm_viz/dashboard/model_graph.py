"""Read and edit a model's BlockWiring / CellWiring through one small interface.

The dashboard shows both wirings as the same kind of graph: node names, and connections with a
state +1 (on), -1 (flipped) or 0 (off). Only this module knows the wiring classes' method names.
"""

from __future__ import annotations


def _edges_of(wiring):
    conns = getattr(wiring, "connections", None)
    if isinstance(conns, dict):  # CellWiring: {(src, dst): Connection}
        return list(conns.values())
    edges = getattr(wiring, "edges", None)
    if edges is not None and not callable(edges):
        return list(edges)
    if callable(edges):
        return list(edges())
    names = node_names(wiring)
    return [conn for name in names for conn in wiring.inputs_of(name)]


def node_names(wiring) -> list[str]:
    nodes = getattr(wiring, "nodes", None)
    if nodes is not None:
        return list(nodes() if callable(nodes) else nodes)
    cells = getattr(wiring, "cells", None)
    if cells is not None:
        return list(cells)
    return list(wiring.order())


def _dst(conn, fallback=None):
    return getattr(conn, "dst", None) or getattr(conn, "dest", None) or fallback


def connections(wiring) -> tuple[list[str], list[tuple[str, str, int]]]:
    """(node names, [(src, dst, state)]) with state = polarity when enabled, else 0."""
    names = node_names(wiring)
    out = []
    for e in _edges_of(wiring):
        dst = _dst(e)
        if dst is None:
            raise ValueError(f"connection {e!r} has no destination field (dst/dest)")
        state = int(e.polarity) if getattr(e, "enabled", True) else 0
        out.append((e.src, dst, state))
    return names, out


def connection_state(wiring, src: str, dst: str) -> int:
    for s, d, state in connections(wiring)[1]:
        if s == src and d == dst:
            return state
    raise KeyError(f"no connection {src} -> {dst} in this wiring")


def set_connection(wiring, src: str, dst: str, state: int) -> None:
    """Set a connection to +1/-1 (enabled with that polarity) or 0 (disabled) via the wiring's edit API."""
    if state not in (-1, 0, 1):
        raise ValueError(f"connection state must be -1, 0 or +1, got {state!r}")
    current = connection_state(wiring, src, dst)
    if current == state:
        return
    if state == 0:
        wiring.set_enabled(src, dst, False)
        return
    if current == 0:
        wiring.set_enabled(src, dst, True)
    if connection_state(wiring, src, dst) != state:
        wiring.set_polarity(src, dst, state)


def set_sparsity(wiring, level: float, seed: int = 0) -> None:
    """Mask `level` of every weighted connection of a CellWiring (seeded), or a whole-wiring set_sparsity."""
    fn = getattr(wiring, "set_sparsity", None)
    if fn is None:
        raise ValueError(f"{type(wiring).__name__} has no set_sparsity: this wiring cannot be sparsified")
    conns = getattr(wiring, "connections", None)
    if isinstance(conns, dict):
        weighted = [c for c in conns.values() if getattr(c, "weight", None) is not None]
        if not weighted:
            raise ValueError("this cell wiring has no weighted connection to sparsify")
        for c in weighted:
            fn(c.src, c.dst, level, seed=seed)
    else:
        fn(level, seed=seed)


def roles(wiring) -> dict[str, str]:
    fn = getattr(wiring, "roles", None)
    return dict(fn()) if callable(fn) else {}


def _count_text(n: int) -> str:
    """8192 -> "8.2k", 1_540_000 -> "1.5M": a node label's parameter count."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _shape_text(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


def node_info(model) -> dict[str, tuple[str, int]]:
    """{node name: (label line, parameter count)} for every block-graph and cell-graph node.

    Cells read their weight (and bias) shapes from the cell wiring, which copies them from the block table
    ("64x128 · 8.2k", rows = output features, as in the checkpoint); a neuron cell counts the module under its
    "prefix"; a weightless cell shows its feature count.
    Blocks and the model-level nodes count the model's own parameters, so they match `num_parameters()`."""
    import numpy as np
    from mlx.utils import tree_flatten

    sizes = {k: int(np.prod(v.shape)) for k, v in tree_flatten(model.parameters())}
    shapes = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    info: dict[str, tuple[str, int]] = {}
    for i, wiring in enumerate(model.cell_wirings):
        for name, spec in wiring.cells.items():
            p = spec.params
            if "prefix" in p:  # a neuron cell owns a module (ncps CfC/LTC): every parameter under its prefix
                under = f"backbone.blocks.{i}.{p['prefix']}."
                n = sum(v for k, v in sizes.items() if k.startswith(under))
                info[name] = (f"{p.get('units', p.get('features'))} units · {_count_text(n)}", n)
            elif "shape" in p:
                n = int(np.prod(p["shape"])) + (int(np.prod(p["bias_shape"])) if "bias_shape" in p else 0)
                info[name] = (f"{_shape_text(p['shape'])} · {_count_text(n)}", n)
            elif p.get("features") is not None:
                info[name] = (f"d={int(p['features'])}", 0)
    for i in range(len(model.cell_wirings)):
        n = sum(v for k, v in sizes.items() if k.startswith(f"backbone.blocks.{i}."))
        info[f"blocks.{i}"] = (f"{_count_text(n)} params", n)
    for node, key in (("embedding", "backbone.embeddings.weight"), ("out_norm", "backbone.out_norm.weight"),
                      ("lm_head", "lm_head.weight")):
        if key in sizes:
            info[node] = (f"{_shape_text(shapes[key])} · {_count_text(sizes[key])}", sizes[key])
    return info
