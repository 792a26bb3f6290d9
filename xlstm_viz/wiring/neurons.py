"""`Wiring`: the ncps neuron-level wiring (adjacency matrices of +1/-1/0 synapses), made editable.

Behaviour and names follow ncps 1.0.1's `ncps.wirings.Wiring`, with its bugs fixed:
`build` is idempotent, `get_config`/`from_config` round-trip through JSON and return the right class,
`get_graph` honours `include_sensory_neurons`, the initializers honour `dtype`, and errors name the bad value.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import checks, documents
from .edits import Change, Editable
from .masks import element_mask, name_seed

_WIRING_CLASSES: dict[str, type] = {}
_FORMAT = "xlstm_viz.wiring.neurons/1"


class Wiring(Editable):
    """A recurrent wiring of `units` neurons fed by `input_dim` sensory inputs.

    `adjacency_matrix[src, dest]` and `sensory_adjacency_matrix[sensory_src, dest]` are int32 in {-1, 0, +1}
    (+1 excitatory, -1 inhibitory, 0 no synapse). Neuron ids 0..output_dim-1 are the motor (output) neurons.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _WIRING_CLASSES[cls.__name__] = cls

    def __init__(self, units):
        # Bounded before the dense matrices are allocated (checks.MAX_UNITS).
        self.units = checks.count("units", units, minimum=1, maximum=checks.MAX_UNITS)
        self.adjacency_matrix = np.zeros([self.units, self.units], dtype=np.int32)
        self.sensory_adjacency_matrix = None
        self.input_dim = None
        self.output_dim = None
        # ncps regenerates sensory synapses on every build(); we generate them once.
        self._sensory_generated = False
        self._init_edits()

    # -- structure (ncps API) ------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return 1

    def get_neurons_of_layer(self, layer_id) -> list[int]:
        return list(range(self.units))

    def is_built(self) -> bool:
        return self.input_dim is not None

    def build(self, input_dim) -> None:
        """Fix the input dimension and generate the sensory synapses. Building again with the same
        dimension changes nothing (ncps would draw a second set of synapses); another dimension raises."""
        input_dim = checks.count("input_dim", input_dim, minimum=1, maximum=checks.MAX_INPUTS)
        if self.input_dim is not None and self.input_dim != input_dim:
            raise ValueError(
                f"Conflicting input dimensions provided: the wiring was built for input_dim={self.input_dim} "
                f"but build() got input_dim={input_dim}"
            )
        if self.input_dim is None:
            self.set_input_dim(input_dim)
        if not self._sensory_generated:
            self._generate_sensory()
            self._sensory_generated = True

    def _generate_sensory(self) -> None:
        """Subclasses draw their sensory synapses here (called once per wiring)."""

    def set_input_dim(self, input_dim) -> None:
        self.input_dim = checks.count("input_dim", input_dim, minimum=1, maximum=checks.MAX_INPUTS)
        self.sensory_adjacency_matrix = np.zeros([self.input_dim, self.units], dtype=np.int32)
        self._sensory_generated = False

    def set_output_dim(self, output_dim) -> None:
        self.output_dim = checks.count("output_dim", output_dim, minimum=1, maximum=self.units)

    def get_type_of_neuron(self, neuron_id) -> str:
        neuron_id = checks.count("neuron_id", neuron_id, minimum=0, maximum=self.units - 1)
        if self.output_dim is None:
            raise ValueError("output_dim is not set: call set_output_dim() before asking for neuron types")
        return "motor" if neuron_id < self.output_dim else "inter"

    # -- synapses (ncps API, recorded as edits) ------------------------------------------------
    def add_synapse(self, src, dest, polarity) -> None:
        src = checks.count("src", src, 0, self.units - 1)
        dest = checks.count("dest", dest, 0, self.units - 1)
        polarity = checks.polarity("polarity", polarity, allow_zero=False)
        self._set_entries("add_synapse", "synapse", [(src, dest, polarity)])

    def add_sensory_synapse(self, src, dest, polarity) -> None:
        self._require_built("add a sensory synapse")
        src = checks.count("sensory src", src, 0, self.input_dim - 1)
        dest = checks.count("dest", dest, 0, self.units - 1)
        polarity = checks.polarity("polarity", polarity, allow_zero=False)
        self._set_entries("add_sensory_synapse", "sensory", [(src, dest, polarity)])

    @property
    def synapse_count(self):
        """Number of synapses between neurons (np.int64, like ncps)."""
        return np.sum(np.abs(self.adjacency_matrix), dtype=np.int64)

    @property
    def sensory_synapse_count(self):
        """Number of synapses from the sensory inputs (np.int64, like ncps)."""
        self._require_built("count sensory synapses")
        return np.sum(np.abs(self.sensory_adjacency_matrix), dtype=np.int64)

    def erev_initializer(self, shape=None, dtype=None) -> np.ndarray:
        """Copy of the adjacency matrix (the LTC reversal-potential init); `dtype` is honoured."""
        return self._initializer(self.adjacency_matrix, shape, dtype, "adjacency_matrix")

    def sensory_erev_initializer(self, shape=None, dtype=None) -> np.ndarray:
        self._require_built("make the sensory erev initializer")
        return self._initializer(self.sensory_adjacency_matrix, shape, dtype, "sensory_adjacency_matrix")

    @staticmethod
    def _initializer(matrix, shape, dtype, what):
        if shape is not None and tuple(shape) != matrix.shape:
            raise ValueError(f"{what} has shape {matrix.shape}, initializer was asked for {tuple(shape)}")
        return np.array(matrix, dtype=dtype) if dtype is not None else np.copy(matrix)

    # -- editing -------------------------------------------------------------------------------
    def set_polarity(self, src, dest, polarity, sensory: bool = False) -> None:
        """Set one synapse to +1 / -1, or clear it with 0. `sensory=True` addresses the sensory matrix."""
        polarity = checks.polarity("polarity", polarity, allow_zero=True)
        if sensory:
            self._require_built("edit a sensory synapse")
            src = checks.count("sensory src", src, 0, self.input_dim - 1)
        else:
            src = checks.count("src", src, 0, self.units - 1)
        dest = checks.count("dest", dest, 0, self.units - 1)
        self._set_entries("set_polarity", "sensory" if sensory else "synapse", [(src, dest, polarity)])

    def set_sparsity(self, level: float, seed: int = 0, include_sensory: bool = True) -> None:
        """Regenerate which synapses exist: exactly round(level * size) pairs of each matrix are left
        without a synapse, chosen by a mask that depends only on (seed, shape, level). Synapses that
        survive keep their polarity; new ones get a seeded polarity (P(-1) = 1/3, as in ncps's
        FullyConnected/Random). One undoable edit."""
        checks.number("sparsity level", level)
        if not 0.0 <= float(level) < 1.0:
            raise ValueError(f"sparsity level must be in [0, 1), got {level!r}")
        seed = checks.count("seed", seed, minimum=0)
        entries = self._sparsity_entries("synapse", self.adjacency_matrix, level, seed)
        if include_sensory and self.is_built():
            entries += self._sparsity_entries("sensory", self.sensory_adjacency_matrix, level, seed)
        changes = [Change((m, s, d), self._matrix(m)[s, d].item(), p) for m, s, d, p in entries]
        self._commit("set_sparsity", changes, level=float(level), seed=seed, include_sensory=include_sensory)

    @staticmethod
    def _sparsity_entries(which, matrix, level, seed):
        keep = element_mask(name_seed(seed, which), matrix.shape, float(level)) > 0
        drawn = np.random.default_rng(name_seed(seed, which + ".polarity")).choice([-1, 1, 1], size=matrix.shape)
        target = np.where(keep, np.where(matrix != 0, matrix, drawn), 0)
        rows, cols = np.nonzero(target != matrix)
        return [(which, int(s), int(d), int(target[s, d])) for s, d in zip(rows, cols)]

    def _set_entries(self, kind, which, entries) -> None:
        matrix = self._matrix(which)
        self._commit(kind, [Change((which, s, d), int(matrix[s, d]), p) for s, d, p in entries])

    def _matrix(self, which) -> np.ndarray:
        if which == "synapse":
            return self.adjacency_matrix
        if which == "sensory":
            return self.sensory_adjacency_matrix
        raise ValueError(f"unknown synapse matrix {which!r}")

    def _apply_change(self, target, value) -> None:
        which, src, dest = target
        self._matrix(which)[src, dest] = value

    def _require_built(self, action: str) -> None:
        if not self.is_built():
            raise ValueError(f"Cannot {action} before build(input_dim) has been called")

    # -- names, roles, graph -------------------------------------------------------------------
    def roles(self, include_sensory_neurons: bool = True) -> dict[str, str]:
        """{node name: role} with roles sensory / inter / command / motor, neurons first."""
        roles = {f"neuron_{i}": self.get_type_of_neuron(i) for i in range(self.units)}
        if include_sensory_neurons and self.is_built():
            roles.update({f"sensory_{i}": "sensory" for i in range(self.input_dim)})
        return roles

    def synapses(self) -> dict[tuple[str, str], int]:
        """{(src node, dest node): polarity} of every synapse, sensory first, row-major (like get_graph)."""
        found = {}
        if self.is_built():
            for s, d in zip(*np.nonzero(self.sensory_adjacency_matrix)):
                found[(f"sensory_{s}", f"neuron_{d}")] = int(self.sensory_adjacency_matrix[s, d])
        for s, d in zip(*np.nonzero(self.adjacency_matrix)):
            found[(f"neuron_{s}", f"neuron_{d}")] = int(self.adjacency_matrix[s, d])
        return found

    def get_graph(self, include_sensory_neurons: bool = True):
        """networkx.DiGraph with nodes neuron_i / sensory_i (attribute `neuron_type`) and edges carrying
        `polarity` = "excitatory" | "inhibitory". Without sensory neurons the wiring need not be built."""
        import networkx as nx

        if include_sensory_neurons:
            self._require_built("draw the graph with sensory neurons")
        graph = nx.DiGraph()
        for node, role in self.roles(include_sensory_neurons).items():
            graph.add_node(node, neuron_type=role)
        for (src, dest), sign in self.synapses().items():
            if include_sensory_neurons or not src.startswith("sensory_"):
                graph.add_edge(src, dest, polarity="excitatory" if sign >= 0 else "inhibitory")
        return graph

    def draw_graph(self, layout="shell", neuron_colors=None, synapse_colors=None, draw_labels=False):
        """ncps's matplotlib drawing (see `drawing.draw_graph`); returns the legend handles."""
        from .drawing import draw_graph

        return draw_graph(self, layout, neuron_colors, synapse_colors, draw_labels)

    # -- config and JSON -----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-safe constructor config plus `class_name`; `Wiring.from_config` gives back this class."""
        return {
            "class_name": type(self).__name__,
            "units": self.units,
            "adjacency_matrix": self.adjacency_matrix.tolist(),
            "sensory_adjacency_matrix": None
            if self.sensory_adjacency_matrix is None
            else self.sensory_adjacency_matrix.tolist(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
        }

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild from `get_config()` (or an ncps config without `class_name`); never mutates `config`.
        With a `class_name` the matching subclass is built, which must be `cls` or a subclass of it."""
        if not isinstance(config, dict):
            raise ValueError(f"a wiring config must be a JSON object, got {type(config).__name__}")
        config = dict(config)
        name = config.pop("class_name", None)
        target = cls
        if name is not None:
            target = _WIRING_CLASSES.get(name) if name != "Wiring" else Wiring
            if target is None:
                raise ValueError(f"unknown wiring class_name {name!r}; known: {sorted(_WIRING_CLASSES) + ['Wiring']}")
            if not issubclass(target, cls):
                raise ValueError(f"config is for {name}, which is not a {cls.__name__}")
        try:
            return target._from_config(config)
        except (TypeError, ValueError) as err:  # a wrong type is a document error like any other; name the config
            prefix = f"{target.__name__} config: "
            raise ValueError(str(err) if str(err).startswith(prefix) else prefix + str(err)) from None

    @classmethod
    def _from_config(cls, config: dict):
        allowed = {"units", "adjacency_matrix", "sensory_adjacency_matrix", "input_dim", "output_dim"}
        _check_keys(cls.__name__, config, allowed, required={"units"})
        wiring = cls(config["units"])
        if config.get("input_dim") is not None:
            wiring.set_input_dim(config["input_dim"])
            wiring._sensory_generated = True
        if config.get("adjacency_matrix") is not None:
            wiring.adjacency_matrix = _matrix_from_list(config["adjacency_matrix"], (wiring.units, wiring.units), "config.adjacency_matrix")
        if config.get("sensory_adjacency_matrix") is not None:
            if wiring.input_dim is None:
                raise ValueError("config has a sensory_adjacency_matrix but input_dim is None")
            wiring.sensory_adjacency_matrix = _matrix_from_list(
                config["sensory_adjacency_matrix"], (wiring.input_dim, wiring.units), "config.sensory_adjacency_matrix"
            )
        if config.get("output_dim") is not None:
            wiring.set_output_dim(config["output_dim"])
        return wiring

    @classmethod
    def _construct(cls, config: dict):
        """`cls(**config)` after checking the keys against the constructor, so a bad key is named, not a TypeError."""
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        required = {p.name for p in params if p.default is inspect.Parameter.empty}
        _check_keys(cls.__name__, config, {p.name for p in params}, required)
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this wiring exactly: config, matrices, edit history, version."""
        return {
            "format": _FORMAT,
            "config": self.get_config(),
            "input_dim": self.input_dim,
            "sensory_generated": self._sensory_generated,
            "output_dim": self.output_dim,
            "adjacency_matrix": self.adjacency_matrix.tolist(),
            "sensory_adjacency_matrix": None
            if self.sensory_adjacency_matrix is None
            else self.sensory_adjacency_matrix.tolist(),
            "edits": self._edits_to_json(),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict):
        """Rebuild from `to_dict()`. The document is validated first (`documents`): types, sizes, matrices,
        ids in the edit history and its consistency with the matrices; errors name the field and value."""
        what = f"{cls.__name__} document"
        doc = documents.parse(documents.NeuronDoc, data, what, _FORMAT)
        wiring = cls.from_config(doc.config)
        if doc.input_dim is not None and wiring.input_dim is None:
            # Rebuilding from the seed leaves the random stream where the original's was.
            if doc.sensory_generated:
                wiring.build(doc.input_dim)
            else:
                wiring.set_input_dim(doc.input_dim)
        if doc.input_dim != wiring.input_dim:
            raise ValueError(f"{what}: input_dim is {doc.input_dim!r} but its config gives {wiring.input_dim!r}")
        if doc.output_dim is not None:
            if wiring.output_dim is not None and wiring.output_dim != doc.output_dim:
                raise ValueError(f"{what}: output_dim is {doc.output_dim} but its config gives {wiring.output_dim}")
            wiring.set_output_dim(doc.output_dim)
        wiring.adjacency_matrix = _matrix_from_list(doc.adjacency_matrix, (wiring.units, wiring.units), "adjacency_matrix")
        if doc.sensory_adjacency_matrix is not None:
            if wiring.input_dim is None:
                raise ValueError(f"{what}: sensory_adjacency_matrix is given but input_dim is null")
            wiring.sensory_adjacency_matrix = _matrix_from_list(
                doc.sensory_adjacency_matrix, (wiring.input_dim, wiring.units), "sensory_adjacency_matrix"
            )
        elif wiring.input_dim is not None:
            raise ValueError(f"{what}: input_dim is {wiring.input_dim} but sensory_adjacency_matrix is null")
        documents.check_history(doc.edits, what, wiring._read_target, _check_synapse_value)
        wiring._edits_from_json(data["edits"])
        return wiring

    def _check_change_value(self, target, value, where) -> None:  # Editable.apply_edit
        _check_synapse_value(target, value, where)

    def _read_target(self, target: tuple):
        if len(target) != 3 or target[0] not in ("synapse", "sensory"):
            raise ValueError("a synapse target is ['synapse' | 'sensory', src, dest]")
        which, src, dest = target
        if which == "sensory" and self.sensory_adjacency_matrix is None:
            raise ValueError("the wiring has no sensory matrix (input_dim is null)")
        matrix = self._matrix(which)
        for name, index, size in (("src", src, matrix.shape[0]), ("dest", dest, matrix.shape[1])):
            if type(index) is not int or not 0 <= index < size:
                raise ValueError(f"{name} {index!r} is out of range [0, {size})")
        return int(matrix[src, dest])

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def save(self, path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def load(cls, path):
        return cls.from_json(Path(path).read_text())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(units={self.units}, input_dim={self.input_dim}, output_dim={self.output_dim}, "
            f"synapses={int(self.synapse_count)}, version={self.version})"
        )


def _matrix_from_list(values, shape, what) -> np.ndarray:
    # Checked as lists first: numpy would turn a ragged or mixed list into an object array or a vague error.
    documents.matrix_rows(values, shape[0], shape[1], what)
    return np.array(values, dtype=np.int32).reshape(shape)


def _check_synapse_value(target, value, where) -> None:
    if type(value) is not int or value not in (-1, 0, 1):
        raise ValueError(f"{where} = {value!r}: a synapse is -1, 0 or +1")


def _check_keys(name: str, config: dict, allowed: set, required: set) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"{name} config: unknown key(s) {unknown}; expected {sorted(allowed)}")
    missing = sorted(required - set(config))
    if missing:
        raise ValueError(f"{name} config: missing key(s) {missing}")
