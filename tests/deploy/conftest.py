"""Fixtures shared by the deploy tests: a tiny exported model, torch on one thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.deploy.test_backends import export_tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return export_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: its OpenMP workers spin, and on a busy 2-core machine two of them ran
    a width-8 model 30x slower than one (measured); results do not depend on the thread count here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
