"""Deterministic layered layout: one column per role, sensory -> inter -> command -> motor."""

from __future__ import annotations

from collections.abc import Mapping

ROLE_ORDER = ("sensory", "inter", "command", "motor")


def layered_layout(wiring_or_roles, include_sensory_neurons: bool = True) -> dict[str, tuple[float, float]]:
    """{node: (x, y)} for drawing. Accepts a wiring (anything with `roles()`) or a {node: role} mapping.

    Columns follow ROLE_ORDER, skipping roles with no nodes; x runs 0..1 across the used columns.
    Within a column nodes keep their order (ids ascending) from top (y = 1) to bottom (y = -1);
    a lone node sits at y = 0. The same wiring always gives the same positions.
    """
    if isinstance(wiring_or_roles, Mapping):
        roles = dict(wiring_or_roles)
    else:
        try:
            roles = wiring_or_roles.roles(include_sensory_neurons=include_sensory_neurons)
        except TypeError:
            roles = wiring_or_roles.roles()
    unknown = sorted({r for r in roles.values() if r not in ROLE_ORDER})
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}; a layered layout knows {list(ROLE_ORDER)}")
    columns = [[n for n, r in roles.items() if r == role] for role in ROLE_ORDER]
    columns = [c for c in columns if c]
    positions = {}
    for col, nodes in enumerate(columns):
        x = col / (len(columns) - 1) if len(columns) > 1 else 0.0
        for row, node in enumerate(nodes):
            y = 1.0 - 2.0 * row / (len(nodes) - 1) if len(nodes) > 1 else 0.0
            positions[node] = (x, y)
    return positions
