"""Backends: ORT CPU and torch agree; metadata, providers, engine sidecar, faults (vsda_deploy/backends.py).

``export_tiny_model`` (also used by test_infer) writes a DDRNet-23-slim of width 8 as a vsda
checkpoint and as an ONNX file with its ModelMeta, like ``vsda-export`` will.
"""

from __future__ import annotations

import enum
import functools
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from vsda_deploy import backends
from vsda_deploy.backends import (
    ModelError,
    OrtSegmenter,
    TrtSegmenter,
    backend_for,
    load_segmenter,
    ort_providers,
    parse_device,
)
from vsda_deploy.labels import VIPER15
from vsda_deploy.model_meta import ModelMeta
from vsda_deploy.options import OptionError
from vsda_train.checkpoint import save_checkpoint
from vsda_train.models import create_model

H, W = 64, 128
META = ModelMeta(classes=VIPER15.classes, palette=VIPER15.palette, input_size=(H, W),
                 things=tuple(sorted(VIPER15.things)), model_name="ddrnet23_slim")


def calibration_images(n: int = 4, h: int = H, w: int = W) -> torch.Tensor:
    """Return n normalised street-like images (sky, buildings, road bands plus texture), deterministic."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.float32)
        img[: h // 3] = (0.3, 0.5, 0.8)
        img[h // 3: 2 * h // 3] = (0.4, 0.4, 0.4)
        img[2 * h // 3:] = (0.5, 0.3, 0.5)
        img[:, (i * 17) % w: (i * 17) % w + w // 6] = (0.1, 0.6, 0.1)
        img += rng.normal(0, 0.08, img.shape).astype(np.float32)
        images.append(torch.from_numpy((img - 0.45) / 0.225).permute(2, 0, 1))
    return torch.stack(images)


@functools.cache  # one per test session: the tests only read it
def tiny_model(seed: int = 0) -> torch.nn.Module:
    """Return DDRNet-23-slim width 8 whose BN statistics are set from calibration images (varied classes)."""
    torch.manual_seed(seed)
    model = create_model("ddrnet23_slim", VIPER15.num_classes, width=8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # untrained BN statistics predict one class everywhere
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(calibration_images())
    return model.eval()


def export_onnx(model: torch.nn.Module, path: Path, meta: ModelMeta | None = META, dynamic: bool = True,
                in_channels: int = 3) -> Path:
    """Write ``model`` as ONNX (input ``image``, output ``logits``) with ``meta`` in its metadata_props."""
    x = torch.zeros(1, in_channels, H, W)
    if in_channels != 3:
        model = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 3, 1), model)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its own deprecation
        torch.onnx.export(model, x, str(path), dynamo=False, input_names=["image"], output_names=["logits"],
                          dynamic_axes=axes if dynamic else None, opset_version=17)
    proto = onnx.load(str(path))
    for key, value in (meta.to_props() if meta else {}).items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(path))
    return path


def with_meta(src: Path, dst: Path, meta: ModelMeta | None) -> Path:
    """Copy the ONNX ``src`` to ``dst`` with its vsda metadata replaced by ``meta`` (None: removed)."""
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props if not p.key.startswith("vsda.")}
    props.update(meta.to_props() if meta else {})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst


def export_tiny_model(folder: Path) -> tuple[Path, Path]:
    """Return ``(model.onnx, model.pt)``: the same tiny model as ONNX (with metadata) and checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_model()
    ckpt = save_checkpoint(folder / "model.pt", {"model": model.state_dict(), "model_config": model.config,
                                                  "label_space": "viper15"})
    return export_onnx(model, folder / "model.onnx"), ckpt


def test_ort_cpu_and_torch_backends_agree(models: tuple[Path, Path]) -> None:
    onnx_path, ckpt = models
    ort_seg, torch_seg = load_segmenter(onnx_path), load_segmenter(ckpt)
    assert isinstance(ort_seg, OrtSegmenter) and ort_seg.fixed_size is None
    batch = calibration_images(2).numpy()
    a, b = ort_seg.predict(batch), torch_seg.predict(batch)
    assert a.shape == b.shape == (2, 15, H, W) and a.dtype == b.dtype == np.float32
    assert np.abs(a - b).max() < 1e-3
    labels = a.argmax(1)
    assert (labels == b.argmax(1)).mean() > 0.999
    assert len(np.unique(labels)) >= 4  # a model that predicts several classes, not one
    assert ort_seg.describe() == {"backend": "ort", "provider": "CPUExecutionProvider", "precision": "fp32",
                                  "device": "cpu"}
    assert torch_seg.describe()["backend"] == "torch" and torch_seg.describe()["device"] == "cpu"
    assert ort_seg.meta == META and torch_seg.meta.classes == VIPER15.classes
    assert torch_seg.meta.things == META.things and torch_seg.meta.mean == META.mean


def test_io_binding_path_gives_the_plain_run(models: tuple[Path, Path]) -> None:
    """The GPU path's IO binding (reused input buffer), exercised on the CPU device."""
    seg = OrtSegmenter(models[0])
    batch = calibration_images(1).numpy()
    plain = seg.predict(batch)
    seg._binding, seg._bind_device = seg.session.io_binding(), "cpu"
    flipped = batch[:, :, ::-1].copy()
    first = seg.predict(batch)
    second = seg.predict(flipped)  # same shape: the bound buffer is updated in place
    assert np.array_equal(first, plain) and not np.array_equal(first, second)
    assert np.array_equal(second, seg.session.run(["logits"], {"image": flipped})[0])
    assert np.array_equal(batch, calibration_images(1).numpy())  # the caller's array is not overwritten


def test_static_input_size_is_read_and_enforced(tmp_path: Path) -> None:
    path = export_onnx(tiny_model(), tmp_path / "static.onnx", dynamic=False)
    seg = load_segmenter(path)
    assert seg.fixed_size == (H, W)
    seg.check_size(H, W)
    with pytest.raises(ModelError, match=rf"^{path}: input is fixed at 64x128 \(HxW\); it cannot run at 32x64"):
        seg.check_size(32, 64)


@pytest.mark.parametrize("case, message", [
    ("garbage", "cannot load ONNX model"),
    ("missing", "model file not found"),
    ("no-meta", "no vsda metadata"),
    ("channels", "input 'image' has shape ['batch', 1, 'height', 'width']; expected (N, 3, H, W)"),
    ("classes", "output 'logits' has shape (1, 15, 64, 128); expected (N, 19, H, W) for the 19 classes"),
])
def test_bad_models_fail_with_one_line_naming_the_file(models: tuple[Path, Path], tmp_path: Path, case: str,
                                                       message: str) -> None:
    path = tmp_path / f"{case}.onnx"
    if case == "garbage":
        path.write_bytes(b"not an onnx file")
    elif case == "no-meta":
        with_meta(models[0], path, None)
    elif case == "channels":
        export_onnx(tiny_model(), path, in_channels=1)
    elif case == "classes":
        with_meta(models[0], path, ModelMeta(classes=tuple(f"c{i}" for i in range(19)), palette=((0, 0, 0),) * 19))
    with pytest.raises(ValueError) as err:
        load_segmenter(path).predict(calibration_images(1).numpy())  # the class count shows in the output
    text = str(err.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_backend_from_suffix_and_mismatch() -> None:
    assert [backend_for(Path(p)) for p in ("m.onnx", "m.engine", "m.plan", "c.pt", "c.PTH")] == \
        ["ort", "trt", "trt", "torch", "torch"]
    assert backend_for(Path("m.bin"), "ort") == "ort"
    with pytest.raises(ModelError, match=r"^m\.bin: cannot tell the backend"):
        backend_for(Path("m.bin"))
    with pytest.raises(OptionError, match=r"^--backend trt: m\.onnx is a \.onnx file, which runs on --backend ort"):
        backend_for(Path("m.onnx"), "trt")
    with pytest.raises(ValueError, match="--backend 'tflite'"):
        backend_for(Path("m.onnx"), "tflite")


def test_devices_and_ort_providers() -> None:
    assert parse_device("cpu") == ("cpu", 0) and parse_device("cuda") == ("cuda", 0)
    assert parse_device("CUDA:1") == ("cuda", 1)
    for bad in ("gpu", "cpu:1", "cuda:x"):
        with pytest.raises(ValueError, match="--device"):
            parse_device(bad)
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers("cpu", "auto", cpu_only) == ["CPUExecutionProvider"]
    assert ort_providers("cuda:0", "auto", gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers("cuda:0", "tensorrt", gpu) == gpu
    with pytest.raises(ModelError, match=r"no CUDAExecutionProvider in this build .* pip install 'vsda\[gpu\]'"):
        ort_providers("cuda:0", "auto", cpu_only)
    with pytest.raises(ValueError, match="contradicts --device cuda:0"):
        ort_providers("cuda:0", "cpu", gpu)
    with pytest.raises(ValueError, match="needs --device cuda"):
        ort_providers("cpu", "tensorrt", gpu)


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_silent_cpu_fallback_is_reported(models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """A build that lists CUDA but cannot load it runs on the CPU: the report must say so."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    seg = OrtSegmenter(models[0], device="cuda:0")
    assert seg.provider == "CPUExecutionProvider (fallback from CUDAExecutionProvider)"
    assert seg.device == "cpu" and seg._binding is None
    assert "asked ONNX Runtime for CUDAExecutionProvider but it runs on CPUExecutionProvider" in caplog.text
    assert seg.predict(calibration_images(1).numpy()).shape == (1, 15, H, W)


def write_engine(folder: Path, sidecar: dict | None) -> Path:
    engine = folder / "model.engine"
    engine.write_bytes(b"\x00plan")
    if sidecar is not None:
        (folder / "model.engine.json").write_text(json.dumps(sidecar))
    return engine


BUILD = {"tensorrt_version": "10.3.0", "compute_capability": "8.7", "gpu_name": "Orin"}


def test_engine_faults_before_any_gpu_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_sidecar = write_engine(tmp_path, None)
    with pytest.raises(ModelError, match=r"model\.engine: no sidecar model\.engine\.json"):
        TrtSegmenter(no_sidecar)
    engine = write_engine(tmp_path, {"meta": META.to_json(), "build": BUILD})
    with pytest.raises(OptionError, match=r"^--device cpu: .*model\.engine is a TensorRT engine, which runs on a GPU"):
        TrtSegmenter(engine, device="cpu")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT
    with pytest.raises(ModelError, match=r"needs the Python package 'tensorrt' .* pip install 'vsda\[trt\]'"):
        load_segmenter(engine, device="cuda:0")


def fake_tensorrt_that_cannot_load(version: str) -> types.SimpleNamespace:
    """Return a ``tensorrt`` stand-in whose runtime logs TensorRT's version-mismatch error and returns None."""

    class ILogger:
        class Severity(enum.Enum):
            ERROR = 1
            WARNING = 2

        def __init__(self) -> None:
            pass

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> None:
            self.logger.log(ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                                    "(Version tag does not match)")
            return None

    return types.SimpleNamespace(__version__=version, ILogger=ILogger, Runtime=Runtime)


def test_engine_that_tensorrt_cannot_load_says_why_and_how_to_rebuild(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    engine = write_engine(tmp_path, {"meta": META.to_json(), "build": {**BUILD, "onnx": "m_int8.onnx"}})
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt_that_cannot_load("10.3.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (8, 7))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Orin")
    with pytest.raises(ModelError) as err:
        load_segmenter(engine, device="cuda:0")
    assert str(err.value) == (f"{engine}: TensorRT 10.3.0 could not load the engine (IRuntime::deserializeCudaEngine: "
                              "Error Code 1: Serialization (Version tag does not match)); rebuild it: vsda-export "
                              f"m_int8.onnx --engine -o {engine} --workspace 4")


def test_torch_checkpoint_brings_its_trained_scale_and_normalisation(models: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    old = load_segmenter(models[1])  # written before eval_size and config.model.preprocess existed
    assert old.default_size is None and old.meta.normalization.channel_order == "rgb"
    model = tiny_model()
    ckpt = save_checkpoint(tmp_path / "new.pt", {"model": model.state_dict(), "model_config": model.config,
                                                  "label_space": "viper15", "eval_size": [32, 64],
                                                  "config": {"model": {"preprocess": "caffe"}}})
    new = load_segmenter(ckpt)
    assert new.default_size == (32, 64) and new.meta.input_size == (32, 64)
    assert new.meta.channel_order == "bgr" and new.meta.normalization.std[0] == pytest.approx(1 / 255)
    wrapped = backends.TorchSegmenter("reference", module=model, meta=META)  # the export's reference model
    batch = calibration_images(1).numpy()
    assert wrapped.default_size == (H, W)
    assert np.abs(wrapped.predict(batch) - load_segmenter(models[0]).predict(batch)).max() < 1e-3


def test_missing_torch_names_the_train_extra(models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelError, match=r"model\.pt: needs the Python package 'torch' .* 'vsda\[train\]'"):
        load_segmenter(models[1])


def test_torch_fp16_needs_a_gpu_and_bad_checkpoints_name_the_file(models: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16 needs --device cuda"):
        load_segmenter(models[1], precision="fp16")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match=rf"^{bad}: not a readable vsda checkpoint"):
        load_segmenter(bad)


def test_lean_runtime_does_not_import_torch() -> None:
    """vsda_deploy's modules (backends, infer, sinks, cli) import without torch."""
    import subprocess

    code = ("import sys; sys.modules['torch'] = None; "
            "import vsda_deploy.cli, vsda_deploy.infer, vsda_deploy.backends, vsda_deploy.sinks; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert backends.BACKENDS == ("auto", "ort", "trt", "torch")
