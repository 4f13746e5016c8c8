"""How many CPU cores this process may use: the one count behind every default pool size."""

from __future__ import annotations

import os

__all__ = ["available_cpus"]


def available_cpus() -> int:
    """The cores this process may run on (its CPU affinity, where the OS has one; else the
    machine's count); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
