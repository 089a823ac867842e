"""Segmentation backends of the streaming runtime behind one small interface, ``Segmenter``.

``Segmenter.predict(batch)`` takes a normalised float32 (N, 3, H, W) batch and returns float32
(N, C, H, W) class scores: ``logits`` (every exported graph) or ``probabilities``
(``Segmenter.outputs`` says which). The model's ``ModelMeta`` (classes, palette, normalisation,
input size, precision) travels with it, so the caller needs nothing else.

* ``OrtSegmenter``: an ``.onnx`` file on ONNX Runtime (CPU, CUDA or TensorRT execution provider);
  the provider actually used is checked after the session starts, so a silent fallback to the
  CPU is reported; on a GPU the input and output are bound with IO binding.
* ``TrtSegmenter``: a native TensorRT plan (``.engine``) with its ``model.engine.json`` sidecar,
  checked against this machine's TensorRT and GPU *before* deserialising; vsda's one TensorRT runner
  (``vsda-infer``, the export parity check and the formats benchmark all use it).
* ``TorchSegmenter``: a vsda training checkpoint (``.pt``) or a model in memory (the export's reference).

``Segmenter.default_size`` is the (H, W) frames run at unless told otherwise: a static input's size,
else the scale the model was trained for (``ModelMeta.input_size``; a checkpoint's ``eval_size``).

onnxruntime is the runtime's own dependency; tensorrt and torch are imported only by their
backend, and a missing one is one error naming the extra to install.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from vsda_deploy.engine import Device, EngineError, check_compatible, make_logger, read_sidecar, rebuild_command
from vsda_deploy.model_meta import (
    INPUT_NAME,
    OUTPUT_NAME,
    ModelError,
    ModelMeta,
    checkpoint_eval_size,
    checkpoint_normalization,
)
from vsda_deploy.options import OptionError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "ort", "trt", "torch")
ORT_PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")
SUFFIX_BACKEND = {".onnx": "ort", ".engine": "trt", ".plan": "trt", ".pt": "torch", ".pth": "torch"}
_ORT_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
              "tensorrt": "TensorrtExecutionProvider"}


def require(module: str, extra: str, what: str) -> ModuleType:
    """Return the imported ``module``; ModelError naming the pip extra when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ModelError(f"{what}: needs the Python package '{module.split('.')[0]}' ({e}); "
                         f"install it with: pip install 'vsda[{extra}]'") from None


def parse_device(device: str) -> tuple[str, int]:
    """Return ``("cpu", 0)`` or ``("cuda", index)`` for ``cpu``, ``cuda`` or ``cuda:N``."""
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", device.strip().lower())
    if m is None or (m[1] == "cpu" and m[2] is not None):
        raise OptionError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    return m[1], int(m[2] or 0)


class Segmenter:
    """A loaded model: ``predict(batch) -> scores``, its metadata and where it runs."""

    backend = ""
    outputs = "logits"  # or "probabilities"

    def __init__(self, path: Path, meta: ModelMeta, device: str, provider: str) -> None:
        self.path, self.meta, self.device, self.provider = path, meta, device, provider
        self.precision = meta.precision
        self.fixed_size: tuple[int, int] | None = None  # (H, W) of a static input, None if dynamic
        self.trained_size: tuple[int, int] | None = tuple(meta.input_size)  # None: not recorded

    @property
    def default_size(self) -> tuple[int, int] | None:
        """Return the (H, W) frames run at by default: a static input's, else the trained scale (None: own size)."""
        return self.fixed_size or self.trained_size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Return float32 (N, C, H, W) scores of a normalised float32 (N, 3, H, W) batch."""
        raise NotImplementedError

    def check_size(self, height: int, width: int) -> None:
        """Raise ModelError when the model cannot run at ``height`` x ``width``."""
        if self.fixed_size is not None and self.fixed_size != (height, width):
            fh, fw = self.fixed_size
            raise ModelError(f"{self.path}: input is fixed at {fh}x{fw} (HxW); it cannot run at "
                             f"{height}x{width} (drop --input-size or pass --input-size {fh}x{fw})")

    def describe(self) -> dict[str, str]:
        """Return the report's ``backend``, ``provider``, ``precision`` and ``device``."""
        return {"backend": self.backend, "provider": self.provider, "precision": self.precision,
                "device": self.device}

    def close(self) -> None:
        """Release the model's resources."""


def _check_scores(path: Path, scores: np.ndarray, meta: ModelMeta) -> np.ndarray:
    if scores.ndim != 4 or scores.shape[1] != meta.num_classes:
        raise ModelError(f"{path}: output '{OUTPUT_NAME}' has shape {scores.shape}; expected "
                         f"(N, {meta.num_classes}, H, W) for the {meta.num_classes} classes of its metadata")
    return scores.astype(np.float32, copy=False)


# --- ONNX Runtime -------------------------------------------------------------------------

def ort_providers(device: str, provider: str, available: list[str]) -> list[str]:
    """Return the provider names to ask ONNX Runtime for, best first, CPU last.

    ``provider`` auto picks CUDA on a ``cuda`` device and the CPU otherwise. A GPU provider
    that this onnxruntime build lacks is an error naming the ``gpu`` extra.
    """
    if provider not in ORT_PROVIDERS:
        raise OptionError(f"--provider {provider!r}: choose from {', '.join(ORT_PROVIDERS)}")
    kind, _ = parse_device(device)
    if provider == "auto":
        provider = "cuda" if kind == "cuda" else "cpu"
    if provider == "cpu":
        if kind != "cpu":
            raise OptionError(f"--provider cpu runs on the CPU; it contradicts --device {device}")
        return [_ORT_NAMES["cpu"]]
    if kind != "cuda":
        raise OptionError(f"--provider {provider} needs --device cuda[:N], got --device {device}")
    wanted = [_ORT_NAMES["tensorrt"]] if provider == "tensorrt" else []
    wanted += [_ORT_NAMES["cuda"], _ORT_NAMES["cpu"]]
    if wanted[0] not in available:
        raise ModelError(f"onnxruntime: no {wanted[0]} in this build (it has {', '.join(available)}); "
                         "install onnxruntime-gpu in place of onnxruntime: pip install 'vsda[gpu]'")
    return wanted


class OrtSegmenter(Segmenter):
    """An ONNX model on ONNX Runtime; see the module docstring."""

    backend = "ort"

    def __init__(self, path: str | Path, device: str = "cpu", provider: str = "auto", threads: int = 0) -> None:
        import onnxruntime as ort

        path = Path(path)
        _, index = parse_device(device)
        wanted = ort_providers(device, provider, ort.get_available_providers())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: one thread per physical core
        options.log_severity_level = 3  # ORT's own warnings are noise here; the fallback is checked below
        # Idle pool threads otherwise spin after each run and steal the cores that smoothing and
        # post-processing need next. Measured on 2 cores (DDRNet-23-slim, 256x512): 4% slower
        # inference on an idle machine, but 30% faster inference and 3x faster smoothing on a busy one.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = self._session(ort, path, options, wanted, index)
        meta = ModelMeta.from_props(session.get_modelmeta().custom_metadata_map, str(path))
        used = session.get_providers()[0]
        reported = used
        if used != wanted[0]:  # ORT falls back to the CPU when CUDA/TensorRT libraries fail to load
            reported = f"{used} (fallback from {wanted[0]})"
            log.warning("%s: asked ONNX Runtime for %s but it runs on %s (missing CUDA/cuDNN/TensorRT "
                        "libraries?); expect CPU speed", path, wanted[0], used)
        super().__init__(path, meta, device if used != _ORT_NAMES["cpu"] else "cpu", reported)
        self.session = session
        self.fixed_size, self.input_dtype = self._check_io(session, meta)
        self._gpu = used != _ORT_NAMES["cpu"]
        self._ort, self._device_index = ort, index
        self._bind_device = "cuda"
        self._binding = session.io_binding() if self._gpu else None
        self._input_value: Any = None

    @staticmethod
    def _session(ort: ModuleType, path: Path, options: Any, wanted: list[str], index: int) -> Any:
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        providers: list[Any] = []
        for name in wanted:
            if name == _ORT_NAMES["tensorrt"]:  # cache the engine next to the model: built once, minutes
                cache = path.with_name(path.name + ".trtcache")
                providers.append((name, {"device_id": index, "trt_engine_cache_enable": True,
                                         "trt_engine_cache_path": str(cache)}))
            elif name == _ORT_NAMES["cuda"]:
                providers.append((name, {"device_id": index}))
            else:
                providers.append(name)
        try:
            return ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # ORT raises its own exception types for unreadable files
            raise ModelError(f"{path}: cannot load ONNX model ({str(e).splitlines()[0]})") from None

    def _check_io(self, session: Any, meta: ModelMeta) -> tuple[tuple[int, int] | None, type]:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
            raise ModelError(f"{self.path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', got inputs "
                             f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}")
        shape = inputs[0].shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelError(f"{self.path}: input '{INPUT_NAME}' has shape {shape}; expected (N, 3, H, W)")
        classes = next(o.shape for o in outputs if o.name == OUTPUT_NAME)[1]
        if isinstance(classes, int) and classes != meta.num_classes:
            raise ModelError(f"{self.path}: output '{OUTPUT_NAME}' has {classes} channels but its metadata "
                             f"lists {meta.num_classes} classes")
        fixed = tuple(shape[2:]) if all(isinstance(d, int) and d > 0 for d in shape[2:]) else None
        dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        return fixed, dtype

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        try:
            if self._binding is None:
                scores = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
            else:
                scores = self._predict_bound(batch)
        except Exception as e:  # ORT's own exception types: shape or type errors of this model
            raise ModelError(f"{self.path}: inference failed on a {batch.shape} input "
                             f"({str(e).splitlines()[0]})") from None
        return _check_scores(self.path, scores, self.meta)

    def _predict_bound(self, batch: np.ndarray) -> np.ndarray:
        """Run with IO binding: the input lives in a reused device buffer, the output stays on the GPU."""
        value = self._input_value
        if value is None or tuple(value.shape()) != batch.shape:  # allocated on the device, not aliasing `batch`
            value = self._ort.OrtValue.ortvalue_from_shape_and_type(batch.shape, batch.dtype, self._bind_device,
                                                                    self._device_index)
            self._input_value = value
            self._binding.bind_ortvalue_input(INPUT_NAME, value)
        value.update_inplace(batch)
        self._binding.bind_output(OUTPUT_NAME, self._bind_device, self._device_index)
        self.session.run_with_iobinding(self._binding)
        return self._binding.copy_outputs_to_cpu()[0]

    def close(self) -> None:
        self._binding = self._input_value = None
        self.session = None


# --- TensorRT -----------------------------------------------------------------------------

class TrtSegmenter(Segmenter):
    """A TensorRT 10/11 plan run with ``execute_async_v3`` on a CUDA stream (buffers via torch).

    The sidecar is checked (``vsda_deploy.engine.check_compatible``) before the plan is deserialised, and
    TensorRT's own log is kept (``engine.make_logger``) so a plan that does not load or run says why.
    UNVERIFIED: written against the TensorRT 10 Python API, tested against fake ``tensorrt`` modules, not
    run (no GPU or TensorRT on the development machines). Needs ``vsda[trt]`` and a CUDA torch.
    """

    backend = "trt"

    def __init__(self, path: str | Path, device: str = "cuda:0") -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: engine file not found")
        kind, index = parse_device(device)
        if kind != "cuda":
            raise OptionError(f"--device {device}: {path} is a TensorRT engine, which runs on a GPU; "
                              "pass --device cuda:N")
        try:
            meta, build, _ = read_sidecar(path)  # before tensorrt: a wrong file fails fast and clearly
            trt = require("tensorrt", "trt", str(path))
            check_compatible(path, build, Device(trt.__version__))
            torch = require("torch", "train", str(path))
            if not torch.cuda.is_available():
                raise ModelError(f"{path}: torch sees no CUDA GPU (CPU-only torch build, or no driver)")
            cc = "{}.{}".format(*torch.cuda.get_device_capability(index))
            check_compatible(path, build, Device(trt.__version__, torch.cuda.get_device_name(index), cc))
        except EngineError as e:
            raise ModelError(str(e)) from None
        self.logger = make_logger(trt)
        runtime = trt.Runtime(self.logger)
        if build.version_compatible:  # its lean runtime is embedded in the plan
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ModelError(f"{path}: TensorRT {trt.__version__} could not load the engine "
                             f"({self.logger.summary()}); rebuild it: {rebuild_command(build, path)}")
        super().__init__(path, meta, f"cuda:{index}", f"TensorRT {trt.__version__}")
        self._torch, self._trt, self._runtime, self.engine = torch, trt, runtime, engine
        self.context = engine.create_execution_context()
        self._dev = torch.device("cuda", index)
        self.stream = torch.cuda.Stream(self._dev)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if INPUT_NAME not in names or OUTPUT_NAME not in names:
            raise ModelError(f"{path}: engine tensors are {names}; expected '{INPUT_NAME}' and '{OUTPUT_NAME}'")
        self._profile = [tuple(s) for s in engine.get_tensor_profile_shape(INPUT_NAME, 0)]  # min, opt, max
        shape = tuple(engine.get_tensor_shape(INPUT_NAME))
        self.fixed_size = tuple(shape[2:]) if min(shape[2:]) > 0 else None
        self._dtypes = {n: self._torch_dtype(engine.get_tensor_dtype(n)) for n in (INPUT_NAME, OUTPUT_NAME)}
        self._host = self._out = None

    def _torch_dtype(self, dtype: Any) -> Any:
        table = {self._trt.float32: self._torch.float32, self._trt.float16: self._torch.float16}
        if dtype not in table:
            raise ModelError(f"{self.path}: unsupported engine IO type {dtype}")
        return table[dtype]

    def check_size(self, height: int, width: int) -> None:
        super().check_size(height, width)
        (_, _, h0, w0), _, (_, _, h1, w1) = self._profile
        if not (h0 <= height <= h1 and w0 <= width <= w1):
            raise ModelError(f"{self.path}: engine accepts {h0}..{h1} x {w0}..{w1} (HxW); it cannot run at "
                             f"{height}x{width}: pass --input-size HxW inside that range")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self.stream):
            if self._host is None or tuple(self._host.shape) != batch.shape:  # pinned: async copy to the GPU
                self._host = torch.empty(batch.shape, dtype=torch.float32).pin_memory()
            self._host.numpy()[...] = batch
            x = self._host.to(self._dev, self._dtypes[INPUT_NAME], non_blocking=True)
            self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
            shape = tuple(self.context.get_tensor_shape(OUTPUT_NAME))
            if self._out is None or tuple(self._out.shape) != shape:
                self._out = torch.empty(shape, dtype=self._dtypes[OUTPUT_NAME], device=self._dev)
            self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
            self.context.set_tensor_address(OUTPUT_NAME, self._out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ModelError(f"{self.path}: TensorRT execution failed ({self.logger.summary()})")
            scores = self._out.float().cpu()  # waits on the stream
        return _check_scores(self.path, scores.numpy(), self.meta)

    def close(self) -> None:
        self.context = self.engine = self._runtime = self._host = self._out = None


# --- PyTorch checkpoint -------------------------------------------------------------------

class TorchSegmenter(Segmenter):
    """A vsda training checkpoint rebuilt with ``vsda_train`` (debugging a deployment), or a model in memory.

    Given ``module`` (an eval-mode model) and its ``meta``, nothing is loaded from ``path`` (only named).
    """

    backend = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", precision: str = "fp32", *, module: Any = None,
                 meta: ModelMeta | None = None) -> None:
        path = Path(path)
        torch = require("torch", "train", str(path))
        kind, index = parse_device(device)
        if precision not in ("fp32", "fp16"):
            raise OptionError(f"--precision {precision!r}: the torch backend runs fp32 or fp16")
        if precision == "fp16" and kind != "cuda":
            raise OptionError("--precision fp16 needs --device cuda (fp16 convolutions are not a CPU path)")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"{path}: --device {device} but torch sees no CUDA GPU")
        dev = torch.device(kind, index) if kind == "cuda" else torch.device("cpu")
        trained_size = None if module is None else tuple(meta.input_size)
        if module is None:
            module, meta, trained_size = self._load(path, dev, precision)
        super().__init__(path, meta, str(dev), f"torch {torch.__version__.split('+')[0]} ({dev.type})")
        self.trained_size = trained_size
        self._torch, self._dev = torch, dev
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = module.to(dev, self._dtype).eval()

    @staticmethod
    def _load(path: Path, dev: Any, precision: str) -> tuple[Any, ModelMeta, tuple[int, int] | None]:
        """Return the checkpoint's model, its ModelMeta and its ``eval_size`` (None when not recorded)."""
        evaluate = require("vsda_train.evaluate", "train", str(path))
        from vsda_deploy.labels import get_label_space

        model, ckpt = evaluate.load_model(path, dev)  # CheckpointError (a ValueError) names the file
        conf = dict(ckpt.get("model_config") or {})
        space = get_label_space(ckpt.get("label_space", "viper15"))
        try:
            norm, eval_size = checkpoint_normalization(ckpt), checkpoint_eval_size(ckpt)
        except ValueError as e:
            raise ModelError(f"{path}: {e}") from None
        meta = ModelMeta(classes=space.classes, palette=space.palette, label_space=space.name,
                         input_size=eval_size or ModelMeta.input_size, mean=norm.mean, std=norm.std,
                         channel_order=norm.channel_order, precision=precision, model_name=str(conf.get("name", "")),
                         model_config=conf, things=tuple(sorted(space.things)))
        return model, meta, eval_size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        try:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._dev, self._dtype)
                scores = self.model(x).float().cpu().numpy()
        except torch.cuda.OutOfMemoryError as e:  # a RuntimeError: the pipeline names the size for MemoryError
            raise MemoryError(str(e).splitlines()[0]) from None
        return _check_scores(self.path, scores, self.meta)

    def close(self) -> None:
        self.model = None


# --- loading ------------------------------------------------------------------------------

def backend_for(path: Path, backend: str = "auto") -> str:
    """Return the backend that runs ``path``: ``backend``, or the one its suffix implies."""
    if backend not in BACKENDS:
        raise OptionError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}")
    implied = SUFFIX_BACKEND.get(path.suffix.lower())
    if backend == "auto":
        if implied is None:
            raise ModelError(f"{path}: cannot tell the backend from the suffix (.onnx, .engine, .pt); "
                             "pass --backend ort|trt|torch")
        return implied
    if implied is not None and implied != backend:
        raise OptionError(f"--backend {backend}: {path} is a {path.suffix} file, which runs on --backend {implied} "
                          "(or auto)")
    return backend


def load_segmenter(model_path: str | Path, backend: str = "auto", device: str = "cpu", *,
                   provider: str = "auto", precision: str = "fp32", threads: int = 0) -> Segmenter:
    """Return the ``Segmenter`` for a model file; ModelError (message starting with the path) if it cannot run.

    ``provider`` picks the ONNX Runtime execution provider (auto|cpu|cuda|tensorrt);
    ``precision`` fp16 runs a torch checkpoint in half precision on a GPU; ``threads``
    caps ONNX Runtime's CPU threads (0: its default).
    """
    path = Path(model_path)
    chosen = backend_for(path, backend)
    parse_device(device)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if chosen == "ort":
        return OrtSegmenter(path, device, provider, threads)
    if chosen == "trt":
        return TrtSegmenter(path, device)
    return TorchSegmenter(path, device, precision)
