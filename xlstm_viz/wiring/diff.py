"""Compare two wirings synapse by synapse."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WiringDiff:
    """Synapses (as (src, dst) node names) only in b (`added`), only in a (`removed`), or in both with
    opposite polarity (`flipped`). Each list is in a's / b's synapse order."""

    added: list[tuple[str, str]]
    removed: list[tuple[str, str]]
    flipped: list[tuple[str, str]]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.flipped)


def diff(a, b) -> WiringDiff:
    """What changes from wiring `a` to wiring `b`. Works for any wiring with `synapses()` ->
    {(src, dst): polarity}; for block and cell wirings disabled edges count as absent."""
    sa, sb = a.synapses(), b.synapses()
    return WiringDiff(
        added=[k for k in sb if k not in sa],
        removed=[k for k in sa if k not in sb],
        flipped=[k for k in sa if k in sb and sa[k] != sb[k]],
    )
