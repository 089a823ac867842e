"""FP32 ONNX export of a vsda checkpoint: one self-contained file, dynamic H x W, metadata inside, checked.

Exporter: ``torch.onnx.export(dynamo=False)`` (the TorchScript exporter) at opset 17. On torch 2.13
it writes one self-contained file for every vsda model in well under a second, folds BatchNorm into
the convolutions, and keeps height and width dynamic (verified at odd sizes). ``dynamo=True`` needs
``external_data=False`` to give one file, takes ~30x longer, and for DDRNet cannot go below opset 18
(its opset-17 down-conversion fails on ``ReduceMean``); opset 17 is what TensorRT 8.6 / 10.3 on
JetPack parse best, so the TorchScript exporter it is, with its deprecation warning silenced.

The graph's input is ``image`` (N, 3, H, W) float, normalised; its output ``logits`` (N, C, H, W) with a
static class dimension. ``ModelMeta`` rides in ``metadata_props`` so ``vsda-infer`` needs nothing else.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from vsda_deploy import __version__ as VSDA_VERSION
from vsda_deploy.errors import VsdaError
from vsda_deploy.labels import get_label_space
from vsda_deploy.model_meta import (
    INPUT_NAME,
    META_PREFIX,
    OUTPUT_NAME,
    ModelMeta,
    checkpoint_eval_size,
    checkpoint_normalization,
)
from vsda_deploy.options import parse_hw
from vsda_train.checkpoint import CheckpointError, file_hash
from vsda_train.config import ConfigError
from vsda_train.evaluate import load_model

OPSET = 17
DEFAULT_SIZE = (512, 1024)  # H, W for a checkpoint that does not record its eval_size (Cityscapes' eval scale)
MIN_OPSET = 13  # per-axis QuantizeLinear (INT8 weights) needs 13; Resize with sizes needs 11


class ExportError(VsdaError, ValueError):
    """An export that cannot be done as asked; the message starts with the file or option at fault."""


def parse_input_size(text: str) -> tuple[int, int]:
    """Return ``(height, width)`` of ``HxW`` (``vsda_deploy.options.parse_hw``); OptionError names the option."""
    return parse_hw(text, "--input-size")


def load_for_export(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Return ``(model in eval mode, checkpoint)``; a missing, foreign or mismatched checkpoint is ExportError."""
    path = Path(path)
    try:
        model, ckpt = load_model(path)
    except (CheckpointError, ConfigError, TypeError) as e:  # create_model: ConfigError for unknown names and options
        msg = str(e)
        raise ExportError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    space_name = ckpt.get("label_space", "viper15")
    try:
        space = get_label_space(space_name)
    except ValueError as e:
        raise ExportError(f"{path}: {e}") from None
    if model.num_classes != space.num_classes:
        raise ExportError(f"{path}: model has {model.num_classes} classes but its label space {space_name} "
                          f"has {space.num_classes}")
    return model, ckpt


def export_size(ckpt: dict[str, Any], ckpt_path: str | Path, asked: tuple[int, int] | None) -> tuple[int, int]:
    """Return the H x W to export for: ``asked`` (``--input-size``), else the checkpoint's ``eval_size``, else 512x1024.

    ``eval_size`` is the scale training evaluates target frames at; ``vsda-infer`` runs frames at it by default.
    """
    if asked is not None:
        return tuple(asked)
    try:
        trained = checkpoint_eval_size(ckpt)
    except ValueError as e:
        raise ExportError(f"{ckpt_path}: {e}") from None
    return trained or DEFAULT_SIZE


def model_meta(model: nn.Module, ckpt: dict[str, Any], ckpt_path: str | Path, input_size: tuple[int, int] | None,
               dynamic: bool, precision: str = "fp32") -> ModelMeta:
    """Return the ModelMeta of an exported checkpoint (classes, palette, normalisation, trained scale, provenance).

    ``input_size`` None: the checkpoint's ``eval_size`` (``export_size``). The normalisation is the one the
    checkpoint trained with (``config.model.preprocess``: imagenet or caffe).
    """
    space = get_label_space(ckpt.get("label_space", "viper15"))
    config = dict(model.config)
    try:
        norm = checkpoint_normalization(ckpt)
    except ValueError as e:
        raise ExportError(f"{ckpt_path}: {e}") from None
    return ModelMeta(
        classes=space.classes, palette=space.palette, label_space=space.name,
        input_size=export_size(ckpt, ckpt_path, input_size), dynamic=dynamic, mean=tuple(norm.mean),
        std=tuple(norm.std), channel_order=norm.channel_order, precision=precision,
        model_name=str(config.get("name", "")), model_config=config,
        checkpoint_sha256=file_hash(ckpt_path, length=64), vsda_version=VSDA_VERSION,
        things=tuple(sorted(space.things)),
    )


def ensure_writable(path: str | Path) -> Path:
    """Return ``path`` after checking its folder can be created and written; ExportError names it."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path}: is a folder; give the output file, e.g. {path / 'model.onnx'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.{os.getpid()}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ExportError(f"{path}: cannot write the output here ({e.strerror or e})") from None
    return path


def set_meta(model: onnx.ModelProto, meta: ModelMeta) -> None:
    """Replace the ``vsda.*`` entries of ``metadata_props`` with ``meta``."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    for key, value in [*keep, *meta.to_props().items()]:
        model.metadata_props.add(key=key, value=value)


def read_meta(model: onnx.ModelProto, where: str) -> ModelMeta:
    """Return the ModelMeta stored in an ONNX ModelProto."""
    return ModelMeta.from_props({p.key: p.value for p in model.metadata_props}, where)


def save_checked(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically after ``onnx.checker`` (full check); return the path."""
    path = Path(path)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{path}: the exported graph fails onnx.checker ({str(e).splitlines()[0]})") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(model.SerializeToString())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _fix_output_shape(model: onnx.ModelProto, num_classes: int, dynamic: bool) -> None:
    """Name the output dims like the input's and make the class dim static (the exporter leaves it symbolic)."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    names = ("batch", None, "height", "width")
    static = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    for i, dim in enumerate(dims):
        if i == 1:
            dim.dim_value = num_classes
        elif dynamic:
            dim.dim_param = names[i]
        else:
            dim.dim_value = static[i]


def export_fp32(model: nn.Module, path: str | Path, meta: ModelMeta, opset: int = OPSET) -> Path:
    """Export ``model`` to an FP32 ONNX file with ``meta`` inside, checked; return its path."""
    path = Path(path)
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: vsda exports need opset >= {MIN_OPSET} (per-channel Q/DQ)")
    h, w = meta.input_size
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in (INPUT_NAME, OUTPUT_NAME)}
    buffer = io.BytesIO()
    model = model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated, not gone; see the module docstring for why it is used.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, h, w),), buffer, dynamo=False, opset_version=opset,
                          do_constant_folding=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=axes if meta.dynamic else None)
    proto = onnx.load_from_string(buffer.getvalue())
    _fix_output_shape(proto, meta.num_classes, meta.dynamic)
    proto.producer_name, proto.producer_version = "vsda-export", VSDA_VERSION
    proto.doc_string = f"vsda {meta.model_name} ({meta.label_space}, {meta.num_classes} classes), {meta.precision}"
    set_meta(proto, meta)
    return save_checked(proto, path)
