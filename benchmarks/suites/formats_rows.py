"""The rows of ``python -m benchmarks formats``: each format, how its file is made and loaded, and why
one cannot run on this machine.

A :class:`Format` names a row and the tolerance it is checked against; its ``load()`` returns a
``vsda_deploy.backends`` segmenter (``predict(batch) -> logits``) and the size of what it runs, or
raises with the one-line reason the row gets. :class:`Exports` makes each file on first use with the
project's exporters (``export.onnx_export``, ``export.precision``, ``export.tensorrt``) and keeps a
failure, so one failed conversion fails only the rows that need that file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (file kind, row label) of the ONNX files; "int8" is the symmetric Q/DQ file TensorRT also builds.
ONNX_FILES = (("fp32", "ONNX FP32"), ("fp16", "ONNX FP16"), ("int8", "ONNX INT8 QDQ (TensorRT-ready)"),
              ("int8-cpu", "ONNX INT8 (CPU u8)"))
GPU_ONNX_FILES = ONNX_FILES[:3]  # TensorRT rejects the UINT8-activation file; CUDA gains nothing from it
PROVIDER_LABEL = {"cpu": "ORT CPU", "cuda": "ORT CUDA", "tensorrt": "ORT TensorRT-EP"}
FILE_NAMES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx",
              "int8-cpu": "model_int8_cpu.onnx", "engine-fp16": "model_fp16.engine", "engine-int8": "model_int8.engine"}
TRT_MISSING = "tensorrt is not installed (pip install 'vsda[trt]' on a machine with TensorRT and a CUDA GPU)"
NEEDS_CHECKPOINT = "needs a checkpoint (--model is an ONNX file)"


@dataclass(frozen=True)
class Plan:
    """What the rows are made from and where they run."""

    model: Path  # a vsda checkpoint (.pt) or an FP32 ONNX file with vsda metadata
    folder: Path  # exported files go here
    data: str  # cityscapes-vps:ROOT; its train frames calibrate INT8
    calib_frames: int
    device: str  # PyTorch rows (--device)
    gpu: str  # the CUDA device of the GPU runtimes (ORT CUDA / TensorRT)
    threads: int  # ORT intra-op threads
    compile_: bool | None  # None: torch.compile rows on CUDA only
    engine_sizes: tuple[tuple[int, int], tuple[int, int]]  # (min, max) HxW of the TensorRT profile

    @property
    def is_onnx(self) -> bool:
        return self.model.suffix.lower() == ".onnx"


@dataclass
class Loaded:
    """A format ready to run: its segmenter, the MB it runs from, and whether it runs on a GPU."""

    segmenter: Any
    size_mb: float
    cuda: bool


@dataclass(frozen=True)
class Format:
    """One row: its name, its tolerance (fp32 | fp16 | int8) and how to load it (an exception is the ❌)."""

    name: str
    precision: str
    load: Callable[[], Loaded]
    twin: bool = False  # computes exactly what the reference computes: its scores are the reference's


def file_mb(path: Path) -> float:
    """Return the size of a file in MB (10^6 bytes)."""
    return path.stat().st_size / 1e6


def weights_mb(model: Any) -> float:
    """Return the MB of a torch module's parameters and buffers in their current dtype."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


class Exports:
    """The ONNX files and TensorRT engines of one model, each made once on first use (a failure is kept)."""

    def __init__(self, plan: Plan, model: Any = None, meta: Any = None) -> None:
        self.plan, self.model, self.meta = plan, model, meta
        self._made: dict[str, Path | Exception] = {}

    def path(self, kind: str) -> Path:
        """Return the file of ``kind`` (fp32 | fp16 | int8 | int8-cpu | engine-fp16 | engine-int8), made if needed."""
        if kind not in self._made:
            try:
                self._made[kind] = self._make(kind)
            except Exception as e:  # every row needing this file fails with this reason
                self._made[kind] = e
        made = self._made[kind]
        if isinstance(made, Exception):
            raise made
        return made

    def _make(self, kind: str) -> Path:
        # Through the module, not a name bound at import: a test can make one conversion fail.
        from vsda_export import onnx_export, precision

        out = self.plan.folder / FILE_NAMES[kind]
        if kind == "fp32":
            return self.plan.model if self.plan.is_onnx else onnx_export.export_fp32(self.model, out, self.meta)
        if kind == "fp16":
            return precision.convert_fp16(self.path("fp32"), out)
        if kind in ("int8", "int8-cpu"):
            return precision.quantize_int8(self.path("fp32"), out, self._calibration(),
                                           target="cpu" if kind == "int8-cpu" else "trt")
        from vsda_export.tensorrt import build_engine

        lo, hi = self.plan.engine_sizes
        return build_engine(self.path(kind.removeprefix("engine-")), out, min_size=lo, max_size=hi)

    def _calibration(self) -> Any:
        """Return the INT8 calibration reader: ``calib_frames`` train frames at the model's scale."""
        from vsda_export.precision import FrameCalibrationReader, open_frames

        frames = open_frames(self.plan.data, split="train")
        return FrameCalibrationReader(frames, self.plan.calib_frames, tuple(self.meta.input_size),
                                      self.meta.normalization)


# --- loaders -----------------------------------------------------------------------------------

def _compile_skipped(plan: Plan) -> str | None:
    """Return why the torch.compile rows do not run (None: they run)."""
    if plan.compile_ is False:
        return "skipped (--no-compile)"
    if plan.compile_ is None and not plan.device.startswith("cuda"):
        return "skipped on CPU (pass --compile)"
    return None


def _torch_reason(plan: Plan, precision: str, compile_mode: str | None) -> str | None:
    """Return why a PyTorch row cannot run (None: it can)."""
    cuda = plan.device.startswith("cuda")
    if plan.is_onnx:
        return NEEDS_CHECKPOINT
    if compile_mode == "reduce-overhead" and not cuda:
        return "CUDA graphs need a CUDA device (pass --device cuda)"
    if precision == "fp16" and not cuda:
        return "fp16 eager needs a CUDA device (pass --device cuda)"
    return _compile_skipped(plan) if compile_mode else None


def torch_format(name: str, precision: str, plan: Plan, compile_mode: str | None = None) -> Format:
    """Return a PyTorch row: the checkpoint in ``precision`` on --device, compiled when ``compile_mode``."""

    def load() -> Loaded:
        reason = _torch_reason(plan, precision, compile_mode)
        if reason:
            raise RuntimeError(reason)
        from vsda_deploy.backends import TorchSegmenter

        seg = TorchSegmenter(plan.model, plan.device, precision)
        size = weights_mb(seg.model)
        if compile_mode:
            import torch

            seg.model = torch.compile(seg.model, mode=compile_mode)  # compiles lazily, on the first frame
        return Loaded(seg, size, seg.device.startswith("cuda"))

    twin = precision == "fp32" and compile_mode is None and plan.device == "cpu"
    return Format(name, precision, load, twin)


def ort_format(kind: str, label: str, provider: str, plan: Plan, exports: Exports) -> Format:
    """Return an ONNX Runtime row: the ``kind`` file on ``provider`` (cpu | cuda | tensorrt)."""

    def load() -> Loaded:
        import onnxruntime as ort

        from vsda_deploy.backends import OrtSegmenter, ort_providers

        device = "cpu" if provider == "cpu" else plan.gpu
        wanted = ort_providers(device, provider, ort.get_available_providers())  # names the [gpu] extra
        path = exports.path(kind)
        seg = OrtSegmenter(path, device, provider, plan.threads)
        if "fallback" in seg.provider:  # a CPU fallback timed as "CUDA" would be a false row
            seg.close()
            raise RuntimeError(f"ONNX Runtime could not start {wanted[0]} and ran on the CPU "
                               "(CUDA / cuDNN / TensorRT libraries missing?)")
        return Loaded(seg, file_mb(path), provider != "cpu")

    precision = "int8" if kind.startswith("int8") else kind
    twin = plan.is_onnx and kind == "fp32" and provider == "cpu"
    return Format(f"{label} · {PROVIDER_LABEL[provider]}", precision, load, twin)


def trt_format(precision: str, plan: Plan, exports: Exports) -> Format:
    """Return a native TensorRT row: an engine built from the ``precision`` ONNX file, run by TrtSegmenter."""

    def load() -> Loaded:
        if importlib.util.find_spec("tensorrt") is None:
            raise RuntimeError(TRT_MISSING)
        from vsda_deploy.backends import TrtSegmenter

        path = exports.path(f"engine-{precision}")
        return Loaded(TrtSegmenter(path, plan.gpu), file_mb(path), True)

    return Format(f"TensorRT {precision.upper()} engine", precision, load)


def build_formats(plan: Plan, exports: Exports) -> list[Format]:
    """Return every row of the suite, in table order."""
    rows = [torch_format("PyTorch eager FP32", "fp32", plan),
            torch_format("PyTorch eager FP16", "fp16", plan),
            torch_format("PyTorch compiled", "fp32", plan, compile_mode="default"),
            torch_format("PyTorch compiled + CUDA graphs", "fp16", plan, compile_mode="reduce-overhead")]
    rows += [ort_format(kind, label, "cpu", plan, exports) for kind, label in ONNX_FILES]
    rows += [ort_format(kind, label, provider, plan, exports)
             for provider in ("cuda", "tensorrt") for kind, label in GPU_ONNX_FILES]
    rows += [trt_format(precision, plan, exports) for precision in ("fp16", "int8")]
    return rows
