"""``bgcut-nb quickstart``: not implemented yet."""

from __future__ import annotations

import argparse

HELP = "quickstart (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("bgcut-nb quickstart is not implemented yet")
