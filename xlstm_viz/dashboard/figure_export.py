"""The dashboard's figures as SVG or PNG files, drawn on the server with matplotlib from the current result.

Bokeh's own export needs a browser driver on the server; these figures are drawn again from the same tables the
views show (the RunResult's trace, diff and graph tables), each with its colour bar or legend, so an exported
file is a figure of the run on screen. matplotlib is the optional extra `xlstm-viz[export]`; without it an
export is refused with the install command.
"""

from __future__ import annotations

import io

import numpy as np

from xlstm_viz.dashboard import model_tables, trace_tables
from xlstm_viz.dashboard.colors import (CONNECTION_STATE_NAMES, KIND_COLORS, POLARITY_COLORS, PREDICTION_COLORS,
                                        diverging, map_to_palette, value_range, viridis)

FORMATS = ("svg", "png")


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("exporting figures needs matplotlib: pip install 'xlstm-viz[export]'") from None
    return Figure(figsize=(width, height), layout="constrained")  # no pyplot: no global state, any thread


def _save(fig, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r}: use one of {FORMATS}")
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text: searchable and editable
        fig.savefig(buf, format=fmt, dpi=150)
    return buf.getvalue()


def _token_ticks(ax, labels: list[str], max_ticks: int = 64) -> None:
    step = max(1, int(np.ceil(len(labels) / max_ticks)))
    ticks = np.arange(0, len(labels), step)
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=6)


def trace_heatmap(trace, probe: str, stat: str, decode=None, fmt: str = "svg") -> bytes:
    """[heads x tokens] heatmap of one probe's statistic, as the Over-time view draws it."""
    if trace is None:
        raise ValueError("no run yet: nothing to export")
    if probe not in trace.stats or stat not in trace.stats[probe]:
        raise ValueError(f"the trace has no statistic {stat!r} of probe {probe!r}")
    t = trace_tables.head_time_table(trace, probe, stat)
    S, H = int(t["pos"].max()) + 1, int(t["head"].max()) + 1
    grid = t["value"].reshape(S, H).T
    labels = [s.split(":", 1)[1] for s in trace_tables.token_labels(np.asarray(trace.tokens)[0], decode)]
    fig = _figure(max(6.0, 0.14 * S + 2), 1.2 + 0.35 * H)
    ax = fig.add_subplot()
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label=stat, pad=0.01)
    ax.set_title(f"{probe}: {stat}", fontsize=9)
    ax.set_ylabel("head")
    ax.set_yticks(range(H))
    _token_ticks(ax, labels)
    return _save(fig, fmt)


def diff_plot(result, stat: str = "mean", fmt: str = "svg") -> bytes:
    """The Diff tab: max |after - before| per probe, and KL(before || after) per position coloured by whether the
    top-1 prediction changed."""
    from xlstm_viz.dashboard.diff_view import probe_change_table

    if result is None or result.diff is None or result.logit_change is None:
        raise ValueError("no diff to export: run the model, then edit something (the baseline is the first run)")
    bars = probe_change_table(result.diff, stat)
    logit = result.logit_change
    fig = _figure(9.0, 6.0)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 2])
    top.bar(np.arange(len(bars["change"])), bars["change"], color="#6a51a3", label=f"max |change| of {stat}")
    top.set_xticks(np.arange(len(bars["probe"])), list(bars["probe"]), rotation=90, fontsize=6)
    top.set_ylabel(f"max |after - before| ({stat})")
    top.set_title("largest change per probe (after - before)", fontsize=9)
    top.legend(fontsize=7)
    changed = np.asarray(logit["changed"], dtype=bool)
    pos, kl = np.asarray(logit["pos"]), np.asarray(logit["kl"])
    for mask, key, label in ((changed, "changed", "top-1 prediction changed"), (~changed, "same", "same top-1")):
        bars_ = bottom.bar(pos[mask], kl[mask], color=PREDICTION_COLORS[key], label=label)
        for rect, p in zip(bars_, pos[mask]):
            rect.set_gid(f"kl-{key}-{int(p)}")  # the SVG names each bar by its position
    bottom.set_xlabel("position")
    bottom.set_ylabel("KL (nats)")
    bottom.set_title("KL(before || after) of the next-token distribution per position", fontsize=9)
    bottom.legend(fontsize=7)
    return _save(fig, fmt)


def graph_plot(names, conns_with_state, values, title: str, value_title: str, info: dict | None = None,
               symmetric: bool = False, fmt: str = "svg") -> bytes:
    """A block or cell graph as the Model tab lays it out: node fill = the overlay value (colour bar), outline =
    cell kind, edge colour = state, an arrow per connection, each node's name and shape/parameter line."""
    from matplotlib.lines import Line2D

    conns = [(a, b) for a, b, _ in conns_with_state]
    nodes = model_tables.dag_node_table(list(names), conns, None, info)
    edges = model_tables.dag_edge_table(nodes, conns, {(a, b): s for a, b, s in conns_with_state})
    ncols = int(nodes["x"].max()) + 1 if len(nodes["x"]) else 1
    fig = _figure(max(6.0, 0.8 * ncols + 2), 4.5)
    ax = fig.add_subplot()
    for i in range(len(edges["x0"])):
        state = int(edges["polarity"][i])
        ax.annotate("", xy=(edges["x1"][i], edges["y1"][i]), xytext=(edges["x0"][i], edges["y0"][i]),
                    arrowprops=dict(arrowstyle="-|>", color=POLARITY_COLORS[state], lw=1.5, shrinkA=6, shrinkB=9,
                                    linestyle="--" if state == 0 else "-", alpha=0.4 if state == 0 else 0.85))
    # The browser's colours, not a matplotlib colormap of the same name: matplotlib's "PuOr" runs orange (low) ->
    # purple (high), Bokeh's PuOr11 purple (negative) -> orange (positive), so an exported diff read reversed.
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    v = np.asarray(values, dtype=np.float64)
    palette = diverging() if symmetric else viridis()
    lo, hi = value_range(v, symmetric=symmetric)
    sc = ax.scatter(nodes["x"], nodes["y"], c=list(map_to_palette(v, palette, symmetric=symmetric)), s=160,
                    zorder=3, edgecolors=list(nodes["color"]), linewidths=2.0)
    sc.set_gid("nodes")  # the SVG group of the node markers, in node order
    bar = ScalarMappable(norm=Normalize(lo, hi), cmap=ListedColormap(palette))
    for x, y, label, line in zip(nodes["x"], nodes["y"], nodes["label"], nodes["info"]):
        ax.annotate(label, (x, y), xytext=(6, 6), textcoords="offset points", rotation=45, fontsize=7,
                    ha="left", va="bottom", rotation_mode="anchor")
        if line:
            ax.annotate(line, (x, y), xytext=(8, 2), textcoords="offset points", rotation=45, fontsize=5,
                        color="#555555", ha="left", va="top", rotation_mode="anchor")
    fig.colorbar(bar, ax=ax, label=value_title, orientation="horizontal", pad=0.02, shrink=0.6,
                 aspect=40)
    kinds = list(dict.fromkeys(nodes["kind"]))
    handles = ([Line2D([], [], color=POLARITY_COLORS[s], lw=2, label=f"edge {CONNECTION_STATE_NAMES[s]}")
                for s in (1, -1, 0)]
               + [Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor=KIND_COLORS[k],
                         markeredgewidth=2, label=k) for k in kinds])
    ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="edge / outline",
              title_fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-0.5, ncols - 0.5 + 0.6)
    ax.set_ylim(-0.1, 1.3)
    ax.set_axis_off()
    return _save(fig, fmt)


def download_buttons(stem: str, render, label: str = "figure"):
    """SVG and PNG download buttons whose click renders `render(fmt) -> bytes` from the current result."""
    import panel as pn

    from xlstm_viz.dashboard.notifications import guarded

    buttons = [pn.widgets.FileDownload(callback=guarded(lambda fmt=fmt: io.BytesIO(render(fmt))),
                                       filename=f"{stem}.{fmt}", label=f"{label} .{fmt}", width=150, embed=False)
               for fmt in FORMATS]
    return pn.Row(*buttons)
