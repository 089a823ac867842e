"""TensorRT engine sidecars and whether a plan can load here: the one rule for vsda-export and vsda-infer.

A plan (``model.engine``) is only the serialised engine; ``model.engine.json`` next to it carries the
model's metadata, what the plan was built with and for (``BuildInfo``) and its input profile. Before a
plan is deserialised, ``check_compatible`` compares the sidecar with this machine (``Device``), since
TensorRT itself has no way to ask and only logs why a load failed (docs/export.md):

* TensorRT: the exact version it was built with. A plan built with ``BuilderFlag.VERSION_COMPATIBLE``
  also loads in a later runtime of the same major, and a TensorRT 10 one in TensorRT 11; never in an
  older runtime (docs/export.md).
* GPU: the same compute capability, unless built hardware-compatible.
* CPU architecture: always the same (plans never move between x86_64 and aarch64).

``make_logger`` gives TensorRT an ``ILogger`` that keeps what it says, so a plan that fails to load or
run is one error with TensorRT's own reason.

No tensorrt or torch import here (the ``trt`` module is passed in); ``export.tensorrt`` writes
sidecars, ``vsda_deploy.backends`` reads them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vsda_deploy.errors import VsdaError
from vsda_deploy.model_meta import INPUT_NAME, META_PREFIX, OUTPUT_NAME, ModelMeta

log = logging.getLogger(__name__)

ERROR_SEVERITIES = ("INTERNAL_ERROR", "ERROR")
SIDECAR_SUFFIX = ".json"  # model.engine -> model.engine.json
SIDECAR_FORMAT = 1
# Version-compatible plans cross a major version only where NVIDIA says so: TensorRT 10 -> 11.
CROSS_MAJOR = frozenset({(10, 11)})


class EngineError(VsdaError, ValueError):
    """An engine sidecar that is missing or unreadable, or a plan that cannot load here; names the file."""


@dataclass(frozen=True)
class ProfileShapes:
    """An optimisation profile of the ``image`` input: (N, 3, H, W) at min, opt and max."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def trtexec_args(self, name: str = INPUT_NAME) -> str:
        """Return ``--minShapes=... --optShapes=... --maxShapes=...`` for trtexec."""
        fmt = lambda s: f"{name}:{'x'.join(map(str, s))}"  # noqa: E731
        return f"--minShapes={fmt(self.min)} --optShapes={fmt(self.opt)} --maxShapes={fmt(self.max)}"


@dataclass(frozen=True)
class BuildInfo:
    """What an engine was built with and for (the sidecar's ``build`` object); "" means not recorded."""

    tensorrt_version: str = ""
    gpu_name: str = ""
    compute_capability: str = ""  # "8.7"
    platform: str = ""  # x86_64 | aarch64: plans never move between them
    precision: str = ""
    strongly_typed: bool = False
    builder_flags: tuple[str, ...] = ()
    version_compatible: bool = False
    hardware_compatible: bool = False
    workspace_gib: float = 4.0
    onnx: str = ""
    onnx_sha256: str = ""
    built_at: str = ""
    rebuild: str = ""


@dataclass(frozen=True)
class Device:
    """The TensorRT, GPU and CPU architecture of the machine about to load an engine.

    ``compute_capability`` None: the GPU is not known yet, so only TensorRT and the CPU are checked.
    """

    tensorrt_version: str
    gpu_name: str = ""
    compute_capability: str | None = None
    platform: str = field(default_factory=platform.machine)


# --- the sidecar file ------------------------------------------------------------------------

def sidecar_path(engine: str | Path) -> Path:
    """Return ``model.engine.json`` for ``model.engine``."""
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def write_sidecar(engine: str | Path, meta: ModelMeta, build: BuildInfo, shapes: ProfileShapes,
                  output_dtype: str = "float32") -> Path:
    """Write the engine's sidecar JSON (meta, build, I/O shapes) atomically; return its path."""
    path = sidecar_path(engine)
    data = {
        "format": SIDECAR_FORMAT,
        "engine": Path(engine).name,
        "meta": meta.to_json(),
        "build": asdict(build),
        "io": {INPUT_NAME: {"dtype": "float32", "min": list(shapes.min), "opt": list(shapes.opt),
                            "max": list(shapes.max)},
               OUTPUT_NAME: {"dtype": output_dtype, "classes": meta.num_classes}},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path


def read_sidecar(engine: str | Path) -> tuple[ModelMeta, BuildInfo, ProfileShapes | None]:
    """Return ``(meta, build, shapes)`` of an engine's sidecar; EngineError names a missing or bad one.

    ``meta`` and ``build`` are read from their objects or, in a hand-written sidecar, from the top
    level; ``shapes`` is None when the sidecar has no ``io`` section.
    """
    path = sidecar_path(engine)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineError(f"{engine}: no sidecar {path.name} next to the engine (it carries the classes, "
                          "normalisation and the TensorRT/GPU the engine was built for); rebuild the engine "
                          "with vsda-export MODEL.onnx --engine") from None
    except (OSError, ValueError) as e:
        raise EngineError(f"{path}: unreadable engine sidecar ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise EngineError(f"{path}: engine sidecar must be a JSON object")
    try:
        fields = data.get("meta", data)
        props = {META_PREFIX + k: json.dumps(v) for k, v in fields.items() if k in ModelMeta.__dataclass_fields__}
        meta = ModelMeta.from_props(props, str(path))
        build = _build_info(data.get("build", data))
        io = data.get("io", {}).get(INPUT_NAME)
        shapes = None if io is None else ProfileShapes(*(tuple(io[k]) for k in ("min", "opt", "max")))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise EngineError(f"{path}: unreadable engine sidecar ({type(e).__name__}: {e})") from None
    return meta, build, shapes


def _build_info(raw: dict[str, Any]) -> BuildInfo:
    values = {k: v for k, v in raw.items() if k in BuildInfo.__dataclass_fields__}
    if isinstance(values.get("compute_capability"), (list, tuple)):  # [8, 7] -> "8.7"
        values["compute_capability"] = ".".join(map(str, values["compute_capability"]))
    if "builder_flags" in values:
        values["builder_flags"] = tuple(values["builder_flags"])
    return BuildInfo(**values)


# --- can it load here? -------------------------------------------------------------------------

def _version(text: str) -> tuple[int, ...]:
    return tuple(int("".join(ch for ch in piece if ch.isdigit()) or 0) for piece in str(text).split("."))


def runtime_loads(built: str, runtime: str, version_compatible: bool) -> bool:
    """Return whether a plan built with TensorRT ``built`` loads in TensorRT ``runtime`` (module docstring)."""
    if built == runtime:
        return True
    b, r = _version(built), _version(runtime)
    return version_compatible and r >= b and (r[0] == b[0] or (b[0], r[0]) in CROSS_MAJOR)


def compatibility_problems(build: BuildInfo, here: Device) -> list[str]:
    """Return why an engine built as ``build`` will not load on ``here`` (empty: it should load).

    What the sidecar does not record is not checked; see the module docstring for the rules.
    """
    problems = []
    if build.platform and here.platform and build.platform != here.platform:
        problems.append(f"built on {build.platform}, this machine is {here.platform}")
    if build.tensorrt_version and not runtime_loads(build.tensorrt_version, here.tensorrt_version,
                                                    build.version_compatible):
        problems.append(f"built with TensorRT {build.tensorrt_version}, this machine has {here.tensorrt_version}")
    if (here.compute_capability is not None and build.compute_capability
            and build.compute_capability != here.compute_capability and not build.hardware_compatible):
        problems.append(f"built for compute capability {build.compute_capability} ({build.gpu_name or '?'}), "
                        f"this GPU is {here.compute_capability} ({here.gpu_name or '?'})")
    return problems


def rebuild_command(build: BuildInfo, engine: str | Path) -> str:
    """Return the command that rebuilds ``engine`` from its ONNX on the current machine."""
    extra = " --engine-fp16" if "FP16" in build.builder_flags and build.precision == "fp32" else ""
    return f"vsda-export {build.onnx or 'MODEL.onnx'} --engine -o {engine} --workspace {build.workspace_gib:g}{extra}"


def check_compatible(engine: str | Path, build: BuildInfo, here: Device) -> None:
    """Raise EngineError (one line, ending with the rebuild command) when the engine will not load here."""
    problems = compatibility_problems(build, here)
    if problems:
        raise EngineError(f"{engine}: this engine cannot run here: {'; '.join(problems)}. TensorRT plans are tied "
                          f"to their TensorRT version and GPU; rebuild it here: {rebuild_command(build, engine)}")
    if here.compute_capability is not None and not (build.tensorrt_version and build.compute_capability):
        log.warning("%s: sidecar does not say which TensorRT/GPU built the engine; trying anyway", engine)


# --- what TensorRT says ----------------------------------------------------------------------------

class LogCapture:
    """Keeps TensorRT's log messages (severity name, text) so a failure can say what TensorRT said."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def record(self, severity: str, message: str) -> None:
        self.messages.append((severity, message))
        level = logging.ERROR if severity in ERROR_SEVERITIES else (
            logging.WARNING if severity == "WARNING" else logging.DEBUG)
        log.log(level, "TensorRT %s: %s", severity, message)

    def errors(self) -> list[str]:
        """Return the messages logged at ERROR or INTERNAL_ERROR."""
        return [m for s, m in self.messages if s in ERROR_SEVERITIES]

    def summary(self, default: str = "no error message from TensorRT") -> str:
        """Return the errors (else the last warning) joined on one line."""
        errors = self.errors() or [m for s, m in self.messages if s == "WARNING"][-1:]
        return " | ".join(e.strip() for e in errors) or default


def _severity_name(severity: Any) -> str:
    name = getattr(severity, "name", None) or str(severity).rsplit(".", 1)[-1]
    return str(name).upper()


def make_logger(trt: Any) -> LogCapture:
    """Return an ``ILogger`` subclass instance of the ``trt`` module that records every message (and logs it)."""

    class CapturingLogger(trt.ILogger, LogCapture):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # the pybind base must be initialised explicitly
            LogCapture.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            self.record(_severity_name(severity), msg)

    return CapturingLogger()
