"""Wirings of xLSTM models: what the user looks at and edits (numpy + networkx only, no MLX).

Three kinds share one edit mechanism (`edits.Editable`: undo, listeners, `version`, JSON):

* Neuron wirings, `Wiring`, `FullyConnected`, `Random`, `NCP`, `AutoNCP`: the ncps 1.0.1 classes with the
  same arguments, attributes and methods. For equal arguments, seed and input_dim the matrices are
  bit-identical to ncps's (same numpy RNGs, same calls, same order), so seeds saved by ncps users
  reproduce. We write our own rather than depend on ncps because ncps 1.0.1 does not declare numpy,
  and it has bugs that matter for live editing: `build` is not idempotent (a second build grows the
  wiring), `NCP.get_config` returns id lists and re-seeds the RNG (so it never round-trips),
  `Wiring.from_config` loses the subclass, `draw_graph` mutates its caller's colour dict and
  `get_graph` ignores `include_sensory_neurons`. Those are fixed here; the random streams are not.
* `BlockWiring` (block.py): embedding -> blocks -> out_norm -> lm_head, read from a checkpoint's headers.
* `CellWiring` (cell.py): the cells and connections inside one mLSTM block, built from the block's table
  (block_types.py: the registered cell types and one table of cells and connections per block type).

`profiles` holds `HyperProfile`s: initialisation settings bundled as JSON (validated with pydantic).
"""

from .block import BlockSpec, BlockWiring, Edge
from .cell import CellSpec, CellWiring, Connection
from .diff import WiringDiff, diff
from .edits import Change, Editable, EditEvent
from .fully_connected import FullyConnected
from .layout import ROLE_ORDER, layered_layout
from .masks import element_mask
from .ncp import NCP, AutoNCP
from .neurons import Wiring
from .profiles import HyperProfile, list_profiles, load_profile, parameter_kind
from .random_sparse import Random

__all__ = [
    # neuron wirings, ncps-compatible
    "Wiring",
    "FullyConnected",
    "Random",
    "NCP",
    "AutoNCP",
    "ROLE_ORDER",
    "layered_layout",
    # block and cell wirings
    "BlockWiring",
    "BlockSpec",
    "Edge",
    "CellWiring",
    "CellSpec",
    "Connection",
    "element_mask",
    # editing
    "Editable",
    "EditEvent",
    "Change",
    "diff",
    "WiringDiff",
    # profiles
    "HyperProfile",
    "load_profile",
    "list_profiles",
    "parameter_kind",
]
