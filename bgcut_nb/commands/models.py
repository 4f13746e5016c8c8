"""``bgcut-nb models``: not implemented yet."""

from __future__ import annotations

import argparse

HELP = "models (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("bgcut-nb models is not implemented yet")
