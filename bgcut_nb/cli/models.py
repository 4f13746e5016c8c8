"""``bgcut-nb models``: pre-fetch segmentation models, or list where they are."""

from __future__ import annotations

import argparse
import sys

HELP = "fetch (pull) or list the segmentation models of the local engine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir", default=None, help="model folder (default: BGCUT_MODEL_DIR or user cache)"
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    pull = sub.add_parser("pull", help="fetch and verify models into the model folder")
    pull.add_argument(
        "names", nargs="*", metavar="NAME", help="model names, or 'all' (default: u2netp)"
    )
    pull.add_argument("--model-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    lst = sub.add_parser("list", help="list known models, whether present, path and size")
    lst.add_argument("--model-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import logging

    from bgcut_nb.contract.errors import ModelUnavailableError
    from bgcut_nb.engine.models import DEFAULT_MODEL, MODELS, ensure_model, model_file, verify_file

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.models_command == "list":
        print(f"{'name':<8} {'present':<8} {'size':>10}  path")
        for name, spec in MODELS.items():
            path = model_file(name, args.model_dir)
            present = verify_file(path, spec) is None
            size = f"{spec.size_bytes / 1e6:.1f} MB"
            print(f"{name:<8} {'yes' if present else 'no':<8} {size:>10}  {path}")
        from bgcut_nb.engine.pipeline import LocalEngine

        try:
            print(LocalEngine(args.model_dir).describe())
        except ValueError as exc:  # a bad BGCUT_ONNX_PROVIDERS
            print(f"bgcut-nb models: {exc}", file=sys.stderr)
            return 2
        return 0

    names = args.names or [DEFAULT_MODEL]
    if "all" in names:
        names = list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(
            f"unknown model(s): {', '.join(unknown)}; known: {', '.join(MODELS)}", file=sys.stderr
        )
        return 2
    status = 0
    for name in names:
        try:
            path = ensure_model(name, model_dir=args.model_dir)
        except ModelUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {path}")
    return status
