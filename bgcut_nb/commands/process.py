"""``bgcut-nb process``: not implemented yet."""

from __future__ import annotations

import argparse

HELP = "process (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("bgcut-nb process is not implemented yet")
