"""How many cores this process may run on."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Return the cores this process may run on (its CPU affinity: a SLURM allocation, not the node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
