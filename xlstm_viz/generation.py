"""Streaming generation: prefill the prompt chunkwise, then decode one token at a time from the recurrent state."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import mlx.core as mx
import numpy as np


def _sample(logits: mx.array, temperature: float, top_k: int | None, key) -> mx.array:
    """The next token of each row, [B, 1] int32, still lazy: reading it is the caller's one wait per token."""
    if temperature <= 0:
        token = mx.argmax(logits, axis=-1)
    else:
        logits = logits / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = mx.sort(logits, axis=-1)[..., -top_k]
            logits = mx.where(logits < kth[..., None], -mx.inf, logits)
        token = mx.random.categorical(logits, key=key)
    return token.astype(mx.int32).reshape(-1, 1)


def _decode_step(model):
    """The model's compiled decode step, built once per model: it re-traces itself when the wiring, interventions
    or chunk length change (XLSTM.compiled), and keeping it keeps its traced graphs across calls of generate."""
    step = vars(model).get("_generate_step")
    # a copy of the model (model.shared_view(), copy.copy) copies its attributes, this step among them: that step
    # runs the model it was built on, with that model's wirings and interventions, so a copy builds its own
    if step is None or getattr(step, "model", None) is not model:
        step = vars(model)["_generate_step"] = model.compiled_step()
        step.model = model
    return step


def generate(
    model,
    prompt: str | Sequence[int] | np.ndarray | mx.array,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    stop_tokens: Sequence[int] | None = None,
) -> Iterator[int] | Iterator[str]:
    """Yield new token ids, or text pieces when `prompt` is a string (needs the checkpoint's tokenizer.json).

    The prompt is consumed by one chunkwise call; each new token then costs one recurrent step, using the state.
    temperature 0 (default) decodes greedily; above 0 it samples, from the `top_k` most likely tokens when given
    (top_k at temperature 0 is refused: it would change nothing), with draws seeded by `seed`.
    """
    def integer(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    # A non-integer count would never equal the number generated: the loop would not end (2.5 ran forever).
    if not integer(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (not integer(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_k is not None and temperature == 0:
        raise ValueError(f"top_k={top_k} does nothing at temperature=0 (greedy decoding takes the argmax): "
                         "pass temperature > 0 to sample from the top k, or leave top_k out")
    if not integer(seed) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if stop_tokens is not None and (isinstance(stop_tokens, (str, bytes)) or not hasattr(stop_tokens, "__iter__")
                                    or not all(integer(t) for t in stop_tokens)):
        raise ValueError(f"stop_tokens must be a sequence of token ids (integers), got {stop_tokens!r}")
    as_text = isinstance(prompt, str)
    tokenizer = getattr(model, "tokenizer", None)
    if as_text:
        if tokenizer is None:
            raise ValueError("a text prompt needs a tokenizer: the checkpoint folder has no tokenizer.json; pass token ids")
        ids = tokenizer.encode(prompt).ids
    else:
        ids = np.asarray(prompt)
        if ids.ndim > 1 and ids.shape[0] != 1 or ids.ndim > 2:  # flattened, a batch would run as one sequence
            raise ValueError(f"generate takes one prompt: a list of token ids or a [1, S] array, got shape "
                             f"{tuple(ids.shape)}")
        if ids.size and not (np.issubdtype(ids.dtype, np.integer) or ids.dtype == object):
            raise TypeError(f"the prompt's token ids must be integers, got dtype {ids.dtype}")
        ids = ids.reshape(-1).tolist()
    if not ids:
        raise ValueError("the prompt is empty: generation needs at least one token")
    if max_new_tokens > 1 and len(getattr(model, "interventions", ())):
        model.interventions.check_no_positions()  # the decode steps run from a state: refused before any token
    return _stream(model, ids, max_new_tokens, temperature, top_k, seed, set(stop_tokens or ()), tokenizer if as_text else None)


def _stream(model, ids, max_new_tokens, temperature, top_k, seed, stop, tokenizer):
    key = mx.random.key(seed)

    def draw(logits):
        nonlocal key
        key, sub = mx.random.split(key)
        return _sample(logits[:, -1, :], temperature, top_k, sub)

    if max_new_tokens == 0:
        return
    step = _decode_step(model)
    logits, state = model(mx.array([ids], dtype=mx.int32), mode="chunkwise")
    token = draw(logits)
    generated: list[int] = []
    text_so_far = ""
    while True:
        # Queue step n+1 on the still-lazy token n before reading it: the device computes the next step while the
        # host waits for this token and hands it out (one step of look-ahead, as mlx-lm does), instead of
        # building each step only after the previous one finished. Shapes are checked; the ids are the model's own
        # argmax or draw, inside the vocabulary by construction.
        last = len(generated) + 1 == max_new_tokens
        if not last:
            logits, state = step.lazy(token, state)
            following = draw(logits)
            mx.async_eval(following)
        value = int(token.item())
        generated.append(value)
        if tokenizer is None:
            yield value
        else:
            text = tokenizer.decode(generated)
            yield text[len(text_so_far):]
            text_so_far = text
        if value in stop or last:
            return
        token = following
