"""The first screen's text is written from the loaded model: its task and its blocks in order."""

import xlstm_viz as xv
from xlstm_viz.dashboard.intro import intro_text
from xlstm_viz.demo import demo_path, load_task


def test_hybrid_intro_names_the_ncp_block_first_then_the_mlstm_and_the_live_ncps_tab():
    text = intro_text(xv.load_demo(name="hybrid"), load_task(demo_path("hybrid")))
    assert "(32 keys, 32 values)" in text
    assert "block 0: an **NCP block**" in text and "block 1: an **mLSTM** block" in text
    assert "The NCPS (live model) tab edits" in text


def test_demo_intro_says_both_blocks_are_mlstm_and_a_model_without_task_says_so():
    model = xv.load_demo()
    text = intro_text(model, load_task())
    assert "blocks 0-1: an **mLSTM** block" in text and "(64 keys, 64 values)" in text and "NCPS" not in text
    assert "no bundled task" in intro_text(model, None)
