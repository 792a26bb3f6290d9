"""Render the README picture of what the demo model learned (assets/demo_recall.png).

One seeded MQAR sequence goes through `xlstm_viz.load_demo()` with `model.run_with_trace`; the picture shows, per
token: the token strip (keys, values, queries), the input-gate pre-activation of every head of every block, the size
of each block's matrix memory, and the probability the model gives the right value at each query.

Drawn with Pillow (installed with Bokeh) so that no browser or plotting library is needed:

    PYTHONPATH=. python tools/demo_figure.py [--out assets/demo_recall.png] [--pairs 12] [--queries 6] [--seed 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]

KEY, VALUE, QUERY, OTHER = (52, 101, 164), (214, 120, 38), (90, 90, 90), (150, 150, 150)
GRID, TEXT = (225, 225, 225), (30, 30, 30)
HEAD_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (140, 86, 75), (227, 119, 194),
                (127, 127, 127), (188, 189, 34)]


def _font(size: int):
    # DejaVu has the arrows and norm bars; Pillow's built-in font is the fallback.
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/Library/Fonts/Arial Unicode.ttf"):
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _diverging(values: np.ndarray, limit: float) -> np.ndarray:
    """Blue (negative) - white - red (positive) colours, [..., 3] uint8."""
    t = np.clip(values / limit, -1, 1)[..., None]
    white = np.array([255.0, 255, 255])
    red, blue = np.array([178.0, 24, 43]), np.array([33.0, 102, 172])
    rgb = np.where(t >= 0, white + t * (red - white), white - t * (blue - white))
    return rgb.astype(np.uint8)


def _token_colour(label: str):
    return KEY if label.startswith("K") else VALUE if label.startswith("V") else QUERY if label == "?" else OTHER


def collect(model, ids: np.ndarray) -> dict:
    """Everything the picture shows, from the model's own trace of one sequence."""
    import mlx.core as mx

    trace = model.run_with_trace(mx.array(ids[None]), probes=["blocks.*.mlstm.igate", "blocks.*.mlstm.memory"])
    nb = model.config.num_blocks
    igate = np.stack([trace.stats[f"blocks.{j}.mlstm.igate"]["value"][0] for j in range(nb)])  # [NB, S, NH]
    # Memory size without the stabiliser: C_t = C~_t exp(-m_t), so log||C~_t|| = log||C_t|| + m_t.
    log_c = np.stack([
        np.log(trace.stats[f"blocks.{j}.mlstm.memory"]["C_norm"][0] + 1e-30) + trace.stats[f"blocks.{j}.mlstm.memory"]["m"][0]
        for j in range(nb)
    ])  # [NB, S, NH]
    logits = trace.logits[0]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return {"igate": igate, "log_c": log_c, "probs": probs, "pred": logits.argmax(-1)}


def render(task, ids, targets, mask, data, title: str) -> Image.Image:
    labels = task.decode(ids)
    S = len(labels)
    nb, _, nh = data["igate"].shape
    cell, left, right = 34, 190, 30
    width = left + S * cell + right
    f_small, f_mid, f_big = _font(13), _font(15), _font(19)

    strip_h, gate_h, mem_h, recall_h = 46, nb * nh * 12 + (nb - 1) * 8, 170, 120
    top = 50
    y_strip = top
    y_gate = y_strip + strip_h + 34
    y_mem = y_gate + gate_h + 40
    y_recall = y_mem + mem_h + 40
    height = y_recall + recall_h + 60
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    x0 = left

    def col_x(t):
        return x0 + t * cell

    d.text((16, 14), title, fill=TEXT, font=f_big)

    # Token strip; at the queries, the model's answer under the token.
    d.text((16, y_strip + 8), "input tokens", fill=TEXT, font=f_mid)
    for t, lab in enumerate(labels):
        d.rectangle([col_x(t) + 1, y_strip, col_x(t) + cell - 2, y_strip + 26], fill=_token_colour(lab))
        d.text((col_x(t) + cell / 2, y_strip + 13), lab, fill="white", font=f_small, anchor="mm")
        if mask[t]:
            answer = task.labels[int(data["pred"][t])]
            good = int(data["pred"][t]) == int(targets[t])
            d.text((col_x(t) + cell / 2, y_strip + 36), "→" + answer, fill=(0, 130, 0) if good else (200, 0, 0),
                   font=f_small, anchor="mm")

    # Input-gate pre-activations, one row per (block, head).
    d.text((16, y_gate - 24), "input gate i (pre-activation, per head)", fill=TEXT, font=f_mid)
    limit = float(np.abs(data["igate"]).max()) or 1.0
    y = y_gate
    for j in range(nb):
        block = _diverging(data["igate"][j].T, limit)  # [NH, S, 3]
        tile = Image.fromarray(block).resize((S * cell, nh * 12), Image.NEAREST)
        img.paste(tile, (x0, y))
        d.text((16, y + nh * 6), f"block {j}  heads 0-{nh - 1}", fill=TEXT, font=f_small, anchor="lm")
        y += nh * 12 + 8
    d.text((width - right - 260, y_gate - 24), f"blue −{limit:.0f}  ·  white 0  ·  red +{limit:.0f}",
           fill=TEXT, font=f_small)

    # Memory size per head of the last block (the one that stores the pairs), log scale.
    j = nb - 1
    d.text((16, y_mem - 24), f"block {j} memory size log‖C‖ without the stabiliser (log‖C_t‖ + m_t), per head", fill=TEXT, font=f_mid)
    series = data["log_c"][j]  # [S, NH]
    lo, hi = float(series.min()), float(series.max())
    span = hi - lo or 1.0
    d.rectangle([x0, y_mem, x0 + S * cell, y_mem + mem_h], outline=GRID)
    for frac in (0.25, 0.5, 0.75):
        yy = y_mem + mem_h * frac
        d.line([x0, yy, x0 + S * cell, yy], fill=GRID)
    d.text((x0 - 8, y_mem), f"{hi:.1f}", fill=TEXT, font=f_small, anchor="ra")
    d.text((x0 - 8, y_mem + mem_h), f"{lo:.1f}", fill=TEXT, font=f_small, anchor="rd")
    for h in range(series.shape[1]):
        pts = [(col_x(t) + cell / 2, y_mem + mem_h - (series[t, h] - lo) / span * mem_h) for t in range(S)]
        d.line(pts, fill=HEAD_COLOURS[h % len(HEAD_COLOURS)], width=2)
        d.text((16, y_mem + 20 + 16 * h), f"head {h}", fill=HEAD_COLOURS[h % len(HEAD_COLOURS)], font=f_small)

    # Probability of the right value at each query.
    d.text((16, y_recall - 24), "p(correct value) at the queries", fill=TEXT, font=f_mid)
    d.rectangle([x0, y_recall, x0 + S * cell, y_recall + recall_h], outline=GRID)
    d.line([x0, y_recall + recall_h * 0.5, x0 + S * cell, y_recall + recall_h * 0.5], fill=GRID)
    d.text((x0 - 8, y_recall), "1", fill=TEXT, font=f_small, anchor="ra")
    d.text((x0 - 8, y_recall + recall_h), "0", fill=TEXT, font=f_small, anchor="rd")
    for t in np.flatnonzero(mask):
        p = float(data["probs"][t, int(targets[t])])
        d.rectangle([col_x(t) + 6, y_recall + recall_h * (1 - p), col_x(t) + cell - 6, y_recall + recall_h],
                    fill=VALUE)
        d.text((col_x(t) + cell / 2, y_recall + recall_h + 12), f"{p:.2f}", fill=TEXT, font=f_small, anchor="mm")
    return img


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "assets" / "demo_recall.png"))
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--queries", type=int, default=6)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)

    import xlstm_viz

    model = xlstm_viz.load_demo()
    task = model.task
    ids, targets, mask = (a[0] for a in task.sample(np.random.default_rng(args.seed), args.pairs, args.queries))
    data = collect(model, ids)
    acc = float((data["pred"][mask] == targets[mask]).mean())
    title = (f"xlstm-viz demo model (MQAR): {args.pairs} key-value pairs, {args.queries} queries, "
             f"{acc:.0%} recalled (seed {args.seed})")
    out = Path(args.out)
    render(task, ids, targets, mask, data, title).save(out, optimize=True)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
