"""The CLIs report vsda's own errors in one line; any other exception is a bug and keeps its traceback.

Each case makes one function inside a command fail: with a project error (``VsdaError``) the command
prints one line and exits with its code; with a plain ``ValueError`` / ``RuntimeError`` / ``IndexError``
(what numpy or torch raise for a shape or index bug) the exception itself leaves the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from vsda_deploy.data import DatasetError
from vsda_deploy.errors import VsdaError
from vsda_deploy.options import OptionError
from vsda_deploy.sources import SourceError

BUGS = [ValueError("operands could not be broadcast together with shapes (3,) (4,)"),
        RuntimeError("The size of tensor a (64) must match the size of tensor b (32) at non-singleton dimension 3"),
        IndexError("index 15 is out of bounds for axis 0 with size 15")]


def _export_error(message: str) -> VsdaError:
    from vsda_export.onnx_export import ExportError

    return ExportError(message)


def _config_error(message: str) -> VsdaError:
    from vsda_train.config import ConfigError

    return ConfigError(message)


@dataclass(frozen=True)
class Case:
    """A command, the internal function made to fail in it, and the one line a project error gives."""

    name: str
    app: Callable[[], typer.Typer]
    args: list[str]
    target: str  # module.function that raises
    error: Callable[[], VsdaError]
    line: str  # what the command prints for ``error`` (stderr)
    code: int


CASES = [
    Case("vsda-infer", lambda: import_module("vsda_deploy.cli").app, ["clip.mp4", "--model", "model.onnx"],
         "vsda_deploy.infer.load_segmenter", lambda: SourceError("clip.mp4: cannot open as a video"),
         "error: clip.mp4: cannot open as a video", 1),
    Case("vsda-infer option", lambda: import_module("vsda_deploy.cli").app, ["clip.mp4", "--model", "model.onnx"],
         "vsda_deploy.infer.load_segmenter", lambda: OptionError("--device cuda:0: no such GPU"),
         "error: --device cuda:0: no such GPU", 2),
    Case("vsda-export", lambda: import_module("vsda_export.cli").app, ["ckpt.pt", "-o", "model.onnx", "--no-check"],
         "vsda_export.onnx_export.load_for_export", lambda: _export_error("ckpt.pt: checkpoint not found"),
         "vsda-export: ckpt.pt: checkpoint not found", 1),
    Case("vsda-train source", lambda: import_module("vsda_train.cli").app, ["source", "--no-eval"],
         "vsda_train.phases.train_source", lambda: _config_error("data.source is empty: give a dataset spec"),
         "error: data.source is empty: give a dataset spec", 2),  # a config value: the user's input
    Case("vsda-train eval", lambda: import_module("vsda_train.cli").app,
         ["eval", "--pred", "pred", "--gt", "cityscapes-vps:gt"], "vsda_train.cli.evaluate.evaluate_folder",
         lambda: DatasetError("pred/a.png: unknown class id(s) [20]"),
         "error: pred/a.png: unknown class id(s) [20]", 1),
    Case("vsda-train flow", lambda: import_module("vsda_train.cli").app, ["flow", "viper:data/viper"],
         "vsda_train.flow_pairs.dataset_pass", lambda: DatasetError("data/viper/train/img: not found"),
         "error: data/viper/train/img: not found", 2),
    Case("vsda-train synth", lambda: import_module("vsda_train.cli").app, ["synth", "out"],
         "vsda_train.cli.synth.generate", lambda: OptionError("more than 255 things in one clip; lower the densities"),
         "more than 255 things in one clip; lower the densities", 1),
]


def _raising(error: BaseException) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


def _invoke(case: Case, error: BaseException, monkeypatch: pytest.MonkeyPatch, folder: Path) -> Result:
    monkeypatch.chdir(folder)
    monkeypatch.setattr(case.target, _raising(error))
    return CliRunner().invoke(case.app(), case.args)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_project_error_is_one_line_with_its_exit_code(case: Case, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    res = _invoke(case, case.error(), monkeypatch, tmp_path)
    assert res.exit_code == case.code and isinstance(res.exception, SystemExit)
    assert res.stderr.strip().splitlines() == [case.line]


@pytest.mark.parametrize("bug", BUGS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("case", [c for c in CASES if c.name != "vsda-infer option"], ids=lambda c: c.name)
def test_any_other_exception_leaves_the_command_with_its_traceback(case: Case, bug: Exception, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    res = _invoke(case, bug, monkeypatch, tmp_path)
    assert res.exit_code == 1 and res.exception is bug
    assert traceback.extract_tb(res.exc_info[2])[-1].name == "fail"  # raised where it happened, not re-raised
    assert "error" not in res.stderr.lower()  # no one-line summary hides it


@pytest.mark.parametrize("bug", BUGS, ids=lambda e: type(e).__name__)
def test_the_formats_benchmark_lets_a_bug_through_and_reports_a_bad_model(bug: Exception, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.suites.formats import load_source

    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    monkeypatch.setattr("vsda_export.onnx_export.load_for_export", _raising(bug))
    with pytest.raises(type(bug)) as caught:
        load_source(model, (64, 128))
    assert caught.value is bug
    monkeypatch.setattr("vsda_export.onnx_export.load_for_export",
                        _raising(_export_error(f"{model}: not a vsda checkpoint")))
    with pytest.raises(SystemExit, match=f"^error: --model {model}: not a vsda checkpoint$"):
        load_source(model, (64, 128))


def test_vsda_infer_prints_the_traceback_of_a_bug_on_stderr(tmp_path: Path) -> None:
    """As a user runs it: the exception's type, message and the frame that raised it reach the terminal."""
    script = ("import sys\n"
              "import vsda_deploy.infer\n"
              "from vsda_deploy.cli import app\n"
              "def load_segmenter(*args, **kwargs):\n"
              "    raise RuntimeError('The size of tensor a (64) must match the size of tensor b (32)')\n"
              "vsda_deploy.infer.load_segmenter = load_segmenter\n"
              "sys.argv = ['vsda-infer', 'clip.mp4', '--model', 'model.onnx']\n"
              "app()\n")
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "load_segmenter" in done.stderr
    assert "RuntimeError: The size of tensor a (64) must match the size of tensor b (32)" in done.stderr
    assert "error: The size" not in done.stderr
