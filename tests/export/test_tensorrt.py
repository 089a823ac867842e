"""TensorRT logic that needs no TensorRT: profile shapes, precision plan per TensorRT version (fake
``tensorrt`` modules shaped like 8.6, 10.3 and 11.1), sidecar round trip, compatibility messages, logger
capture, the missing-package error. The build and run themselves only where ``import tensorrt`` works."""

from __future__ import annotations

import enum
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from vsda_export import tensorrt as T

from vsda_deploy.labels import VIPER15
from vsda_deploy.model_meta import ModelMeta

# ---------------------------------------------------------------- fake tensorrt modules


def fake_trt(version: str, creation: dict[str, int], builder: dict[str, int]) -> SimpleNamespace:
    """Return an object with the names a TensorRT version has (enums as in the bindings)."""

    class Severity(enum.Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:
        def __init__(self) -> None:
            self.base_initialised = True

    ILogger.Severity = Severity  # the bindings nest it: trt.ILogger.Severity
    return SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=enum.IntEnum("NDCF", creation),
                           BuilderFlag=enum.IntEnum("BuilderFlag", builder), ILogger=ILogger, Severity=Severity)


TRT86 = fake_trt("8.6.2", {"EXPLICIT_BATCH": 0}, {"FP16": 0, "INT8": 1, "TF32": 7})
TRT103 = fake_trt("10.3.0", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 5}, {"FP16": 0, "INT8": 1, "TF32": 7})
TRT111 = fake_trt("11.1.0", {"STRONGLY_TYPED": 5}, {"TF32": 7, "VERSION_COMPATIBLE": 10})


# ---------------------------------------------------------------- profile shapes


def test_profile_shapes_dynamic_span_half_to_double() -> None:
    p = T.profile_shapes((512, 1024), dynamic=True)
    assert (p.min, p.opt, p.max) == ((1, 3, 256, 512), (1, 3, 512, 1024), (1, 3, 1024, 2048))
    assert p.trtexec_args() == ("--minShapes=image:1x3x256x512 --optShapes=image:1x3x512x1024 "
                                "--maxShapes=image:1x3x1024x2048")
    small = T.profile_shapes((24, 40), dynamic=True)
    assert small.min == (1, 3, 16, 20)  # never below 16 pixels


def test_profile_shapes_static_and_overrides() -> None:
    p = T.profile_shapes((128, 256), dynamic=False)
    assert p.min == p.opt == p.max == (1, 3, 128, 256)
    q = T.profile_shapes((128, 256), dynamic=True, min_size=(64, 64), max_size=(720, 1280), batch=2)
    assert (q.min, q.opt, q.max) == ((2, 3, 64, 64), (2, 3, 128, 256), (2, 3, 720, 1280))
    with pytest.raises(T.EngineError, match=r"min 200x64 <= opt 128x256"):
        T.profile_shapes((128, 256), dynamic=True, min_size=(200, 64))
    with pytest.raises(T.EngineError, match="--static"):
        T.profile_shapes((128, 256), dynamic=False, max_size=(256, 512))


# ---------------------------------------------------------------- precision plan


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("trt", [TRT103, TRT111], ids=["10.3", "11.1"])
def test_strongly_typed_where_the_flag_exists(trt: SimpleNamespace, precision: str) -> None:
    plan = T.plan_precision(trt, precision)
    assert plan.strongly_typed and plan.network_flags == ("STRONGLY_TYPED",) and plan.builder_flags == ()
    assert T.network_flags(trt, plan) == 1 << 5


def test_weakly_typed_tensorrt_gets_precision_flags_and_explicit_batch() -> None:
    assert T.plan_precision(TRT86, "fp32").builder_flags == ()
    assert T.plan_precision(TRT86, "fp16").builder_flags == ("FP16",)
    plan = T.plan_precision(TRT86, "int8")
    assert plan.builder_flags == ("INT8", "FP16") and not plan.strongly_typed
    assert T.network_flags(TRT86, plan) == 1  # EXPLICIT_BATCH = bit 0


def test_fp16_builder_flag_path_for_fp32_graphs() -> None:
    plan = T.plan_precision(TRT103, "fp32", fp16_flag=True)
    # TensorRT 10.x ignores EXPLICIT_BATCH: it is set only where strong typing does not exist (8.x).
    assert (plan.strongly_typed, plan.network_flags, plan.builder_flags) == (False, (), ("FP16",))
    assert T.plan_precision(TRT86, "fp32", fp16_flag=True).network_flags == ("EXPLICIT_BATCH",)
    with pytest.raises(T.EngineError, match=r"TensorRT 11.1.0 has no BuilderFlag.FP16 .*model_fp16.onnx"):
        T.plan_precision(TRT111, "fp32", fp16_flag=True)
    with pytest.raises(T.EngineError, match="already int8"):
        T.plan_precision(TRT103, "int8", fp16_flag=True)
    with pytest.raises(T.EngineError, match="expected fp32, fp16 or int8"):
        T.plan_precision(TRT103, "bf16")


# ---------------------------------------------------------------- sidecar and compatibility


def _meta() -> ModelMeta:
    return ModelMeta(classes=VIPER15.classes, palette=VIPER15.palette, input_size=(128, 256), precision="int8",
                     model_name="ddrnet23_slim", model_config={"name": "ddrnet23_slim", "width": 16},
                     checkpoint_sha256="ab" * 32, vsda_version="0.1.0", things=(9, 10))


BUILD = T.BuildInfo(tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7", platform="aarch64",
                    precision="int8", strongly_typed=True, workspace_gib=2.0, onnx="runs/export/model_int8.onnx")


def test_sidecar_round_trip(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    shapes = T.profile_shapes((128, 256), dynamic=True)
    path = T.write_sidecar(engine, _meta(), BUILD, shapes)
    assert path == tmp_path / "model.engine.json"
    data = json.loads(path.read_text())
    assert data["build"]["tensorrt_version"] == "10.3.0" and data["meta"]["precision"] == "int8"
    assert data["io"]["image"]["max"] == [1, 3, 256, 512] and data["io"]["logits"]["classes"] == 15
    meta, build, got = T.read_sidecar(engine)
    assert meta == _meta() and build == BUILD and got == shapes


def test_sidecar_is_readable_by_the_runtime(tmp_path: Path) -> None:
    """vsda-infer's TensorRT backend reads the same file with the same reader (vsda_deploy.engine)."""
    from vsda_deploy import engine as engine_files

    engine = tmp_path / "model.engine"
    T.write_sidecar(engine, _meta(), BUILD, T.profile_shapes((128, 256), dynamic=True))
    meta, build, _ = engine_files.read_sidecar(engine)
    assert meta == _meta() and build == BUILD


def test_bad_sidecars_name_the_file(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    with pytest.raises(T.EngineError, match=rf"^{engine}: no sidecar model.engine.json"):
        T.read_sidecar(engine)
    (tmp_path / "model.engine.json").write_text("{not json")
    with pytest.raises(T.EngineError, match=rf"^{tmp_path / 'model.engine.json'}: unreadable engine sidecar"):
        T.read_sidecar(engine)


def test_compatibility_messages() -> None:
    same = T.Device("10.3.0", "Orin", "8.7", "aarch64")
    assert T.compatibility_problems(BUILD, same) == []
    assert T.compatibility_problems(BUILD, T.Device("10.3.1", "Orin", "8.7", "aarch64")) == [
        "built with TensorRT 10.3.0, this machine has 10.3.1"]
    assert T.compatibility_problems(BUILD, T.Device("10.3.0", "NVIDIA H100", "9.0", "x86_64")) == [
        "built on aarch64, this machine is x86_64",
        "built for compute capability 8.7 (Orin), this GPU is 9.0 (NVIDIA H100)"]
    portable = replace(BUILD, version_compatible=True, hardware_compatible=True)
    assert T.compatibility_problems(portable, T.Device("10.16.0", "RTX", "8.6", "aarch64")) == []
    # version-compatible plans run on later TensorRT only, never on an older one
    assert T.compatibility_problems(portable, T.Device("10.2.0", "Orin", "8.7", "aarch64")) == [
        "built with TensorRT 10.3.0, this machine has 10.2.0"]


def test_incompatible_engine_error_has_the_rebuild_command() -> None:
    with pytest.raises(T.EngineError) as err:
        T.check_compatible("runs/export/model.engine", BUILD, T.Device("11.1.0", "Orin", "8.7", "aarch64"))
    msg = str(err.value)
    assert msg.startswith("runs/export/model.engine: this engine cannot run here: built with TensorRT 10.3.0, "
                          "this machine has 11.1.0.")
    assert msg.endswith("vsda-export runs/export/model_int8.onnx --engine -o runs/export/model.engine --workspace 2")
    assert "\n" not in msg
    fp16 = replace(BUILD, precision="fp32", builder_flags=("FP16",), onnx="m.onnx")
    assert T.rebuild_command(fp16, "m.engine") == "vsda-export m.onnx --engine -o m.engine --workspace 2 --engine-fp16"


# ---------------------------------------------------------------- logger


def test_logger_subclasses_ilogger_and_captures_errors(caplog: pytest.LogCaptureFixture) -> None:
    logger = T.make_logger(TRT103)
    assert isinstance(logger, TRT103.ILogger) and logger.base_initialised
    sev = TRT103.ILogger.Severity
    logger.log(sev.INFO, "loaded")
    logger.log(sev.WARNING, "using a default stream")
    assert logger.summary() == "using a default stream"  # no error yet: the last warning
    logger.log(sev.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Version tag does not "
                          "match. Note: Current Version: 237, Serialized Engine Version: 239)")
    logger.log(sev.INTERNAL_ERROR, "Assertion engine failed.")
    assert logger.errors() == [logger.messages[2][1], "Assertion engine failed."]
    assert logger.summary().startswith("IRuntime::deserializeCudaEngine: Error Code 1") and " | Assertion" in \
        logger.summary()
    assert [s for s, _ in logger.messages] == ["INFO", "WARNING", "ERROR", "INTERNAL_ERROR"]
    assert "TensorRT ERROR: IRuntime" in caplog.text
    assert T.LogCapture().summary() == "no error message from TensorRT"


# ---------------------------------------------------------------- without tensorrt


def test_missing_tensorrt_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(T.EngineError, match=r"^--engine: the tensorrt Python package is not importable .*vsda\[trt\]"):
        T.import_tensorrt()


def test_cli_engine_without_tensorrt_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner
    from vsda_export.cli import app

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    res = CliRunner().invoke(app, [str(tmp_path / "missing.pt"), "-o", str(tmp_path / "m.onnx"), "--engine"])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    # checked before the checkpoint is even read: minutes of export are not wasted
    assert len(lines) == 1 and "vsda[trt]" in lines[0] and lines[0].startswith("vsda-export: --engine:")


def test_engine_from_an_onnx_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner
    from vsda_export.cli import app

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    missing = tmp_path / "model_int8.onnx"
    res = CliRunner().invoke(app, [str(missing), "--engine"])
    assert (res.exit_code, res.stderr.strip()) == (1, f"vsda-export: {missing}: ONNX file not found")
    missing.write_bytes(b"")
    res = CliRunner().invoke(app, [str(missing)])
    assert (res.exit_code, res.stderr.strip()) == (
        2, f"vsda-export: {missing}: an ONNX input only builds a TensorRT engine; add --engine")
    res = CliRunner().invoke(app, [str(missing), "--engine"])
    assert res.exit_code == 1 and "vsda[trt]" in res.stderr and len(res.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- with tensorrt (GPU machines)


def test_build_and_run_engine_where_tensorrt_exists(tmp_path: Path) -> None:
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed here (pip install 'vsda[trt]' on a GPU)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but no CUDA GPU is visible")
    import numpy as np
    from vsda_export.onnx_export import export_fp32
    from vsda_export.parity import file_segmenter

    from vsda_train.models import create_model

    model = create_model("ddrnet23_slim", 15, width=8).eval()
    onnx_path = export_fp32(model, tmp_path / "model.onnx", replace(_meta(), precision="fp32", dynamic=True))
    engine = T.build_engine(onnx_path, tmp_path / "model.engine", workspace_gib=1.0)
    assert (tmp_path / "model.engine.json").is_file() and (tmp_path / T.TIMING_CACHE).is_file()
    runner = file_segmenter(engine)  # vsda_deploy.backends.TrtSegmenter, the runner vsda-infer uses
    assert runner.provider == f"TensorRT {trt.__version__}"
    x = np.random.default_rng(0).normal(size=(1, 3, 96, 192)).astype(np.float32)
    ref = file_segmenter(onnx_path).predict(x)
    assert np.abs(runner.predict(x) - ref).max() < 1e-2  # TF32 is allowed in a strongly typed FP32 build
