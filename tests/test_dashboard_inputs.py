"""Bad input in the dashboard gets a message that names the value, and nothing is replaced or run silently."""

from __future__ import annotations

import pytest

from xlstm_viz.dashboard.inputs import check_int, int_input
from xlstm_viz.dashboard.session import MAX_PROMPT_CHARS


from dashboard_fixtures import app, model  # noqa: F401 - fixtures


@pytest.mark.parametrize("cell, message", [
    ("nonsense", "no cell 'nonsense' in this model"),
    ("", "no cell given"),
    ("   ", "no cell given"),
    ("blocks.9.mlstm.memory", "block 9 does not exist, the model has blocks 0..1"),
    ("blocks.0.mlstm.igat", "did you mean blocks.0.mlstm.igate"),
])
def test_ablating_a_nonexistent_cell_is_refused_and_not_listed(app, cell, message):
    with pytest.raises(ValueError, match=message):
        app.session.ablate(cell)
    assert app.session.ablations() == []
    app.session.ablate("blocks.0.mlstm.igate")  # the session keeps working
    listed = app.session.ablations()
    assert len(listed) == 1 and "blocks.0.mlstm.igate" in listed[0]


def test_a_prompt_over_the_limit_is_refused_whole_not_cut(app):
    prompt_before, tokens_before = app.session.prompt, app.session.tokens.copy()
    with pytest.raises(ValueError, match=f"longer than the limit of {MAX_PROMPT_CHARS:,} characters"):
        app.session.set_prompt("1 " * (MAX_PROMPT_CHARS // 2 + 1))
    assert app.session.prompt == prompt_before and (app.session.tokens == tokens_before).all()
    # the box lets one character more through, so the browser never cuts a prompt the session would accept
    assert app.prompt_input.max_length == MAX_PROMPT_CHARS + 1
    app.session.set_prompt("1 " * 1000)  # a long prompt under the limit runs in full
    assert len(app.session.tokens) == 1000 and app.session.trace.tokens.shape[1] == 1000


@pytest.mark.parametrize("prompt, message", [
    ("99999999999999999999", "token id 99999999999999999999 at position 0 is outside the vocabulary [0, 130)"),
    ("5 2147483648", "token id 2147483648 at position 1 is outside the vocabulary [0, 130)"),
    ("5 -1", "token id -1 at position 1 is outside the vocabulary [0, 130)"),
    ("\u00b2", "unknown token label '\u00b2' at position 0"),  # '²' passes str.isdigit() but int() refuses it
    ("--3", "unknown token label '--3' at position 0"),
])
def test_a_prompt_token_that_is_no_valid_id_is_refused_by_value_and_position(app, prompt, message):
    prompt_before = app.session.prompt
    with pytest.raises(ValueError) as info:
        app.session.set_prompt(prompt)
    assert message in str(info.value) and type(info.value) is ValueError
    assert app.session.prompt == prompt_before


@pytest.mark.parametrize("owner, name, label, bad", [
    ("trace_view", "top_k", "top-k", 50),
    ("trace_view", "top_k", "top-k", 0),
    ("model_view", "block", "block", 7),
    ("model_view", "seed", "sparsity seed", -1),
    ("app", "pairs", "MQAR pairs", 1000),
    ("app", "example_seed", "example seed", -3),
])
def test_an_out_of_range_number_is_reported_and_the_field_keeps_the_value_in_use(app, owner, name, label, bad):
    obj = app if owner == "app" else getattr(app, owner)
    widget = int_input(obj, name, label)
    before = getattr(obj, name)
    with pytest.raises(ValueError, match=f"{label} {bad} is out of range: allowed"):
        widget.value = bad
    assert getattr(obj, name) == before and widget.value == before
    lo, hi = obj.param[name].bounds
    good = lo + 1 if hi is None or lo + 1 <= hi else lo
    widget.value = good
    assert getattr(obj, name) == good


def test_check_int_names_value_and_range():
    assert check_int("top-k", 3, (1, 10)) == 3
    with pytest.raises(ValueError, match=r"top-k 11 is out of range: allowed 1\.\.10"):
        check_int("top-k", 11, (1, 10))
    with pytest.raises(ValueError, match=r"seed: None is not a whole number \(allowed >= 0\)"):
        check_int("seed", None, (0, None))


def test_an_imported_edit_description_with_markup_is_shown_as_text_not_html(app):
    # An edits file is outside input: its "said" comes back as the sidebar's "last edit" line (undo / redo) and
    # the status line shows error texts; both are Markdown panes, which pass HTML through (an image on another host).
    import json

    markup = '<img src="http://example.invalid/x.png">'  # raw HTML that Panel's Markdown (markdown-it) passes on
    doc = {"format": "xlstm-viz-edits", "version": 1, "actions": [{
        "said": markup, "key": ["cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", -1],
        "edits": [{"wiring": "cell", "block": 0, "kind": "set_polarity", "detail": {}, "changes": [
            {"target": ["connection", "blocks.0.mlstm.v", "blocks.0.mlstm.memory", "polarity"], "before": 1,
             "after": -1}]}]}]}
    app._import_edits(type("Event", (), {"new": json.dumps(doc).encode()}))
    app.session.undo()
    assert app.session.last_action.startswith(f"undid: {markup}")
    assert "<img" not in app._action.object and "&lt;img src=" in app._action.object
    app.session.status = f"error: no cell {markup}"
    app._on_status()
    assert "<img" not in app._status.object and "&lt;img src=" in app._status.object


@pytest.mark.parametrize("field", ["heads", "positions"])
def test_an_ablation_index_that_is_a_digit_but_no_number_is_refused_by_field(app, field):
    dv = app.diff_view
    setattr(dv, f"ablate_{field}", "0 \u00b2")  # '²' passes str.isdigit(); int() refuses it
    with pytest.raises(ValueError, match=f"{field}: '\u00b2' is not an index"):
        dv.ablate()
    assert app.session.ablations() == []
