"""Subcommands of ``bgcut-nb`` (see :mod:`bgcut_nb.cli`)."""
