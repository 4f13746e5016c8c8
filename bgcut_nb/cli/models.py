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
    lst = sub.add_parser(
        "list", help="list known models: whether installed, size, licence, input size, path"
    )
    lst.add_argument("--model-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import logging

    from bgcut_nb.contract.errors import ModelUnavailableError
    from bgcut_nb.engine.models import (
        DEFAULT_MODEL,
        MODELS,
        ensure_model,
        model_file,
        unverified_allowed,
        verify_file,
    )

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.models_command == "list":
        # installed: yes (checksum verified), no, or "unverified" (a file under the registry's
        # name whose checksum does not match: used only with BGCUT_MODEL_UNVERIFIED=1)
        print(f"{'name':<22} {'installed':<10} {'size':>10} {'licence':<11} {'input':<9}  path")
        for name, spec in MODELS.items():
            path = model_file(name, args.model_dir)
            problem = verify_file(path, spec)
            state = "yes" if problem is None else "no" if problem == "not present" else "unverified"
            size = f"{spec.approx_mb:.1f}MB" + ("" if spec.size_bytes else "~")
            shape = "x".join(map(str, spec.input_size))
            print(f"{name:<22} {state:<10} {size:>10} {spec.licence:<11} {shape:<9}  {path}")
        if unverified_allowed():
            print("BGCUT_MODEL_UNVERIFIED is set: unverified copies are used", file=sys.stderr)
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
