"""ncps-style matplotlib drawing of a neuron wiring (matplotlib is optional and imported on use)."""

from __future__ import annotations

from .layout import layered_layout

DEFAULT_NEURON_COLORS = {"inter": "tab:blue", "command": "tab:cyan", "motor": "tab:orange", "sensory": "tab:olive"}
DEFAULT_SYNAPSE_COLORS = {"excitatory": "tab:green", "inhibitory": "tab:red"}


def draw_graph(wiring, layout="shell", neuron_colors=None, synapse_colors=None, draw_labels=False):
    """Draw `wiring` on the current matplotlib axes and return legend handles, like ncps 1.0.1, except:
    the caller's `neuron_colors` is not mutated, command neurons get a default colour, and
    `layout="layered"` uses `layered_layout`."""
    try:
        import matplotlib.patches as mpatches
    except ImportError as exc:
        raise ImportError("draw_graph needs matplotlib, which xlstm-viz does not install: pip install matplotlib") from exc
    import networkx as nx

    if isinstance(synapse_colors, str):
        synapse_colors = {"excitatory": synapse_colors, "inhibitory": synapse_colors}
    synapse_colors = {**DEFAULT_SYNAPSE_COLORS, **(synapse_colors or {})}
    colors = dict(neuron_colors or {})
    for role, color in DEFAULT_NEURON_COLORS.items():
        colors.setdefault(role, color)

    graph = wiring.get_graph()
    layouts = {
        "layered": lambda g: layered_layout(wiring),
        "kamada": nx.kamada_kawai_layout,
        "circular": nx.circular_layout,
        "random": nx.random_layout,
        "shell": nx.shell_layout,
        "spring": nx.spring_layout,
        "spectral": nx.spectral_layout,
        "spiral": nx.spiral_layout,
    }
    if layout not in layouts:
        raise ValueError(f"Unknown layout {layout!r}, use one of {sorted(layouts)}")
    pos = layouts[layout](graph)
    for node, data in graph.nodes(data=True):
        nx.draw_networkx_nodes(graph, pos, [node], node_color=colors[data["neuron_type"]])
    if draw_labels:
        nx.draw_networkx_labels(graph, pos)
    for src, dst, data in graph.edges(data=True):
        nx.draw_networkx_edges(graph, pos, [(src, dst)], edge_color=synapse_colors[data["polarity"]])
    return [mpatches.Patch(color=c, label=f"{k[0].upper()}{k[1:]} neurons") for k, c in colors.items()]
