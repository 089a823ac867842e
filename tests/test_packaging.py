"""Install-level promises: layering and console scripts."""

import subprocess
import sys

import pytest

WALK_DEPLOY = """
import importlib, pkgutil, sys
import vsda_deploy
for m in pkgutil.walk_packages(vsda_deploy.__path__, "vsda_deploy."):
    importlib.import_module(m.name)
heavy = sorted(k for k in ("torch", "tensorrt", "onnx", "matplotlib", "vsda_train", "export", "benchmarks")
               if k in sys.modules)
print(",".join(heavy))
"""


def test_vsda_deploy_imports_no_torch_and_nothing_above_it() -> None:
    """The runtime layer stands alone: no torch, and none of the packages built on it (train, export)."""
    out = subprocess.run([sys.executable, "-c", WALK_DEPLOY], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"vsda_deploy pulled in: {out.stdout.strip()}"


def test_vsda_train_cli_imports_no_torch() -> None:
    code = "import sys, vsda_train.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # `vsda-train --help` stays fast


@pytest.mark.parametrize("script", ["vsda-train", "vsda-export", "vsda-infer"])
def test_console_scripts_have_help(script: str) -> None:
    exe = f"{sys.prefix}/bin/{script}"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout
