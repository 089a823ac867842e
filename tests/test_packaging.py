"""Install-level promises: layering and console scripts."""

import subprocess
import sys

import pytest

WALK_DEPLOY = """
import importlib, pkgutil, sys
import vsda_deploy
for m in pkgutil.walk_packages(vsda_deploy.__path__, "vsda_deploy."):
    importlib.import_module(m.name)
heavy = sorted(k for k in ("torch", "tensorrt", "onnx", "matplotlib", "vsda_train", "vsda_export", "benchmarks")
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


def test_the_wheel_installs_only_vsdas_own_names(tmp_path) -> None:
    """export/ installs as vsda_export; benchmarks/ stays in the checkout (python -m benchmarks)."""
    import shutil
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    had_build = (repo / "build").exists()
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                          str(tmp_path), str(repo)], capture_output=True, text=True)
    if not had_build:  # setuptools builds in the source tree without build isolation
        shutil.rmtree(repo / "build", ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("vsda-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("vsda-")} == {"vsda_deploy", "vsda_export", "vsda_train"}
    for module in ("vsda_deploy/data/cityscapes_vps.py", "vsda_export/cli.py", "vsda_train/synth/generate.py",
                   "vsda_train/models/ddrnet.py", "vsda_train/cli/flow.py"):
        assert module in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "vsda-export = vsda_export.cli:app" in zipfile.ZipFile(wheel).read(entry).decode()
