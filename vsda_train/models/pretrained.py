"""ImageNet backbone weights from a local checkpoint: unwrap, rename, load, report.

Pretrained weights are data: a file the user downloaded once (torchvision, timm, the official
DDRNet ImageNet checkpoints, the Caffe DeepLab init the video-UDA peers use). Nothing is fetched here.
Pickled checkpoints are read with ``weights_only=True``; ``.safetensors`` files (how timm weights are
published on the Hugging Face hub) are parsed directly, without the ``safetensors`` package.
Key names are mapped in three steps: wrapper prefixes (``module.`` from DataParallel, ``model.``,
``_orig_mod.`` from ``torch.compile``, ``Scale.`` from the Caffe DeepLab conversion) are stripped;
a key already named like the model's is kept; otherwise the family's reference names are renamed
(``SegmentationModel.checkpoint_renames``) or the key is taken as a backbone key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vsda_train.checkpoint import CheckpointError
from vsda_train.models import SegmentationModel

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model")  # timm / torchvision training scripts, DDRNet, mmcv
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "Scale.")
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class PretrainedReport:
    """What ``load_pretrained`` did: model keys loaded, backbone keys missing, checkpoint keys left over."""

    path: str
    matched: tuple[str, ...]  # model keys that received a tensor
    missing: tuple[str, ...]  # backbone keys the checkpoint lacks (heads start from scratch anyway)
    unexpected: tuple[str, ...]  # checkpoint keys, as in the file, with no place in the model
    mismatched: tuple[str, ...]  # model keys whose checkpoint tensor has another shape (not loaded)

    def summary(self) -> str:
        """Return the one-line summary that is logged."""
        line = (f"{self.path}: loaded {len(self.matched)} tensors; {len(self.missing)} backbone keys "
                f"missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} shape mismatches")
        examples = [*self.missing[:2], *self.mismatched[:2]]
        return line + (f" (e.g. {', '.join(examples)})" if examples else "")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Return the tensors of a ``.safetensors`` file: u64 header size, JSON header, little-endian data."""
    data = path.read_bytes()
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])
        body = memoryview(data)[8 + size:]
        tensors = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            raw = bytearray(body[begin:end])  # a writable copy: torch.frombuffer shares memory
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            tensors[name] = flat.reshape(info["shape"])
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({type(e).__name__}: {e})") from e
    return tensors


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the tensors of a checkpoint file, unwrapped from ``state_dict`` / ``model`` entries."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained checkpoint not found")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; the message is what helps
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a weights-only torch checkpoint ({first_line}); "
                         "re-save it as a plain state_dict") from e
    while isinstance(obj, dict):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (expected a state_dict, or one under {WRAPPER_KEYS})")
    return tensors


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def model_key(key: str, model_keys: set[str] | dict, renames: dict[str, str]) -> str:
    """Return the model key a checkpoint key maps to (it may not exist in the model)."""
    key = _strip_wrappers(key)
    if key in model_keys:
        return key
    for old, new in renames.items():
        if key.startswith(old):
            return new + key[len(old):]
    return f"backbone.{key}"


def load_pretrained(model: SegmentationModel, path: str | Path) -> PretrainedReport:
    """Return the report of loading the checkpoint at ``path`` into ``model`` (non-strict; name and shape)."""
    source = read_state_dict(path)
    own = model.state_dict()
    renames = type(model).checkpoint_renames
    loaded: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, tensor in source.items():
        target = model_key(key, own, renames)
        if target not in own:
            unexpected.append(key)
        elif own[target].shape != tensor.shape:
            mismatched.append(target)
        else:
            loaded[target] = tensor
    if not loaded:
        name = model.config["name"]
        raise CheckpointError(f"{path}: no tensor fits {name} (checkpoint keys look like "
                         f"{', '.join(list(source)[:3])}; the model's like {', '.join(list(own)[:2])})")
    model.load_state_dict(loaded, strict=False)
    missing = [k for k in own if k.startswith("backbone.") and k not in loaded
               and not k.endswith("num_batches_tracked")]  # old torchvision files lack this counter
    report = PretrainedReport(str(path), tuple(loaded), tuple(missing), tuple(unexpected), tuple(mismatched))
    (log.warning if missing or mismatched else log.info)(report.summary())
    return report
