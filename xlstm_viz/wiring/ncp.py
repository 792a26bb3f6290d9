"""Neural Circuit Policies: `NCP` and `AutoNCP`, drawing exactly the random stream of ncps 1.0.1.

Neuron ids: motor [0, M), then command [M, M+C), then inter [M+C, units) -- ncps's order, kept so that
saved seeds and the LTC convention "output = first M state entries" still hold.
"""

from __future__ import annotations

import numpy as np

from . import checks
from .neurons import Wiring


class NCP(Wiring):
    """Four-layer sensory -> inter -> command -> motor wiring from `np.random.RandomState(seed)`.

    `build(input_dim)` runs four stages on one stream, as ncps does: each sensory input picks
    `sensory_fanout` inter neurons; unreached inter neurons get a fill-up fan-in; each inter neuron picks
    `inter_fanout` command neurons (plus fill-up); `recurrent_command_synapses` random command->command
    synapses (repeats overwrite); each motor neuron picks `motor_fanin` command neurons (plus fill-up).
    Every synapse polarity is `choice([-1, 1])`, drawn right after its pick.
    """

    def __init__(
        self,
        inter_neurons,
        command_neurons,
        motor_neurons,
        sensory_fanout,
        inter_fanout,
        recurrent_command_synapses,
        motor_fanin,
        seed=22222,
    ):
        inter = checks.count("inter_neurons", inter_neurons, minimum=1)
        command = checks.count("command_neurons", command_neurons, minimum=1)
        motor = checks.count("motor_neurons", motor_neurons, minimum=1)
        super().__init__(inter + command + motor)
        self.set_output_dim(motor)
        self._num_inter_neurons, self._num_command_neurons, self._num_motor_neurons = inter, command, motor
        self._sensory_fanout = checks.count("sensory_fanout", sensory_fanout)
        self._inter_fanout = checks.count("inter_fanout", inter_fanout)
        # Bounded by the number of command pairs (more draws only overwrite), so a config cannot loop for minutes.
        self._recurrent_command_synapses = checks.count("recurrent_command_synapses", recurrent_command_synapses,
                                                        maximum=command * command)
        self._motor_fanin = checks.count("motor_fanin", motor_fanin)
        self._seed = checks.count("seed", seed, minimum=0, maximum=2**32 - 1)
        self._rng = np.random.RandomState(self._seed)

        self._motor_neurons = list(range(0, motor))
        self._command_neurons = list(range(motor, motor + command))
        self._inter_neurons = list(range(motor + command, motor + command + inter))

        if self._motor_fanin > command:
            raise ValueError(f"motor_fanin is {self._motor_fanin} but there are only {command} command neurons")
        if self._sensory_fanout > inter:
            raise ValueError(f"sensory_fanout is {self._sensory_fanout} but there are only {inter} inter neurons")
        if self._inter_fanout > command:
            raise ValueError(f"inter_fanout is {self._inter_fanout} but there are only {command} command neurons")

    @property
    def num_layers(self) -> int:
        return 3

    def get_neurons_of_layer(self, layer_id) -> list[int]:
        layers = {0: self._inter_neurons, 1: self._command_neurons, 2: self._motor_neurons}
        if layer_id not in layers:
            raise ValueError(f"Unknown layer {layer_id!r}: an NCP has layers 0 (inter), 1 (command), 2 (motor)")
        return list(layers[layer_id])

    def get_type_of_neuron(self, neuron_id) -> str:
        neuron_id = checks.count("neuron_id", neuron_id, minimum=0, maximum=self.units - 1)
        if neuron_id < self._num_motor_neurons:
            return "motor"
        if neuron_id < self._num_motor_neurons + self._num_command_neurons:
            return "command"
        return "inter"

    # -- generation: the draw order below is the compatibility contract --------------------------
    def _generate_sensory(self) -> None:
        sensory = list(range(self.input_dim))
        self._num_sensory_neurons = self.input_dim
        self._sensory_neurons = sensory
        S, A = self.sensory_adjacency_matrix, self.adjacency_matrix
        I, C = self._num_inter_neurons, self._num_command_neurons
        d = len(sensory)
        self._fan_stage(S, sensory, self._inter_neurons, self._sensory_fanout,
                        fill_fanin=self._fill(d * self._sensory_fanout, I, d))
        self._fan_stage(A, self._inter_neurons, self._command_neurons, self._inter_fanout,
                        fill_fanin=self._fill(I * self._inter_fanout, C, C))
        rng = self._rng
        for _ in range(self._recurrent_command_synapses):
            src = rng.choice(self._command_neurons)
            dest = rng.choice(self._command_neurons)
            A[src, dest] = rng.choice([-1, 1])
        self._motor_stage(A)

    @staticmethod
    def _fill(total, population, upper):
        # ncps: np.clip(int(total / population), 1, upper) -- only the lower bound can bind.
        return int(np.clip(int(total / population), 1, upper))

    def _fan_stage(self, matrix, sources, targets, fanout, fill_fanin) -> None:
        """Each source picks `fanout` targets; targets nobody picked then pick `fill_fanin` sources."""
        rng = self._rng
        reached = set()
        for src in sources:
            for dest in rng.choice(targets, size=fanout, replace=False):
                reached.add(int(dest))
                matrix[src, dest] = rng.choice([-1, 1])
        for dest in targets:
            if dest not in reached:
                for src in rng.choice(sources, size=fill_fanin, replace=False):
                    matrix[src, dest] = rng.choice([-1, 1])

    def _motor_stage(self, A) -> None:
        """Each motor neuron picks `motor_fanin` command sources; unused command neurons then pick motors."""
        rng = self._rng
        used = set()
        for dest in self._motor_neurons:
            for src in rng.choice(self._command_neurons, size=self._motor_fanin, replace=False):
                used.add(int(src))
                A[src, dest] = rng.choice([-1, 1])
        fanout = self._fill(self._num_motor_neurons * self._motor_fanin, self._num_command_neurons, self._num_motor_neurons)
        for src in self._command_neurons:
            if src not in used:
                for dest in rng.choice(self._motor_neurons, size=fanout, replace=False):
                    A[src, dest] = rng.choice([-1, 1])

    # -- config ---------------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Counts and the real seed (ncps returns id lists and re-seeds its RNG, returning None)."""
        return {
            "class_name": type(self).__name__,
            "inter_neurons": self._num_inter_neurons,
            "command_neurons": self._num_command_neurons,
            "motor_neurons": self._num_motor_neurons,
            "sensory_fanout": self._sensory_fanout,
            "inter_fanout": self._inter_fanout,
            "recurrent_command_synapses": self._recurrent_command_synapses,
            "motor_fanin": self._motor_fanin,
            "seed": self._seed,
        }

    @classmethod
    def _from_config(cls, config: dict):
        config = dict(config)
        for key in ("inter_neurons", "command_neurons", "motor_neurons"):
            if isinstance(config.get(key), (list, tuple)):
                config[key] = len(config[key])  # an ncps 1.0.1 config stores the id lists
        if "seed" in config and config["seed"] is None:
            raise ValueError(
                "NCP config has seed None: ncps 1.0.1's NCP.get_config() re-seeds its RNG from OS entropy and "
                "stores None, so this wiring cannot be reproduced from its config; rebuild it from the original seed"
            )
        return cls._construct(config)


class AutoNCP(NCP):
    """NCP sized from (units, output_size, sparsity_level) with ncps's exact float steps:
    density = 1.0 - sparsity_level; command = max(int(0.4 * (units - output_size)), 1); inter = the rest;
    sensory_fanout = max(int(inter*density), 1); inter_fanout = motor_fanin = max(int(command*density), 1);
    recurrent_command_synapses = max(int(command*density*2), 1)."""

    def __init__(self, units, output_size, sparsity_level=0.5, seed=22222):
        units = checks.count("units", units, minimum=1)
        output_size = checks.count("output_size", output_size, minimum=1)
        if output_size >= units - 2:
            raise ValueError(f"output_size must be less than units - 2 (given units={units}, output_size={output_size})")
        checks.number("sparsity_level", sparsity_level)
        if not 0.1 <= sparsity_level <= 1.0:
            raise ValueError(f"sparsity_level must be in [0.1, 1.0], got {sparsity_level!r}")
        self._output_size = output_size
        self._sparsity_level = sparsity_level
        density = 1.0 - sparsity_level
        inter_and_command = units - output_size
        command = max(int(0.4 * inter_and_command), 1)
        inter = inter_and_command - command
        super().__init__(
            inter,
            command,
            output_size,
            sensory_fanout=max(int(inter * density), 1),
            inter_fanout=max(int(command * density), 1),
            recurrent_command_synapses=max(int(command * density * 2), 1),
            motor_fanin=max(int(command * density), 1),
            seed=seed,
        )

    def get_config(self) -> dict:
        return {
            "class_name": type(self).__name__,
            "units": self.units,
            "output_size": self._output_size,
            "sparsity_level": self._sparsity_level,
            "seed": self._seed,
        }

    @classmethod
    def _from_config(cls, config: dict):
        return cls._construct(config)
