""""Copy as Python": a script that rebuilds the session's model as edited (wiring edits, then ablations).

It uses the same calls the session makes on its model thread (`model_graph.set_connection`, `set_sparsity`,
`model.interventions.add`), so running it gives the same model (the test runs it and compares the logits).
Patch interventions (which hold another run's tensors) are not part of a session's edits and are refused.
"""

from __future__ import annotations


def python_snippet(edits, interventions, source: str | None = None, prompt_ids=None) -> str:
    """edits: the session's [(scope, block, src, dst, state)] / [("sparsity", block, "", "", level, seed)];
    interventions: `model.interventions.list()`; source: the checkpoint folder (None: the bundled demo)."""
    load = "xv.load_demo()" if source is None or _is_demo(source) else f"xv.load_model({str(source)!r})"
    lines = ["import mlx.core as mx", "import xlstm_viz as xv", "from xlstm_viz.dashboard import model_graph", "",
             f"model = {load}"]
    for e in edits:
        e = list(e)
        if e[0] == "sparsity":
            lines.append(f"model_graph.set_sparsity(model.cell_wirings[{int(e[1])}], {float(e[4])!r}, {int(e[5])})")
        elif e[0] == "block":
            lines.append(f"model_graph.set_connection(model.block_wiring, {e[2]!r}, {e[3]!r}, {int(e[4])})")
        elif e[0] == "cell":
            lines.append(f"model_graph.set_connection(model.cell_wirings[{int(e[1])}], {e[2]!r}, {e[3]!r}, "
                         f"{int(e[4])})")
        else:
            raise ValueError(f"unknown edit {e!r}: scope must be 'block', 'cell' or 'sparsity'")
    for item in interventions:
        if item.kind == "patch":
            raise ValueError(f"intervention {item.describe()} patches from another run: it cannot be written as a "
                             "snippet (remove it, or save that run's trace)")
        if item.kind == "replace":
            raise ValueError(f"intervention {item.describe()} holds a replacement array: not written as a snippet")
        args = [repr(item.probe), repr(item.kind)]
        if item.kind == "scale":
            args.append(f"value={item.value!r}")
        if item.tokens is not None:
            args.append(f"tokens={list(item.tokens)}")
        if item.heads is not None:
            args.append(f"heads={list(item.heads)}")
        lines.append(f"model.interventions.add({', '.join(args)})")
    if prompt_ids is not None:
        ids = [int(i) for i in prompt_ids]
        lines += ["", f"ids = mx.array([{ids}])", "logits, _ = model(ids)"]
    return "\n".join(lines) + "\n"


def _is_demo(source) -> bool:
    from pathlib import Path

    try:
        from xlstm_viz.demo import demo_path

        return Path(source).resolve() == demo_path().resolve()
    except (FileNotFoundError, OSError):
        return False
