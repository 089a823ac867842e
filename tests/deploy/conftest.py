"""Fixtures shared by the deploy tests: a tiny exported model, torch on one thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.test_backends import export_tiny_model
from tests.helpers import one_torch_thread  # noqa: F401 - autouse: torch on one thread


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return export_tiny_model(tmp_path_factory.mktemp("model"))
