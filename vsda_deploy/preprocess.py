"""How an RGB uint8 frame becomes a model input: channel order, mean and std (numpy only).

One normalisation serves training (``vsda_train.transforms``), export checks, calibration and
``vsda-infer``: ``x = (pixel / 255 - mean) / std`` per channel, in the model's channel order.

* ``imagenet``: RGB, torchvision's ImageNet mean and std (vsda's models trained from scratch or
  from torchvision / timm backbones).
* ``caffe``: BGR, 0-255, mean subtraction only: the input of the Caffe-converted ImageNet
  ResNet-101 (``DeepLab_resnet_pretrained_imagenet.pth``) that DeepLabV2 and the peers start
  from. Expressed in the same formula with ``mean = BGR mean / 255`` and ``std = 1 / 255``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CHANNEL_ORDERS = ("rgb", "bgr")


@dataclass(frozen=True)
class Normalization:
    """Channel order plus per-channel mean and std (in model channel order, on the 0-1 scale)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "rgb"

    def __post_init__(self) -> None:
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel order {self.channel_order!r}: choose from {', '.join(CHANNEL_ORDERS)}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"normalisation needs 3 means and 3 positive stds, got {self.mean}, {self.std}")


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rgb")
# The Caffe ImageNet mean in BGR order (DeepLab / DA-VSN / TPS ``IMG_MEAN``), on the 0-1 scale.
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
CAFFE = Normalization(tuple(m / 255.0 for m in CAFFE_MEAN_BGR), (1 / 255.0,) * 3, "bgr")
PRESETS: dict[str, Normalization] = {"imagenet": IMAGENET, "caffe": CAFFE}


def preset(name: str) -> Normalization:
    """Return the normalisation named ``imagenet`` or ``caffe``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"preprocess {name!r}: choose from {', '.join(PRESETS)}") from None


def resize_frame(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Return ``image`` resized to ``size`` (H, W): area averaging to shrink, bilinear to enlarge.

    Area averaging keeps a 1920x1080 -> 1280x720 frame free of aliasing (like PIL's resampling the
    peers train with); training, evaluation and ``vsda-infer`` all resize frames with this function.
    """
    if size is None or tuple(size) == image.shape[:2]:
        return image
    h, w = size
    shrink = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_label(label: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Return a class-id map resized to ``size`` (H, W) with nearest-neighbour sampling."""
    if size is None or tuple(size) == label.shape[:2]:
        return label
    return cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def normalise(image: np.ndarray, norm: Normalization = IMAGENET, out: np.ndarray | None = None) -> np.ndarray:
    """Return ``out`` (1, 3, H, W) float32: the model input of an RGB uint8 (H, W, 3) ``image``.

    Works plane by plane into ``out`` (allocated when None), so a streaming caller reuses one buffer.
    """
    h, w = image.shape[:2]
    if out is None:
        out = np.empty((1, 3, h, w), np.float32)
    source = (2, 1, 0) if norm.channel_order == "bgr" else (0, 1, 2)
    for c, src in enumerate(source):
        plane = out[0, c]
        np.divide(image[..., src], np.float32(255.0), out=plane, dtype=np.float32)
        np.subtract(plane, np.float32(norm.mean[c]), out=plane)
        np.divide(plane, np.float32(norm.std[c]), out=plane)
    return out


def denormalise(x: np.ndarray, norm: Normalization = IMAGENET) -> np.ndarray:
    """Return the RGB uint8 (H, W, 3) image of one normalised (3, H, W) input (for pictures and checks)."""
    planes = [x[c] * np.float32(norm.std[c]) + np.float32(norm.mean[c]) for c in range(3)]
    if norm.channel_order == "bgr":
        planes = planes[::-1]
    return np.clip(np.rint(np.stack(planes, -1) * 255.0), 0, 255).astype(np.uint8)


__all__ = [
    "CAFFE", "IMAGENET", "PRESETS", "Normalization", "denormalise", "normalise", "preset", "resize_frame",
    "resize_label",
]
