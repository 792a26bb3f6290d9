"""One table per block type: the wiring template, the per-head rule and the dashboard kinds are read from it, a
cell of a registered type added to a live wiring runs, and a cell of an unknown type is refused when it is added."""

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.dashboard import model_tables
from xlstm_viz.execution.probes import probe_heads
from xlstm_viz.wiring import CellWiring
from xlstm_viz.wiring.block_types import MLSTM_BLOCK, BlockTable, CellRow

DIMS = dict(embedding_dim=64, num_heads=4, qk_dim=32, v_dim=64, ffn_dim=192)


@pytest.fixture
def model(golden_dir):
    return xlstm_viz.load_model(golden_dir / "tiny")


@pytest.fixture
def ids(golden_dir):
    return mx.array(np.load(golden_dir / "tiny" / "reference.npz")["input_ids"])


def test_mlstm_cell_wiring_has_exactly_the_cells_and_connections_of_its_table():
    wiring = CellWiring.mlstm_block(1, **DIMS)
    assert [(n[len("blocks.1."):], s.cell_type) for n, s in wiring.cells.items()] == [
        (row.local, row.cell_type) for row in MLSTM_BLOCK.cells]
    assert [(c.src[9:], c.dst[9:]) for c in wiring.connections.values()] == list(MLSTM_BLOCK.connections)
    gate = wiring.cells["blocks.1.mlstm.igate"].params
    assert gate["shape"] == [4, 64] and gate["bias"] == "mlstm_layer.igate_preact.bias" and gate["bias_shape"] == [4]


def test_per_head_rule_follows_each_cells_declared_head_rule():
    for row in MLSTM_BLOCK.cells:
        width = 64
        expected = {"heads": 4, "features": width, "none": 1}[row.head_rule()]
        assert probe_heads(row.local, width, 4) == expected, row.local
    assert probe_heads("mlstm.q", 64, 4) == 4 and probe_heads("mlstm.igate", 4, 4) == 4
    assert probe_heads("ffn.gate", 192, 4) == 1


def test_dashboard_node_kinds_come_from_the_block_table():
    names = list(CellWiring.mlstm_block(0, **DIMS).cells)  # the graph the dashboard draws is the real wiring
    assert [n[len("blocks.0."):] for n in names] == [row.local for row in MLSTM_BLOCK.cells]
    kinds = {n[len("blocks.0."):]: model_tables.cell_kind(n) for n in names}
    assert kinds["mlstm.igate"] == kinds["mlstm.ogate"] == "gate"
    assert kinds["mlstm.memory"] == "memory" and kinds["mlstm.q"] == "projection"
    assert kinds["ffn.gate"] == kinds["ffn.up"] == "ffn" and kinds["mlstm.out"] == "residual"
    assert model_tables.cell_kind("embedding") == "input" and model_tables.cell_kind("blocks.2") == "block"


def test_adding_a_cell_of_an_unregistered_type_is_refused_when_it_is_added():
    wiring = CellWiring.mlstm_block(0, **DIMS)
    with pytest.raises(ValueError, match=r"blocks\.0\.extra.*unknown cell type 'wavelet'.*registered cell types"):
        wiring.add_cell("blocks.0.extra", "wavelet", {"features": 64})
    assert "blocks.0.extra" not in wiring.cells


def test_a_block_table_refuses_unregistered_types_and_dangling_connections():
    with pytest.raises(ValueError, match="unknown cell type 'wavelet'"):
        BlockTable("bad", cells=(CellRow("in", "wavelet", features=lambda d: 1),), connections=())
    with pytest.raises(ValueError, match="connection in->nowhere names no cell 'nowhere'"):
        BlockTable("bad", cells=(CellRow("in", "block_input", features=lambda d: 1),),
                   connections=(("in", "nowhere"),))


def test_a_linear_cell_added_to_a_live_wiring_runs_by_its_type(model, ids):
    """A second out-projection fed from mlstm.h into mid doubles the mLSTM layer's update: the same logits as
    scaling blocks.0.mlstm.out by 2."""
    base = np.array(model(ids)[0])
    wiring = model.cell_wirings[0]
    p = "blocks.0"
    shape = wiring.cells[f"{p}.mlstm.out"].params["shape"]
    wiring.add_cell(f"{p}.mlstm.out2", "linear",
                    {"weight": "mlstm_layer.out_proj.weight", "shape": shape, "features": shape[0]})
    wiring.connect(f"{p}.mlstm.h", f"{p}.mlstm.out2", weight="mlstm_layer.out_proj.weight", shape=shape)
    wiring.connect(f"{p}.mlstm.out2", f"{p}.mid")
    edited = np.array(model(ids)[0])
    assert f"{p}.mlstm.out2" in model.probe_names()
    assert np.abs(edited - base).max() > 1e-3 * np.abs(base).max()

    fresh = xlstm_viz.load_model(model.source)
    fresh.interventions.add(f"{p}.mlstm.out", "scale", 2.0)
    expected = np.array(fresh(ids)[0])
    np.testing.assert_allclose(edited, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_config_accepts_layer_types_as_lfm2_spells_them():
    from xlstm_viz.config import ConfigError, XLSTMConfig

    base = dict(embedding_dim=64, num_heads=4, num_blocks=2, vocab_size=32)
    config = XLSTMConfig.from_dict({**base, "layer_types": ["mlstm", "mlstm"]})
    assert config.layer_types() == ["mlstm", "mlstm"] and config.block_types == ["mlstm", "mlstm"]
    assert "layer_types" not in config.extra
    assert XLSTMConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="'block_types' has 3 entries but num_blocks = 2"):
        XLSTMConfig.from_dict({**base, "layer_types": ["mlstm"] * 3})
    with pytest.raises(ConfigError, match="'layer_types' .* and 'block_types' .* disagree"):
        XLSTMConfig.from_dict({**base, "layer_types": ["mlstm", "mlstm"], "block_types": ["mlstm", "slstm"]})


def test_a_registered_cell_type_without_a_function_is_refused_by_name_when_the_model_runs(model, ids):
    from xlstm_viz.wiring.block_types import CELL_TYPES, CellType, register_cell_type

    register_cell_type(CellType("wavelet_nofn"))
    try:
        wiring = model.cell_wirings[0]
        wiring.add_cell("blocks.0.extra", "wavelet_nofn", {"features": 64})
        wiring.connect("blocks.0.mid", "blocks.0.extra")
        with pytest.raises(ValueError, match=r"cell 'blocks\.0\.extra': cell type 'wavelet_nofn' is registered "
                                             r"without a function"):
            model(ids)
    finally:
        del CELL_TYPES["wavelet_nofn"]


def test_traces_and_the_debugger_watch_the_forward_through_the_observer_protocol(model, ids):
    """Both are Observers; the memory cell reports a StateEvent with the state it started from and returned (the
    debugger's state view is that state), every other cell a plain CellEvent."""
    from xlstm_viz.execution.debugger import Debugger, _Stepper
    from xlstm_viz.execution.trace import Recorder
    from xlstm_viz.model.forward import Executor
    from xlstm_viz.model.observer import CellEvent, Observer, StateEvent

    assert isinstance(Recorder(model, None, "stats"), Observer) and isinstance(_Stepper(), Observer)

    class Collect:
        stepping = False

        def __init__(self):
            self.events = []

        def wants_memory_trace(self, block):
            return block == 1

        def on_cell(self, event):
            self.events.append(event)

    seen = Collect()
    logits, state = Executor(model).forward_observed(ids, observer=seen)
    memory = [e for e in seen.events if isinstance(e, StateEvent)]
    assert [e.name for e in memory] == [f"blocks.{j}.mlstm.memory" for j in range(len(model.blocks))]
    assert all(type(e) is CellEvent for e in seen.events if e not in memory)
    assert memory[0].zero_state_in and memory[0].memory_trace is None and memory[1].memory_trace is not None
    assert memory[-1].state is state[-1]  # the state the cell returned is the block's new state
    np.testing.assert_allclose(np.array(memory[1].memory_trace.m[..., -1]), np.array(state[1].m[..., 0]), rtol=1e-5)
    ev = Debugger(model, ids, mode="chunkwise").run_to("blocks.1.mlstm.memory")
    np.testing.assert_array_equal(ev.state["C"], np.array(state[1].C))
