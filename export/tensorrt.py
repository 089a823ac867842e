"""TensorRT engines from vsda ONNX files (TensorRT 10 and 11): build, sidecar, compatibility check.

Precision lives in the ONNX graph: where ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists the
network is built strongly typed with no precision flags (an FP16 graph gets FP16 kernels, a Q/DQ graph
INT8). The one exception is the TensorRT 10 path for an FP32 graph with ``BuilderFlag.FP16`` (weakly typed,
as on Jetson's TensorRT 10.3); TensorRT 11 removed that flag. Every version-specific name is looked
up with ``hasattr``. A plan is the raw ``build_serialized_network`` bytes (``trtexec --loadEngine``
reads it); what it was built for lives in ``model.engine.json`` next to it, which loading compares first.
Engines run in one place, ``vsda_deploy.backends.TrtSegmenter`` (``vsda-infer``, the parity check, the
formats benchmark).

Verified here: the pure logic (profile shapes, precision plan against fake ``tensorrt`` modules, sidecar
round trip, compatibility messages, logger capture). Not verified here: the calls into TensorRT itself,
written against its public Python API (no TensorRT or GPU on the development machines); the tests that
need them run wherever ``import tensorrt`` works.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from vsda_export.onnx_export import ExportError

from vsda_deploy import engine as engine_files
from vsda_deploy.engine import (  # the sidecar format, the compatibility rule and the logger, re-exported
    BuildInfo,
    Device,
    LogCapture,  # noqa: F401
    ProfileShapes,
    compatibility_problems,  # noqa: F401
    make_logger,
    rebuild_command,
    write_sidecar,
)
from vsda_deploy.model_meta import INPUT_NAME, ModelMeta

log = logging.getLogger(__name__)

TIMING_CACHE = "trt_timing.cache"
TRT_INSTALL = ("install it with: pip install 'vsda[trt]' (on Jetson TensorRT comes with JetPack: use a venv "
               "created with --system-site-packages)")


class EngineError(ExportError):
    """A TensorRT engine that cannot be built or loaded; the message says what to run instead."""


def import_tensorrt() -> ModuleType:
    """Return the ``tensorrt`` module; EngineError naming the ``[trt]`` extra when it is missing."""
    try:
        import tensorrt
    except ImportError as e:
        raise EngineError(f"--engine: the tensorrt Python package is not importable ({e}); {TRT_INSTALL}") from None
    return tensorrt


# --- shapes and precision (pure) ------------------------------------------------------------

def profile_shapes(input_size: tuple[int, int], dynamic: bool, min_size: tuple[int, int] | None = None,
                   max_size: tuple[int, int] | None = None, batch: int = 1) -> ProfileShapes:
    """Return the profile for ``--input-size`` (opt): static pins all three; dynamic spans 1/2x .. 2x by default.

    The defaults cover a 512x1024 model from 256x512 to 1024x2048 (Cityscapes' full resolution) while
    TensorRT tunes its kernels for the export size.
    """
    h, w = input_size
    opt = (batch, 3, h, w)
    if not dynamic:
        if min_size or max_size:
            raise EngineError("--static: a static graph has one shape; min/max sizes need --dynamic")
        return ProfileShapes(opt, opt, opt)
    lo = min_size or (max(16, h // 2), max(16, w // 2))
    hi = max_size or (2 * h, 2 * w)
    if not (lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1]):
        raise EngineError(f"profile: need min {lo[0]}x{lo[1]} <= opt {h}x{w} <= max {hi[0]}x{hi[1]}")
    return ProfileShapes((batch, 3, *lo), opt, (batch, 3, *hi))


@dataclass(frozen=True)
class PrecisionPlan:
    """How to build a graph of a given precision on one TensorRT: network flags, builder flags, why."""

    strongly_typed: bool
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    note: str


def plan_precision(trt: Any, graph_precision: str, fp16_flag: bool = False) -> PrecisionPlan:
    """Return the build plan for a graph (``fp32`` | ``fp16`` | ``int8``) on the TensorRT module ``trt``.

    ``fp16_flag`` asks TensorRT to choose FP16 kernels for an FP32 graph (the TensorRT 10 weakly typed
    path, e.g. Jetson); TensorRT 11 has no such flag and needs ``model_fp16.onnx`` instead.
    """
    if graph_precision not in ("fp32", "fp16", "int8"):
        raise EngineError(f"graph precision {graph_precision!r}: expected fp32, fp16 or int8")
    version = getattr(trt, "__version__", "?")
    creation, flags = trt.NetworkDefinitionCreationFlag, trt.BuilderFlag
    # TensorRT < 10 needs explicit batch set; 10.x ignores it and 11.x removed the name.
    legacy = ("EXPLICIT_BATCH",) if not hasattr(creation, "STRONGLY_TYPED") and hasattr(creation, "EXPLICIT_BATCH") \
        else ()
    if fp16_flag:
        if graph_precision != "fp32":
            raise EngineError(f"--engine-fp16: the graph is already {graph_precision}; the flag is for FP32 graphs")
        if not hasattr(flags, "FP16"):
            raise EngineError(f"--engine-fp16: TensorRT {version} has no BuilderFlag.FP16 (removed in 11); "
                              "build the engine from model_fp16.onnx (vsda-export --fp16 --engine)")
        return PrecisionPlan(False, legacy, ("FP16",), f"TensorRT {version}: weakly typed FP32 graph, FP16 flag")
    if hasattr(creation, "STRONGLY_TYPED"):
        return PrecisionPlan(True, ("STRONGLY_TYPED",), (), f"TensorRT {version}: strongly typed, "
                             f"{graph_precision} from the ONNX graph, no precision flags")
    needed = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[graph_precision]
    missing = [f for f in needed if not hasattr(flags, f)]
    if missing:
        raise EngineError(f"TensorRT {version}: neither strong typing nor BuilderFlag.{missing[0]}; "
                          f"cannot build a {graph_precision} graph")
    return PrecisionPlan(False, legacy, needed, f"TensorRT {version}: weakly typed, flags {', '.join(needed)}")


def network_flags(trt: Any, plan: PrecisionPlan) -> int:
    """Return the ``create_network`` bit mask of a plan's network flags."""
    return sum(1 << int(getattr(trt.NetworkDefinitionCreationFlag, name)) for name in plan.network_flags)


# --- sidecar and compatibility: one implementation, in vsda_deploy.engine ------------------------

def read_sidecar(engine: str | Path) -> tuple[ModelMeta, BuildInfo, ProfileShapes | None]:
    """Return ``(meta, build, shapes)`` of an engine's sidecar (``vsda_deploy.engine.read_sidecar``) or EngineError."""
    try:
        return engine_files.read_sidecar(engine)
    except engine_files.EngineError as e:
        raise EngineError(str(e)) from None


def check_compatible(engine: str | Path, build: BuildInfo, here: Device) -> None:
    """Raise EngineError (with the rebuild command) when the engine will not load here (``vsda_deploy.engine``)."""
    try:
        engine_files.check_compatible(engine, build, here)
    except engine_files.EngineError as e:
        raise EngineError(str(e)) from None


# --- TensorRT calls (run only where tensorrt imports) -------------------------------------------

def gpu_properties(index: int = 0) -> tuple[str, str]:
    """Return ``(GPU name, compute capability "M.m")`` of CUDA device ``index`` (cuda-python, else torch)."""
    try:
        from cuda.bindings import runtime as cudart

        err, prop = cudart.cudaGetDeviceProperties(index)
        if err == cudart.cudaError_t.cudaSuccess:
            name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
            return name.rstrip("\x00"), f"{prop.major}.{prop.minor}"
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(index)
            return torch.cuda.get_device_name(index), f"{major}.{minor}"
    except ImportError:
        pass
    raise EngineError(f"cuda:{index}: no CUDA GPU visible (needs cuda-python or a CUDA build of torch)")


def current_device(trt: Any, index: int = 0) -> Device:
    """Return the Device (TensorRT version, GPU, architecture) of this machine."""
    name, capability = gpu_properties(index)
    return Device(trt.__version__, name, capability)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _set_timing_cache(config: Any, path: Path) -> None:
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("%s: timing cache is from another device or TensorRT; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, workspace_gib: float = 4.0,
                 fp16_flag: bool = False, timing_cache: str | Path | None = None,
                 min_size: tuple[int, int] | None = None, max_size: tuple[int, int] | None = None) -> Path:
    """Build a TensorRT plan from a vsda ONNX file; write it, its sidecar and the timing cache; return its path."""
    import onnx
    from vsda_export.onnx_export import read_meta

    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = read_meta(onnx.load(str(onnx_path), load_external_data=False), str(onnx_path))
    plan = plan_precision(trt, meta.precision, fp16_flag)
    here = current_device(trt)
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = " | ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse this ONNX ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    shapes = profile_shapes(tuple(meta.input_size), meta.dynamic, min_size, max_size)
    if meta.dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, shapes.min, shapes.opt, shapes.max)
        config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else engine_path.parent / TIMING_CACHE
    _set_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} failed to build an engine: {logger.summary()}")
    _write_bytes(engine_path, serialized)
    _write_bytes(cache_path, config.get_timing_cache().serialize())
    build = BuildInfo(tensorrt_version=trt.__version__, gpu_name=here.gpu_name,
                      compute_capability=here.compute_capability, platform=here.platform,
                      precision=meta.precision, strongly_typed=plan.strongly_typed, builder_flags=plan.builder_flags,
                      workspace_gib=workspace_gib, onnx=str(onnx_path), onnx_sha256=_sha256(onnx_path),
                      built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    build = BuildInfo(**{**asdict(build), "rebuild": rebuild_command(build, engine_path)})
    write_sidecar(engine_path, meta, build, shapes)
    log.info("%s: %s", engine_path, plan.note)
    return engine_path


def _write_bytes(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)  # IHostMemory supports the buffer protocol: the plan is written as-is
    os.replace(tmp, path)
