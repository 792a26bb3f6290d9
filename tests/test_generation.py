"""Streaming generation: the pipelined decode loop yields what a step-by-step eager loop yields, and the lazy
entry of the compiled step checks what it can without evaluating the ids."""

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.generation import _sample

PROMPT = [5, 17, 3, 44]


@pytest.fixture
def model(golden_dir):
    return xlstm_viz.load_model(golden_dir / "tiny")


def eager_tokens(model, prompt, n, temperature=0.0, top_k=None, seed=0, stop=()):
    """The loop generate ran before it pipelined: one eager recurrent step after each token is read."""
    key = mx.random.key(seed)
    logits, state = model(mx.array([prompt], dtype=mx.int32), mode="chunkwise")
    out = []
    for _ in range(n):
        key, sub = mx.random.split(key)
        tok = int(_sample(logits[:, -1, :], temperature, top_k, sub).item())
        out.append(tok)
        if tok in stop:
            break
        logits, state = model(mx.array([[tok]], dtype=mx.int32), state=state, mode="recurrent")
    return out


def test_pipelined_greedy_generation_yields_the_eager_loops_tokens(model):
    assert list(xlstm_viz.generate(model, PROMPT, max_new_tokens=12)) == eager_tokens(model, PROMPT, 12)


def test_pipelined_sampling_draws_the_eager_loops_tokens_for_a_seed(model):
    got = list(xlstm_viz.generate(model, PROMPT, max_new_tokens=10, temperature=1.5, top_k=7, seed=11))
    assert got == eager_tokens(model, PROMPT, 10, temperature=1.5, top_k=7, seed=11)
    assert len(set(got)) > 1  # a draw, not the argmax over and over


def test_generation_stops_at_a_stop_token_and_yields_it(model):
    free = list(xlstm_viz.generate(model, PROMPT, max_new_tokens=8))
    stop = free[3]
    first = free.index(stop)
    got = list(xlstm_viz.generate(model, PROMPT, max_new_tokens=8, stop_tokens=[stop]))
    assert got == free[: first + 1]


def test_zero_and_one_new_tokens(model):
    assert list(xlstm_viz.generate(model, PROMPT, max_new_tokens=0)) == []
    assert list(xlstm_viz.generate(model, PROMPT, max_new_tokens=1)) == eager_tokens(model, PROMPT, 1)


def test_generation_follows_a_wiring_edit_made_between_calls(model):
    before = list(xlstm_viz.generate(model, PROMPT, max_new_tokens=8))
    model.cell_wirings[0].set_polarity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.v", -1)
    after = list(xlstm_viz.generate(model, PROMPT, max_new_tokens=8))
    assert after == eager_tokens(model, PROMPT, 8)  # the kept compiled step re-traced for the edit
    assert after != before


def test_lazy_step_on_an_unevaluated_token_matches_the_checked_step(model):
    step = model.compiled_step()
    logits, state = step(mx.array([PROMPT[:1]], dtype=mx.int32), None)
    token = mx.argmax(logits[:, -1, :], axis=-1).astype(mx.int32).reshape(1, 1)  # lazy
    lazy_logits, _ = step.lazy(token, state)
    mx.eval(token)
    checked = model.compiled_step()
    _, state2 = checked(mx.array([PROMPT[:1]], dtype=mx.int32), None)
    want, _ = checked(token, state2)
    np.testing.assert_array_equal(np.array(lazy_logits), np.array(want))


def test_lazy_step_still_refuses_a_wrong_shape_or_dtype(model):
    step = model.compiled_step()
    with pytest.raises(ValueError, match=r"input_ids must have shape \[B, S\], got shape \(1,\)"):
        step.lazy(mx.array([1], dtype=mx.int32), None)
    with pytest.raises(TypeError, match="integer dtype, got mlx.core.float32"):
        step.lazy(mx.array([[1.0]]), None)
    with pytest.raises(ValueError, match=r"input_ids\[0, 0\] = 4000 is outside the vocabulary"):
        step(mx.array([[4000]], dtype=mx.int32), None)  # the checked entry reads the values


def test_lazy_step_does_not_read_the_ids_on_the_host(model):
    # What lets generate queue step t+1 before step t is done: the lazy entry never evaluates the ids, so it cannot
    # see an id outside the vocabulary (its contract: ids the model sampled from its own logits); the checked entry,
    # given the same array, reads it and refuses it.
    step = model.compiled_step()
    bad = mx.array([[4000]], dtype=mx.int32) + 0
    step.lazy(bad, None)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        step(bad, None)


def test_a_batch_of_prompts_or_non_integer_ids_are_refused_not_flattened_or_truncated(model):
    """generate takes one prompt. A [2, S] batch used to be flattened into one sequence of 2*S tokens and [1.5, 2]
    truncated to [1, 2], each generating silently from a prompt the user did not give. A [1, S] array is one prompt
    and gives what its list gives."""
    with pytest.raises(ValueError, match=r"generate takes one prompt: .*got shape \(2, 2\)"):
        xlstm_viz.generate(model, [[1, 2], [3, 4]], max_new_tokens=2)
    with pytest.raises(ValueError, match=r"got shape \(2, 3\)"):
        xlstm_viz.generate(model, mx.array([[1, 2, 3], [4, 5, 6]]), max_new_tokens=2)
    with pytest.raises(TypeError, match=r"token ids must be integers, got dtype float64"):
        xlstm_viz.generate(model, [1.5, 2], max_new_tokens=2)
    want = list(xlstm_viz.generate(model, [1, 2, 3], max_new_tokens=3))
    assert list(xlstm_viz.generate(model, mx.array([[1, 2, 3]]), max_new_tokens=3)) == want
    assert list(xlstm_viz.generate(model, np.array([[1, 2, 3]]), max_new_tokens=3)) == want


def test_a_shared_view_made_after_the_model_generated_decodes_with_its_own_wiring(model):
    """generate keeps its compiled decode step in the model's attributes, and shared_view() (copy.copy) copied it:
    a view made after the base model had generated decoded every token after the first with the base's step, so
    with the base's wiring and interventions (its own edits reached only the prefill). Now each model builds its
    own step: the view's tokens are the eager loop's on the view, and the base's stay the base's."""
    before = list(xlstm_viz.generate(model, PROMPT, max_new_tokens=10))
    view = model.shared_view()
    for j in range(model.config.num_blocks):
        view.cell_wirings[j].set_enabled(f"blocks.{j}.mlstm.memory", f"blocks.{j}.mlstm.norm", False)
    view.interventions.add("blocks.0.ffn.h", "scale", value=-1.0)
    want = eager_tokens(view, PROMPT, 10)
    assert want != before  # the edits change what the view generates
    assert list(xlstm_viz.generate(view, PROMPT, max_new_tokens=10)) == want
    assert list(xlstm_viz.generate(model, PROMPT, max_new_tokens=10)) == before


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer >= 0, got 2.5"),
    ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0, got -1"),
    ({"temperature": "1"}, "temperature must be a finite number >= 0, got '1'"),
    ({"temperature": float("nan")}, "temperature must be a finite number >= 0, got nan"),
    ({"temperature": 1.0, "top_k": 2.0}, "top_k must be a positive integer or None, got 2.0"),
    ({"temperature": 1.0, "seed": -1}, "seed must be an integer in [0, 2**64), got -1"),
    ({"stop_tokens": 5}, "stop_tokens must be a sequence of token ids (integers), got 5"),
])
def test_generate_refuses_bad_arguments_by_name(model, kwargs, message):
    # max_new_tokens=2.5 once never ended: the count of tokens generated never equals 2.5
    args = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError) as err:
        next(iter(xlstm_viz.generate(model, PROMPT, **args)), None)
    assert message in str(err.value)


def test_top_k_without_sampling_is_refused_as_a_no_op(model):
    # Greedy decoding takes the argmax whatever top_k is: the same tokens for every k, so the argument did nothing
    assert list(xlstm_viz.generate(model, PROMPT, 6, temperature=1.0, top_k=1, seed=2)) == \
        list(xlstm_viz.generate(model, PROMPT, 6))  # top-1 sampling is the greedy path: top_k acts when sampling
    with pytest.raises(ValueError, match="top_k=5 does nothing at temperature=0"):
        xlstm_viz.generate(model, PROMPT, 6, top_k=5)
