"""What an exported model carries about itself, so ``vsda-infer`` needs nothing else.

The same fields live in an ONNX file's ``metadata_props`` (string key/values) and in the
``model.engine.json`` sidecar of a TensorRT plan. The graph's input is ``image``
(N, 3, H, W) float (``vsda_deploy.preprocess``: ``(x / 255 - mean) / std`` in ``channel_order``)
and its output ``logits`` (N, C, H, W) at the input resolution. ``input_size`` is the scale the
model was trained and exported for: ``vsda-infer`` resizes frames to it unless told otherwise.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from vsda_deploy.errors import VsdaError
from vsda_deploy.preprocess import Normalization, preset

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
META_PREFIX = "vsda."


class ModelError(VsdaError, ValueError):
    """A model that cannot run here; the message starts with the model's path."""


@dataclass(frozen=True)
class ModelMeta:
    """Class names, palette, label space, input size, normalisation and provenance of a model."""

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    label_space: str = "viper15"
    input_size: tuple[int, int] = (512, 1024)  # H, W the model was exported / optimised for
    dynamic: bool = True  # height and width are dynamic axes
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "rgb"  # rgb | bgr (Caffe-style backbones)
    precision: str = "fp32"  # fp32 | fp16 | int8
    model_name: str = ""
    model_config: dict[str, Any] = field(default_factory=dict)
    checkpoint_sha256: str = ""
    vsda_version: str = ""
    things: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def normalization(self) -> Normalization:
        """Return the input normalisation (channel order, mean, std) the model expects."""
        return Normalization(tuple(self.mean), tuple(self.std), self.channel_order)

    def to_props(self) -> dict[str, str]:
        """Return the fields as ``{"vsda.<field>": JSON string}`` for ONNX ``metadata_props``."""
        return {META_PREFIX + k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "<model>") -> ModelMeta:
        """Return the ModelMeta stored by :meth:`to_props`; a model without it is one clear error."""
        values = {k[len(META_PREFIX):]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        if "classes" not in values:
            raise ModelError(f"{where}: no vsda metadata (classes, palette, normalisation); "
                             "export it with vsda-export")
        try:
            data = {k: json.loads(v) for k, v in values.items() if k in cls.__dataclass_fields__}
        except json.JSONDecodeError as e:
            raise ModelError(f"{where}: corrupt vsda metadata ({e})") from None
        for key in ("classes", "things", "input_size", "mean", "std"):
            if key in data:
                data[key] = tuple(data[key])
        if "palette" in data:
            data["palette"] = tuple(tuple(c) for c in data["palette"])
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_onnx_meta(path: str) -> ModelMeta:
    """Return the ModelMeta of an ONNX file, read with ONNX Runtime (no onnx package needed)."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for unreadable files
        raise ModelError(f"{path}: cannot load ONNX model ({str(e).splitlines()[0]})") from None
    return ModelMeta.from_props(sess.get_modelmeta().custom_metadata_map, path)


def checkpoint_normalization(ckpt: dict[str, Any]) -> Normalization:
    """Return the input normalisation a training checkpoint was trained with (``config.model.preprocess``).

    Checkpoints written before the field existed trained with ``imagenet``.
    """
    config = ckpt.get("config")
    model = config.get("model") if isinstance(config, dict) else None
    name = model.get("preprocess") if isinstance(model, dict) else None
    return preset(name or "imagenet")


def checkpoint_eval_size(ckpt: dict[str, Any]) -> tuple[int, int] | None:
    """Return the (H, W) a training checkpoint predicts target frames at (``eval_size``), None if not recorded."""
    size = ckpt.get("eval_size")
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ModelError(f"checkpoint eval_size {size!r}: expected [H, W]") from None
    return h, w
