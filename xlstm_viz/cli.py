"""`xlstm-viz` console script: serve the dashboard, print a model summary, train the demo model."""

from __future__ import annotations

import argparse
import sys


def _info(args) -> int:
    import xlstm_viz.blas as blas
    from xlstm_viz.demo import demo_path

    import xlstm_viz

    from xlstm_viz.demo import DEMOS

    if args.model in DEMOS:
        model = xlstm_viz.load_demo(name=args.model)
    else:
        model = xlstm_viz.load_model(args.model) if args.model else xlstm_viz.load_demo()
    print(model.summary())
    print(f"source: {model.source or demo_path()}")
    for j, block in enumerate(model.blocks):
        if getattr(block, "wiring", None) is not None:
            print(f"blocks.{j} ({block.block_type}) neuron wiring: {block.wiring!r}")
    print(blas.describe())
    from xlstm_viz.execution import stats

    print(stats.describe())
    print(f"block wiring: {model.block_wiring!r}")
    print(f"probes per token: {len(model.probe_names())} (e.g. {', '.join(model.probe_names()[:6])}, ...)")
    return 0


def _serve(args) -> int:
    from xlstm_viz.dashboard.app import serve

    try:  # serve loads the model first: a missing or broken checkpoint is an error here, before any port is bound
        serve(model_path=args.model, port=args.port, show=args.show, address=args.address)
    except OSError as err:  # port in use, no such interface, address that does not resolve
        raise ValueError(f"cannot listen on {args.address}:{args.port}: {err.strerror or err}") from err
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not an integer") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: must be in 0..65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlstm-viz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the dashboard (default: the bundled demo model)")
    serve.add_argument("--model", default=None,
                       help="a bundled model (demo, hybrid) or a checkpoint folder (config.json + safetensors)")
    serve.add_argument("--port", type=_port, default=5006, help="TCP port (default: %(default)s)")
    serve.add_argument("--address", default="localhost", help="interface to bind (default: localhost only)")
    serve.add_argument("--show", action=argparse.BooleanOptionalAction, default=False, help="open a browser tab")
    serve.set_defaults(func=_serve)

    info = sub.add_parser("info", help="print the model summary, BLAS in use and probe names")
    info.add_argument("--model", default=None,
                      help="a bundled model (demo, hybrid) or a checkpoint folder (default: the demo model)")
    info.set_defaults(func=_info)

    from xlstm_viz.training import add_train_demo_parser

    add_train_demo_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError, KeyError, FloatingPointError) as err:
        print(f"xlstm-viz: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
