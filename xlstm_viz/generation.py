"""Streaming generation: prefill the prompt chunkwise, then decode one token at a time from the recurrent state."""

from __future__ import annotations

from typing import Iterator, Sequence

import mlx.core as mx
import numpy as np


def _sample(logits: mx.array, temperature: float, top_k: int | None, key) -> int:
    if temperature <= 0:
        return int(mx.argmax(logits, axis=-1).item())
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = mx.sort(logits, axis=-1)[..., -top_k]
        logits = mx.where(logits < kth, -mx.inf, logits)
    return int(mx.random.categorical(logits, key=key).item())


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
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
    as_text = isinstance(prompt, str)
    tokenizer = getattr(model, "tokenizer", None)
    if as_text:
        if tokenizer is None:
            raise ValueError("a text prompt needs a tokenizer: the checkpoint folder has no tokenizer.json; pass token ids")
        ids = tokenizer.encode(prompt).ids
    else:
        ids = np.asarray(prompt).reshape(-1).tolist()
    if not ids:
        raise ValueError("the prompt is empty: generation needs at least one token")
    return _stream(model, ids, max_new_tokens, temperature, top_k, seed, set(stop_tokens or ()), tokenizer if as_text else None)


def _stream(model, ids, max_new_tokens, temperature, top_k, seed, stop, tokenizer):
    key = mx.random.key(seed)
    logits, state = model(mx.array([ids], dtype=mx.int32), mode="chunkwise")
    generated: list[int] = []
    text_so_far = ""
    for _ in range(max_new_tokens):
        key, sub = mx.random.split(key)
        token = _sample(logits[:, -1, :], temperature, top_k, sub)
        generated.append(token)
        if tokenizer is None:
            yield token
        else:
            text = tokenizer.decode(generated)
            yield text[len(text_so_far):]
            text_so_far = text
        if token in stop:
            return
        logits, state = model(mx.array([[token]], dtype=mx.int32), state=state, mode="recurrent")
