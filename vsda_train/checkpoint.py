"""Checkpoints: written atomically, loaded with ``weights_only=True``, resumable exactly.

A checkpoint is a plain dict of tensors and Python primitives (so ``weights_only=True``
loads it): model, optimiser and scheduler states, RNG states, iteration, config, and
what the model needs to be rebuilt (``model_config``).
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vsda_deploy.errors import VsdaError

FORMAT_VERSION = 1


class CheckpointError(VsdaError, ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


def rng_state(np_rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Return every RNG state a training step touches (torch CPU/CUDA, random, numpy)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if np_rng is not None:
        state["numpy"] = np_rng.bit_generator.state
    return state


def set_rng_state(state: dict[str, Any], np_rng: np.random.Generator | None = None) -> None:
    """Restore the RNG states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if np_rng is not None and "numpy" in state:
        np_rng.bit_generator.state = state["numpy"]


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT_VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Return a checkpoint dict, loaded with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: one line, not a traceback
        raise CheckpointError(f"{path}: not a readable vsda checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a vsda checkpoint (no 'model' entry)")
    return ckpt


def file_hash(path: str | Path, length: int = 16) -> str:
    """Return the first ``length`` hex digits of the file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]
