"""Precision lives in the ONNX graph: FP16 conversion and static INT8 Q/DQ calibrated on target frames.

* FP16: ``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)``; its default
  block list plus ``Resize`` (ORT >= 1.2x no longer lists it) stays FP32, and the graph keeps FP32 I/O.
* INT8: ``quantize_static`` in QDQ format, per-channel symmetric INT8 weights, symmetric INT8
  activations, biases left FP32, Q/DQ on the inputs of Conv (Gemm, MatMul) only, as NVIDIA places them;
  Resize, Softmax, ArgMax and the classifier stay FP32. That file obeys TensorRT's explicit-quantization
  rules (docs/export.md), so the same file runs in ONNX Runtime and builds a TensorRT engine.
  ``target="cpu"`` quantizes activations to asymmetric UINT8 and the Adds and layer outputs too: what
  ONNX Runtime's x86 kernels are fast with (ReLU folds into QLinearConv); TensorRT rejects that file.
  Calibration defaults to Percentile (99.999): on the demo's DDRNet-23-slim it kept 0.05-0.4 points more
  argmax agreement than MinMax; Entropy lost 1.5 points there.
* Calibration runs here (not inside ``quantize_static``) in chunks of frames, so memory stays bounded and
  Entropy gets a real histogram (ORT's default 128 bins for 128 levels leaves it equal to MinMax); the
  ranges then reach ``quantize_static`` through its calibration cache.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import numpy_helper
from vsda_export.onnx_export import ExportError, read_meta, save_checked, set_meta

from vsda_deploy.model_meta import ModelMeta
from vsda_deploy.pipeline import model_input
from vsda_deploy.preprocess import Normalization
from vsda_deploy.sources import IMAGE_EXTENSIONS, natural_key, read_image_rgb

CALIB_METHODS = ("minmax", "entropy", "percentile")
INT8_TARGETS = ("trt", "cpu")
# What gets Q/DQ. For TensorRT the inputs of the weighted layers only: quantizing the residual Adds too
# (NVIDIA's fusion advice) cost 0.2-0.5 points of argmax agreement on DDRNet-23-slim, and agreement is the
# binding tolerance. For ONNX Runtime on x86 the Adds as well (QLinearAdd keeps the graph in INT8), and
# Relu/Clip: with UINT8 activations the quantizer removes them (the producer's range starts at 0 instead),
# so no DequantizeLinear -> Relu -> QuantizeLinear round trip runs between two INT8 layers.
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CPU_QUANTIZED_OPS = (*QUANTIZED_OPS, "Add", "Relu", "Clip")
FP32_OPS = ("Resize", "Upsample", "Softmax", "ArgMax")  # never quantized / kept FP32 in FP16 graphs
PER_CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1}
MERGE_OPS = ("Add", "Sum", "Concat", "Mul")
CALIB_CHUNK_PIXELS = 8 * 128 * 256  # per calibrator pass, which holds every activation of its frames in memory
ENTROPY_BINS = 512  # 192 candidate thresholds per tensor: seconds, not minutes, in numpy
PERCENTILE = 99.999


# --- FP16 -----------------------------------------------------------------------------------

def convert_fp16(src: str | Path, dst: str | Path, keep_fp32: Sequence[str] = ()) -> Path:
    """Write the FP16 version of the FP32 ONNX ``src`` to ``dst`` (FP32 inputs/outputs); return ``dst``.

    ``keep_fp32`` adds op types (e.g. ``ReduceMean``) to those kept in FP32.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src))
    meta = read_meta(model, str(src))
    blocked = sorted({*DEFAULT_OP_BLOCK_LIST, *FP32_OPS, *keep_fp32})
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    OnnxModel(half).topological_sort()  # the converter appends its input Casts after their users
    set_meta(half, _with_precision(meta, "fp16"))
    return save_checked(half, dst)


def _with_precision(meta: ModelMeta, precision: str) -> ModelMeta:
    return ModelMeta(**{**meta.__dict__, "precision": precision})


# --- frames of a spec -----------------------------------------------------------------------

@dataclass(frozen=True)
class FrameSet:
    """The frames of a spec: image files, or one video file of ``count`` frames."""

    spec: str
    paths: tuple[Path, ...] = ()
    video: Path | None = None
    count: int = 0

    def __len__(self) -> int:
        return len(self.paths) if self.video is None else self.count

    def read(self, indices: Sequence[int]) -> Iterator[np.ndarray]:
        """Yield the RGB uint8 frames at ``indices`` (sorted), decoding a video once, front to back."""
        if self.video is None:
            for i in indices:
                rgb = read_image_rgb(self.paths[i])
                if rgb is None:
                    raise ExportError(f"{self.paths[i]}: cannot read this image")
                yield rgb
            return
        yield from _read_video(self.video, indices)


def _read_video(path: Path, indices: Sequence[int]) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        wanted, pos = iter(indices), 0
        target = next(wanted, None)
        while target is not None:
            if not cap.grab():
                raise ExportError(f"{path}: video ended at frame {pos}, before frame {target}")
            if pos == target:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    raise ExportError(f"{path}: cannot decode frame {pos}")
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                target = next(wanted, None)
            pos += 1
    finally:
        cap.release()


def _images_under(folder: Path, pattern: str = "*") -> list[Path]:
    found = (p for p in folder.rglob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return sorted(found, key=lambda p: natural_key(str(p)))


def _video_frames(spec: str, path: Path) -> FrameSet:
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
    cap.release()
    if count < 0:
        raise ExportError(f"{spec}: cannot open as a video (not a video file, or codec unsupported)")
    return FrameSet(spec, video=path, count=count)


def open_frames(spec: str, split: str = "train") -> FrameSet:
    """Return the frames of ``spec``; ExportError (naming the spec) when there are none.

    ``cityscapes-vps:ROOT`` (``ROOT/{split}/img_all``, else ``img``), ``cityscapes-seq:ROOT``
    (``leftImg8bit_sequence/{split}``), ``video:PATH`` (video file or frame folder), or a plain
    folder of images (searched recursively), a video file or a single image.
    """
    kind, sep, rest = str(spec).partition(":")
    if sep and kind == "cityscapes-vps":
        root = Path(rest).expanduser()
        folder = next((root / split / f for f in ("img_all", "img") if (root / split / f).is_dir()), None)
        if folder is None:
            raise ExportError(f"{spec}: no {split}/img_all or {split}/img folder under {root}")
        return _nonempty(FrameSet(spec, tuple(_images_under(folder, "*_leftImg8bit.png"))), folder)
    if sep and kind == "cityscapes-seq":
        folder = Path(rest).expanduser() / "leftImg8bit_sequence" / split
        if not folder.is_dir():
            raise ExportError(f"{spec}: folder {folder} not found")
        return _nonempty(FrameSet(spec, tuple(_images_under(folder, "*_leftImg8bit.png"))), folder)
    path = Path(rest if sep and kind == "video" else spec).expanduser()
    if not path.exists():
        raise ExportError(f"{spec}: no such file or folder")
    if path.is_dir():
        return _nonempty(FrameSet(spec, tuple(_images_under(path))), path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return FrameSet(spec, (path,))
    return _nonempty(_video_frames(spec, path), path)


def _nonempty(frames: FrameSet, where: Path) -> FrameSet:
    if len(frames) == 0:
        what = "frames" if frames.video is not None else f"images ({', '.join(IMAGE_EXTENSIONS)})"
        raise ExportError(f"{frames.spec}: no {what} found in {where}")
    return frames


def spread(total: int, n: int) -> list[int]:
    """Return ``min(n, total)`` indices spread evenly over ``range(total)`` (first and last included)."""
    n = min(n, total)
    if n <= 1:
        return [0][:n]
    return sorted({round(i * (total - 1) / (n - 1)) for i in range(n)})


# --- INT8 -----------------------------------------------------------------------------------

class FrameCalibrationReader:
    """An ONNX Runtime ``CalibrationDataReader`` over ``count`` frames spread through a FrameSet.

    Frames become inputs as ``vsda-infer`` makes them (``vsda_deploy.pipeline.model_input``: bilinear resize to
    ``size``, then the model's normalisation ``norm``).
    """

    def __init__(self, frames: FrameSet, count: int, size: tuple[int, int], norm: Normalization,
                 input_name: str = "image") -> None:
        if count < 1:
            raise ExportError(f"--calib-frames {count}: must be at least 1")
        self.frames, self.size, self.norm = frames, tuple(size), norm
        self.input_name = input_name
        self.indices = spread(len(frames), count)
        self._it: Iterator[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self.frames.read(self.indices)
        rgb = next(self._it, None)
        return None if rgb is None else {self.input_name: model_input(rgb, self.size, self.norm)}

    def rewind(self) -> None:
        self._it = None


class _Chunk:
    """A reader over a list of inputs (one calibrator pass)."""

    def __init__(self, items: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(items)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def fp32_nodes(model: onnx.ModelProto, num_classes: int) -> list[str]:
    """Return the names of the nodes that must stay FP32: Resize/Softmax/ArgMax and the classifier.

    The classifier is every node on the data path between the graph output and the first convolutions
    with ``num_classes`` output channels (DDRNet's last 1x1 conv; DeepLabV2's four ASPP convs and their sum).
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    weights = {init.name: init for init in model.graph.initializer}
    keep = {node.name for node in model.graph.node if node.op_type in FP32_OPS}
    stack, seen = [o.name for o in model.graph.output], set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        keep.add(node.name)
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            w = weights.get(node.input[1])
            if w is not None and num_classes in w.dims[:2]:
                continue  # a classifier: the features before it may be quantized
        # Merges (DeepLabV2's ASPP sum) carry data on every input; other ops (Resize...) on the first.
        stack.extend(node.input if node.op_type in MERGE_OPS else node.input[:1])
    return sorted(keep)


def input_convs(model: onnx.ModelProto) -> list[str]:
    """Return the names of the convolutions that read a graph input (the image) directly."""
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in inputs]


def _excluded(model: onnx.ModelProto, num_classes: int, symmetric: bool) -> list[str]:
    """Nodes left FP32: the classifier path, and for ONNX Runtime on CPU also the first convolution.

    A 3-channel convolution is a poor fit for the uint8 kernels (its QLinearConv plus the image's
    QuantizeLinear took longer than the FP32 convolution on the demo model at 256x512) and it is
    the layer most sensitive to quantization.
    """
    keep = fp32_nodes(model, num_classes)
    return keep if symmetric else sorted({*keep, *input_convs(model)})


def _calibration_options(method: str) -> dict:
    if method == "entropy":  # TensorRT's entropy calibrator: many bins, 128 quantized levels
        return {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128, "symmetric": True}
    if method == "percentile":
        return {"num_bins": 2048, "percentile": PERCENTILE, "symmetric": True}
    return {}


def calibrate(model_path: Path, reader: FrameCalibrationReader, method: str, work: Path) -> object:
    """Return ONNX Runtime ``TensorsData`` (activation ranges) of ``model_path`` over the reader's frames."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    calibrator = create_calibrator(model_path, list(CPU_QUANTIZED_OPS), augmented_model_path=str(work / "aug.onnx"),
                                   calibrate_method=getattr(CalibrationMethod, _method_name(method)),
                                   extra_options=_calibration_options(method))
    reader.rewind()
    per_pass = max(1, CALIB_CHUNK_PIXELS // (reader.size[0] * reader.size[1]))  # 8 at 128x256, 1 at 512x1024
    chunk: list[dict[str, np.ndarray]] = []
    while True:
        item = reader.get_next()
        if item is not None:
            chunk.append(item)
        if chunk and (item is None or len(chunk) == per_pass):
            calibrator.collect_data(_Chunk(chunk))
            chunk = []
        if item is None:
            break
    return calibrator.compute_data()


def _method_name(method: str) -> str:
    if method not in CALIB_METHODS:
        raise ExportError(f"--calib-method {method}: choose from {', '.join(CALIB_METHODS)}")
    return {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}[method]


def quantize_int8(src: str | Path, dst: str | Path, reader: FrameCalibrationReader, method: str = "percentile",
                  per_channel: bool = True, target: str = "trt") -> Path:
    """Write the static INT8 Q/DQ version of the FP32 ONNX ``src`` to ``dst``; return ``dst``.

    ``reader`` yields the calibration frames (unlabelled target-domain video); ``target`` is
    ``trt`` (symmetric INT8 everywhere: TensorRT and any ONNX Runtime) or ``cpu`` (UINT8 activations).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.preprocess import quant_pre_process

    if target not in INT8_TARGETS:
        raise ExportError(f"--int8-target {target}: choose from {', '.join(INT8_TARGETS)}")
    _method_name(method)
    src, dst = Path(src), Path(dst)
    meta = read_meta(onnx.load(str(src)), str(src))
    symmetric = target == "trt"
    options = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": False,
               "QDQOpTypePerChannelSupportToAxis": dict(PER_CHANNEL_AXIS)}
    if symmetric:
        # NVIDIA's placement: Q/DQ on the inputs of the weighted layers only. TensorRT fuses Conv + bias + ReLU
        # and re-quantizes where the next layer's input says: one rounding per layer instead of two.
        options["OpTypesToExcludeOutputQuantization"] = list(QUANTIZED_OPS)
    ops = QUANTIZED_OPS if symmetric else CPU_QUANTIZED_OPS
    with tempfile.TemporaryDirectory(prefix="vsda-int8-") as tmp:
        work = Path(tmp)
        prepared = work / "prepared.onnx"
        # Symbolic shape inference fails on some graphs and is not needed for Conv/Add quantization.
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        kwargs = dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=list(ops),
                      per_channel=per_channel, activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                      weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, _method_name(method)),
                      nodes_to_exclude=_excluded(onnx.load(str(prepared)), meta.num_classes, symmetric),
                      extra_options=options)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress to stdout
            if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
                from onnxruntime.quantization.calibrate import save_tensors_data

                cache = work / "ranges.json"
                save_tensors_data(calibrate(prepared, reader, method, work), cache)
                kwargs["calibration_cache_path"] = str(cache)
                reader = None  # the ranges come from the cache
            else:  # older ONNX Runtime: it calibrates itself (Entropy then with its default bins)
                reader.rewind()
            quantize_static(str(prepared), str(work / "int8.onnx"), reader, **kwargs)
        model = onnx.load(str(work / "int8.onnx"))
    if not symmetric:  # TensorRT wants every Q followed by DQ: only ONNX Runtime gets the shortcut
        shapes_from_quantized(model)
    set_meta(model, _with_precision(meta, "int8"))
    model.producer_name = "vsda-export"
    return save_checked(model, dst)


def shapes_from_quantized(model: onnx.ModelProto) -> int:
    """Let every ``Shape`` of a DequantizeLinear output read the quantized tensor; return how many moved.

    Dynamic-size Resizes take their target size from a feature map's shape. In a Q/DQ graph that map is a
    DequantizeLinear output, which ONNX Runtime then computes in full just to read its shape. The shape of
    the quantized input is the same, and a DequantizeLinear left without consumers is dropped.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    moved = 0
    for node in model.graph.node:
        dq = producer.get(node.input[0]) if node.op_type == "Shape" else None
        if dq is not None and dq.op_type == "DequantizeLinear":
            node.input[0] = dq.input[0]
            moved += 1
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    dead = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] not in used]
    for node in dead:
        model.graph.node.remove(node)
    return moved


# --- TensorRT's Q/DQ rules --------------------------------------------------------------------

def _const(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def trt_qdq_violations(model: onnx.ModelProto) -> list[str]:
    """Return how a Q/DQ graph breaks TensorRT's explicit-quantization rules (empty: it obeys them).

    Rules (onnx-tensorrt's importer): zero points present, INT8 and all 0; per-channel scales only on
    constant weights, with one scale per channel of the axis the consumer needs (Conv 0, ConvTranspose 1);
    activations per-tensor.
    """
    const, consumers = _const(model), {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {out: node for node in model.graph.node for out in node.output}
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"{node.op_type} {node.name or node.output[0]}"
        zp = const.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None:
            problems.append(f"{where}: no zero point (defaults to UINT8); TensorRT needs an INT8 zero point of 0")
        elif zp.dtype != np.int8:
            problems.append(f"{where}: zero point is {zp.dtype}, TensorRT needs int8")
        elif np.any(zp != 0):
            problems.append(f"{where}: zero point {zp.ravel()[:4].tolist()} != 0 (TensorRT is symmetric only)")
        scale = const.get(node.input[1])
        if scale is None or scale.size == 1:
            continue
        problems += _per_channel_problems(node, where, scale, const, consumers, producer)
    return problems


def _per_channel_problems(node: onnx.NodeProto, where: str, scale: np.ndarray, const: dict,
                          consumers: dict, producer: dict) -> list[str]:
    data = node.input[0]
    if node.op_type == "DequantizeLinear" and data not in const and data in producer:
        data = producer[data].input[0]  # a Q -> DQ pair on an FP32 weight
    if data not in const:
        return [f"{where}: per-channel scales on an activation; TensorRT needs activations per-tensor"]
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    size = const[data].shape[axis] if -const[data].ndim <= axis < const[data].ndim else None
    problems = [] if scale.size == size else [f"{where}: {scale.size} scales for axis {axis} of size {size}"]
    if node.op_type == "DequantizeLinear":
        for user in consumers.get(node.output[0], []):
            want = PER_CHANNEL_AXIS.get(user.op_type)
            if want is not None and user.input[1] == node.output[0] and axis != want:
                problems.append(f"{where}: per-channel axis {axis} for {user.op_type}, TensorRT needs {want}")
    return problems
