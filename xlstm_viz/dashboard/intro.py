"""The first screen: what the loaded model does and how to read the dashboard, written from the model itself.

The block list comes from the model's config (`layer_types`) and the cell kinds from the block tables, so the
text stays true for the demo, the hybrid demo and any model the app is given.
"""

from __future__ import annotations

import panel as pn

from xlstm_viz.wiring.block_types import block_table

# Tab and widget names are plain text here, never a whole emphasised element: a page search for the exact text
# "Diff" (tests, users' scripts) must find only the tab.
# One line per block type the text can explain: what the block computes, in a newcomer's words.
BLOCK_WORDS = {
    "mlstm": "an **mLSTM** block (matrix memory C per head, written with input gate i and decayed by forget gate f; "
             "q reads it), then a gated feed-forward",
    "orig_mlstm": "an original-xLSTM **mLSTM** block (matrix memory per head, conv + gates)",
    "slstm": "an **sLSTM** block (scalar memory per unit with exponential gating), then a feed-forward",
    "cfc": "an **NCP block**: AutoNCP-wired CfC neurons (sensory -> inter -> command -> motor), whose motor "
           "neurons are read out",
    "ltc": "an **NCP block**: AutoNCP-wired LTC neurons, whose motor neurons are read out",
}


def _task_text(task) -> str:
    if task is None:
        return "**Task.** This model has no bundled task: type token ids in the prompt box and press Run prompt."
    keys, values = getattr(task, "num_keys", None), getattr(task, "num_values", None)
    size = f" ({keys} keys, {values} values)" if keys and values else ""
    return ("**Task: multi-query associative recall (MQAR)**" + size + ". The prompt lists key-value pairs "
            "(`K11 V57`), then asks for keys again (`? K11`): the model must answer with that key's value. "
            # not "recall accuracy": the page shows that phrase only beside a figure
            "The sidebar's recall is the share of queries answered right.")


def _block_runs(types: list[str]) -> str:
    """"blocks 0-1: an mLSTM block (...)": consecutive blocks of one type said once."""
    runs, start = [], 0
    for i in range(1, len(types) + 1):
        if i == len(types) or types[i] != types[start]:
            where = f"block {start}" if i - 1 == start else f"blocks {start}-{i - 1}"
            runs.append(f"{where}: {BLOCK_WORDS.get(types[start], f'a {types[start]} block')}")
            start = i
    return "; ".join(runs)


def intro_text(model, task=None) -> str:
    """Markdown for the first screen: the task, the blocks in order, and how to read and edit the graphs."""
    types = list(model.config.layer_types())
    kinds = sorted({row.node_kind() for t in dict.fromkeys(types) for row in block_table(t).cells})
    ncp = any(t in ("cfc", "ltc") for t in types)
    return "\n\n".join([
        _task_text(task),
        f"**Model.** embedding -> {len(types)} blocks -> norm -> lm_head; {_block_runs(types)}. A block is a "
        f"graph of *cells* ({', '.join(kinds)}), one computation each.",
        "**Reading and editing.** Click a block to show its cells. Node fill = the chosen statistic of the last "
        "run (colour bar), arrows = the direction data flows, labels = weight shape and parameter count; edges: "
        "green on, red flipped (signal negated), grey off. Click an edge, then *Set on / flipped / off*: the "
        "model re-runs and the overlay, the Diff tab and recall show the change against the baseline run. "
        "*Undo / Redo / Reset* (sidebar) work in every tab; edits are saved with the session."
        + (" The NCPS (live model) tab edits the NCP block's synapses." if ncp else ""),
    ])


def intro_card(model, task=None) -> pn.Card:
    """The first screen, open on load; the user can fold it away."""
    return pn.Card(pn.pane.Markdown(intro_text(model, task), sizing_mode="stretch_width", margin=(0, 10)),
                   title="What this model does and how to read this dashboard", collapsed=False,
                   sizing_mode="stretch_width", margin=(5, 5, 10, 5))
