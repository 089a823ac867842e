"""Segmentation models of vsda: one family per file, one factory by name.

Every model maps a normalised image batch (N, 3, H, W) to logits (N, C, H, W) at the
input resolution, for any H and W (not only multiples of the output stride), with ops that
export to ONNX with dynamic height and width. Training code calls ``forward_train`` for the
auxiliary logits and the features as well.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vsda_train.config import ConfigError

__all__ = ["SegmentationModel", "SegmentationOutput", "create_model", "model_names", "resize_like"]


class SegmentationOutput(NamedTuple):
    """What ``forward_train`` returns; logits are at input resolution, features at the output stride.

    ``instances`` (models built with an instance head) is (N, 3, H, W) at input resolution: the
    instance-centre heatmap, then the offset (dy, dx) in input pixels from each pixel to its centre.
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor | None
    features: torch.Tensor
    instances: torch.Tensor | None = None


def resize_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return ``x`` bilinearly resized to the height and width of ``like``.

    The size is read from the tensor, not computed from a stride, so odd input sizes line up
    and the ONNX graph keeps height and width dynamic.
    """
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """Base of every segmenter: ``backbone`` (ImageNet-initialisable) plus heads trained from scratch.

    Subclasses set ``self.backbone``; every parameter outside it counts as head. ``config`` holds
    what ``create_model(**config)`` needs to rebuild the same architecture from a checkpoint.
    """

    # Checkpoint key prefixes of the family's reference code -> ours (used by ``load_pretrained``).
    checkpoint_renames: ClassVar[dict[str, str]] = {}
    backbone: nn.Module

    def __init__(self, name: str, num_classes: int, **kwargs: Any) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._config = {"name": name, "num_classes": num_classes, **kwargs}

    @property
    def config(self) -> dict[str, Any]:
        """Return ``dict(name=..., num_classes=..., **kwargs)``, enough to rebuild the model."""
        return dict(self._config)

    def forward_train(self, x: torch.Tensor) -> SegmentationOutput:
        """Return logits, auxiliary logits (or None) and features, for the training losses."""
        raise NotImplementedError

    def param_groups(self, lr: float, head_lr_mult: float = 10.0) -> list[dict[str, Any]]:
        """Return optimizer groups: the backbone at ``lr``, every other parameter at ``lr * head_lr_mult``.

        The heads start from scratch while the backbone starts from ImageNet; the x10 is the
        DeepLabV2 recipe the video-UDA peers train with.
        """
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        head = [p for p in self.parameters() if id(p) not in backbone_ids]
        return [
            {"name": "backbone", "params": list(self.backbone.parameters()), "lr": lr},
            {"name": "head", "params": head, "lr": lr * head_lr_mult},
        ]


def _builders() -> dict[str, Callable[..., SegmentationModel]]:
    # Imported here because the family modules import the base classes above.
    from vsda_train.models import ddrnet, deeplabv2

    return {**ddrnet.MODELS, **deeplabv2.MODELS}


def model_names() -> list[str]:
    """Return the names ``create_model`` accepts, sorted."""
    return sorted(_builders())


def create_model(name: str, num_classes: int, pretrained: str | None = None,
                 **kwargs: Any) -> SegmentationModel:
    """Return the segmenter ``name`` with ``num_classes`` outputs, its backbone loaded from ``pretrained``.

    ``pretrained`` is a local ImageNet checkpoint (torchvision, timm or the family's official
    naming); nothing is downloaded. ``kwargs`` are the family's options (e.g. ``width``).
    """
    builders = _builders()
    if name not in builders:
        raise ConfigError(f"model {name!r} is unknown; choose from {', '.join(sorted(builders))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"model {name!r}: num_classes must be a positive int, got {num_classes!r}")
    options = [p for p in inspect.signature(builders[name]).parameters if p != "num_classes"]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(f"model {name!r} has no option {', '.join(unknown)}; options: {', '.join(options)}")
    model = builders[name](num_classes=num_classes, **kwargs)
    if pretrained is not None:
        from vsda_train.models.pretrained import load_pretrained

        load_pretrained(model, pretrained)
    return model
