"""Clip transforms for training: one random geometry and photometry per clip.

Frame ``t`` and frame ``t-k`` of a clip get the *same* rescale, crop, flip and colour
change, so the optical flow between them stays valid (it is rescaled, cropped and
mirrored along with them).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from vsda_deploy.labels import IGNORE_INDEX
from vsda_deploy.preprocess import IMAGENET, Normalization, normalise
from vsda_train.config import ConfigError

PHOTOMETRIC_LEVELS = ("none", "weak", "strong")


@dataclass(frozen=True)
class Photometric:
    """Colour jitter, blur and noise strengths of one augmentation level."""

    brightness: float
    contrast: float
    saturation: float
    hue_deg: float
    blur_prob: float
    noise_std: float

    @staticmethod
    def level(name: str) -> Photometric | None:
        if name not in PHOTOMETRIC_LEVELS:
            raise ConfigError(f"photometric augmentation {name!r}: choose from {PHOTOMETRIC_LEVELS}")
        return {
            "none": None,
            "weak": Photometric(0.15, 0.15, 0.15, 5.0, 0.0, 0.0),
            "strong": Photometric(0.4, 0.4, 0.4, 15.0, 0.5, 6.0),
        }[name]


def _jitter_params(p: Photometric, rng: np.random.Generator) -> dict:
    return {
        "brightness": rng.uniform(1 - p.brightness, 1 + p.brightness),
        "contrast": rng.uniform(1 - p.contrast, 1 + p.contrast),
        "saturation": rng.uniform(1 - p.saturation, 1 + p.saturation),
        "hue": rng.uniform(-p.hue_deg, p.hue_deg),
        "blur": rng.uniform(0.5, 1.5) if rng.random() < p.blur_prob else 0.0,
        "noise_seed": int(rng.integers(1 << 31)),
        "noise_std": p.noise_std * rng.random(),
    }


def apply_photometric(image: np.ndarray, params: dict) -> np.ndarray:
    """Return the RGB uint8 ``image`` with the given colour jitter, blur and noise applied."""
    img = image.astype(np.float32) * params["brightness"]
    mean = img.mean()
    img = (img - mean) * params["contrast"] + mean
    hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + params["hue"] / 2) % 180  # OpenCV hue is 0..180
    hsv[..., 1] = np.clip(hsv[..., 1] * params["saturation"], 0, 255)
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if params["blur"] > 0:
        img = cv2.GaussianBlur(img, (0, 0), params["blur"])
    if params["noise_std"] > 0:
        noise = np.random.default_rng(params["noise_seed"]).normal(0, params["noise_std"], img.shape)
        img = img + noise.astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def normalize(image: np.ndarray, norm: Normalization = IMAGENET) -> torch.Tensor:
    """Return the (3, H, W) float tensor of an RGB uint8 image (``vsda_deploy.preprocess.normalise``)."""
    return torch.from_numpy(normalise(np.ascontiguousarray(image), norm)[0])


def _scale_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = flow.shape[:2]
    sx, sy = size[0] / w, size[1] / h
    return cv2.resize(flow, size, interpolation=cv2.INTER_LINEAR) * np.array([sx, sy], np.float32)


def _pad_to(a: np.ndarray | None, h: int, w: int, value: float) -> np.ndarray | None:
    if a is None or (a.shape[0] >= h and a.shape[1] >= w):
        return a
    ph, pw = max(0, h - a.shape[0]), max(0, w - a.shape[1])
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, constant_values=value)


def _tensor(image: np.ndarray, norm: Normalization) -> torch.Tensor:
    return normalize(np.ascontiguousarray(image), norm)


@dataclass(frozen=True)
class ClipTransform:
    """Random rescale, crop, horizontal flip and photometric change of a training clip.

    Flows (the backward flow t -> t-k, and optionally the forward flow t-k -> t) are rescaled,
    cropped and mirrored with the frames. ``keep_clean`` also returns both frames before the
    photometric change (``frame_clean``, ``prev_clean``: what a teacher sees).
    """

    size: tuple[int, int]  # crop H, W
    scale_range: tuple[float, float] = (1.0, 1.0)
    hflip: bool = True
    photometric: str = "none"
    norm: Normalization = IMAGENET  # the model's input normalisation (model.preprocess)
    keep_clean: bool = False
    instances: bool = False

    def __call__(self, frame, prev, label, flow, rng: np.random.Generator,
                 flow_fw: np.ndarray | None = None, instance: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """Return tensors ``frame``, ``prev`` (3,H,W), ``label`` (H,W) long, ``flow``/``flow_fw`` (2,H,W) if given.

        ``prev`` None (a step that never looks at frame t-k) is skipped, and left out of the output.
        """
        flows = {k: f for k, f in (("flow", flow), ("flow_fw", flow_fw)) if f is not None}
        images = {k: im for k, im in (("frame", frame), ("prev", prev)) if im is not None}
        maps = {"label": label}  # per-pixel ids: nearest resampling, padded with "no label"
        if self.instances:
            maps["instance"] = instance if instance is not None else np.full(frame.shape[:2], -1, np.int32)
        maps = {k: m for k, m in maps.items() if m is not None}
        scale = rng.uniform(*self.scale_range)
        if scale != 1.0:
            h0, w0 = frame.shape[:2]
            size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
            images = {k: cv2.resize(im, size, interpolation=cv2.INTER_LINEAR) for k, im in images.items()}
            maps = {k: cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) for k, m in maps.items()}
            flows = {k: _scale_flow(f, size) for k, f in flows.items()}
        h, w = self.size
        images = {k: _pad_to(im, h, w, 0) for k, im in images.items()}
        maps = {k: _pad_to(m, h, w, IGNORE_INDEX if k == "label" else 0) for k, m in maps.items()}
        flows = {k: _pad_to(f, h, w, 0.0) for k, f in flows.items()}
        y = int(rng.integers(0, images["frame"].shape[0] - h + 1))
        x = int(rng.integers(0, images["frame"].shape[1] - w + 1))
        crop = (slice(y, y + h), slice(x, x + w))
        images = {k: im[crop] for k, im in images.items()}
        maps = {k: m[crop] for k, m in maps.items()}
        flows = {k: f[crop] for k, f in flows.items()}
        if self.hflip and rng.random() < 0.5:
            images = {k: im[:, ::-1] for k, im in images.items()}
            maps = {k: m[:, ::-1] for k, m in maps.items()}
            flows = {k: f[:, ::-1] * np.array([-1.0, 1.0], np.float32) for k, f in flows.items()}
        out = {}
        if self.keep_clean:
            out.update({f"{k}_clean": _tensor(im, self.norm) for k, im in images.items()})
        level = Photometric.level(self.photometric)
        if level is not None:
            params = _jitter_params(level, rng)
            images = {k: apply_photometric(im, params) for k, im in images.items()}
        out.update({k: _tensor(im, self.norm) for k, im in images.items()})
        for k, m in maps.items():
            out[k] = torch.from_numpy(np.ascontiguousarray(m)).long()
        for k, f in flows.items():
            out[k] = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float()
        return out
