""""Copy as Python": a script that rebuilds the session's model as edited (wiring edits, then ablations).

The wiring edits are the session's edits document (the wirings' own history, what the Export tab downloads), applied
by the public `xlstm_viz.apply_edits`; ablations are `model.interventions.add` calls. Running it gives the same model
(the test runs it and compares the logits).
Patch interventions (which hold another run's tensors) are not part of a session's edits and are refused.
"""

from __future__ import annotations


def python_snippet(edits_doc: dict, interventions, source: str | None = None, prompt_ids=None) -> str:
    """edits_doc: the session's edits document (`session.edits_doc()`); interventions: `model.interventions.list()`;
    source: the checkpoint folder (None: the bundled demo)."""
    import json

    load = "xv.load_demo()" if source is None or _is_demo(source) else f"xv.load_model({str(source)!r})"
    lines = ["import json", "", "import mlx.core as mx", "import xlstm_viz as xv", "", f"model = {load}"]
    if edits_doc.get("actions"):
        lines += [f"edits = json.loads({json.dumps(edits_doc)!r})",
                  "report = xv.apply_edits(model, edits)",
                  "assert not report.refused, report.refused"]
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
        if item.inside:
            args.append("inside=True")
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
