"""``bgcut-nb serve``: not implemented yet."""

from __future__ import annotations

import argparse

HELP = "serve (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("bgcut-nb serve is not implemented yet")
