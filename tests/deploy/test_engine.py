"""The TensorRT engine sidecar and the compatibility rule (``vsda_deploy/engine.py``); no TensorRT needed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.deploy.test_backends import BUILD, META, write_engine
from vsda_deploy.engine import BuildInfo, Device, EngineError, check_compatible, compatibility_problems, read_sidecar
from vsda_deploy.labels import VIPER15


def test_sidecar_meta_top_level_or_nested(tmp_path: Path) -> None:
    engine = write_engine(tmp_path, {"meta": META.to_json(), "build": BUILD})
    meta, build, shapes = read_sidecar(engine)
    assert meta == META and build == BuildInfo(**BUILD) and shapes is None
    write_engine(tmp_path, {**META.to_json(), **BUILD, "precision": "fp16"})
    meta, build, _ = read_sidecar(engine)
    assert meta.precision == "fp16" and meta.classes == VIPER15.classes and build.compute_capability == "8.7"
    write_engine(tmp_path, {"meta": META.to_json(), "build": {**BUILD, "compute_capability": [8, 7]}})
    assert read_sidecar(engine)[1].compute_capability == "8.7"


def test_engine_compatibility_check() -> None:
    """vsda_deploy.engine's rule: exact TensorRT (later of the same major if version-compatible), same GPU and CPU."""
    engine = Path("m.engine")
    build = BuildInfo(**BUILD, platform="aarch64", onnx="m.onnx")
    check_compatible(engine, build, Device("10.3.0", "Orin", "8.7", "aarch64"))
    # a patch release is another TensorRT: a plan not built version-compatible does not load
    with pytest.raises(EngineError, match=r"^m\.engine: this engine cannot run here: built with TensorRT 10\.3\.0, "
                                          r"this machine has 10\.3\.1\. .* rebuild it here: vsda-export m\.onnx "
                                          r"--engine -o m\.engine --workspace 4$"):
        check_compatible(engine, build, Device("10.3.1", platform="aarch64"))
    assert compatibility_problems(build, Device("10.3.0", "H100", "9.0", "x86_64")) == [
        "built on aarch64, this machine is x86_64",
        "built for compute capability 8.7 (Orin), this GPU is 9.0 (H100)"]
    portable = replace(build, version_compatible=True, hardware_compatible=True)
    assert compatibility_problems(portable, Device("10.16.0", "RTX", "8.6", "aarch64")) == []
    assert compatibility_problems(portable, Device("11.1.0", "RTX", "8.6", "aarch64")) == []  # 10 -> 11: documented
    assert compatibility_problems(portable, Device("10.2.0", "Orin", "8.7", "aarch64")) == [  # later versions only
        "built with TensorRT 10.3.0, this machine has 10.2.0"]
    assert compatibility_problems(replace(portable, tensorrt_version="11.1.0"), Device("12.0.0", platform="aarch64")) \
        == ["built with TensorRT 11.1.0, this machine has 12.0.0"]  # no other major crossing is promised
    assert compatibility_problems(BuildInfo(), Device("10.3.0", "Orin", "8.7")) == []  # nothing recorded: not checked
