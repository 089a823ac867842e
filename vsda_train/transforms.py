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

PHOTOMETRIC_LEVELS = ("none", "weak", "strong", "tps")


@dataclass(frozen=True)
class Photometric:
    """Colour jitter, greyscale, blur and noise of one augmentation level.

    ``blur_sigma`` is in pixels of a frame ``blur_width`` wide (0: of the frame itself), so a level
    written for 1024-pixel frames blurs a 256-pixel crop a quarter as much.
    """

    brightness: float
    contrast: float
    saturation: float
    hue_deg: float
    blur_prob: float
    noise_std: float
    jitter_prob: float = 1.0
    grey_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    blur_width: int = 0

    @staticmethod
    def level(name: str) -> Photometric | None:
        if name not in PHOTOMETRIC_LEVELS:
            raise ConfigError(f"photometric augmentation {name!r}: choose from {PHOTOMETRIC_LEVELS}")
        return {
            "none": None,
            "weak": Photometric(0.15, 0.15, 0.15, 5.0, 0.0, 0.0),
            "strong": Photometric(0.4, 0.4, 0.4, 15.0, 0.5, 6.0),
            # TPS's target augmentation (train_video_UDA.py: ColorJitter(0.8, 0.8, 0.8, 0.2) with p 0.8,
            # RandomGrayscale p 0.2, GaussianBlur radius 7, 9 or 11 with p 0.6 on 1024x512 frames)
            "tps": Photometric(0.8, 0.8, 0.8, 72.0, 0.6, 0.0, jitter_prob=0.8, grey_prob=0.2,
                               blur_sigma=(7.0, 11.0), blur_width=1024),
        }[name]


def _jitter_params(p: Photometric, rng: np.random.Generator) -> dict:
    """Draw one clip's photometric change (the draws of levels without jitter_prob/grey_prob are unchanged)."""
    jitter = p.jitter_prob >= 1 or rng.random() < p.jitter_prob
    params = {
        "brightness": rng.uniform(1 - p.brightness, 1 + p.brightness),
        "contrast": rng.uniform(1 - p.contrast, 1 + p.contrast),
        "saturation": rng.uniform(1 - p.saturation, 1 + p.saturation),
        "hue": rng.uniform(-p.hue_deg, p.hue_deg),
        "blur": rng.uniform(*p.blur_sigma) if rng.random() < p.blur_prob else 0.0,
        "blur_width": p.blur_width,
        "noise_seed": int(rng.integers(1 << 31)),
        "noise_std": p.noise_std * rng.random(),
        "grey": p.grey_prob > 0 and rng.random() < p.grey_prob,
    }
    if not jitter:
        params.update(brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0)
    return params


def apply_photometric(image: np.ndarray, params: dict) -> np.ndarray:
    """Return the RGB uint8 ``image`` with the given colour jitter, greyscale, blur and noise applied."""
    img = image.astype(np.float32) * params["brightness"]
    mean = img.mean()
    img = (img - mean) * params["contrast"] + mean
    hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + params["hue"] / 2) % 180  # OpenCV hue is 0..180
    hsv[..., 1] = np.clip(hsv[..., 1] * params["saturation"], 0, 255)
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if params.get("grey"):
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    img = img.astype(np.float32)
    if params["blur"] > 0:
        width = params.get("blur_width", 0)
        img = cv2.GaussianBlur(img, (0, 0), params["blur"] * (image.shape[1] / width if width else 1.0))
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

        ``valid`` (H,W) bool is False where the crop reaches past the rescaled frame (padding).

        ``prev`` None (a step that never looks at frame t-k) is skipped, and left out of the output.
        """
        flows = {k: f for k, f in (("flow", flow), ("flow_fw", flow_fw)) if f is not None}
        images = {k: im for k, im in (("frame", frame), ("prev", prev)) if im is not None}
        maps = {"label": label}  # per-pixel ids: nearest resampling, padded with "no label"
        if self.instances:
            maps["instance"] = instance if instance is not None else np.full(frame.shape[:2], -1, np.int32)
        maps = {k: m for k, m in maps.items() if m is not None}
        maps["valid"] = np.ones(frame.shape[:2], np.uint8)  # 0 where the crop pads the frame
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
            tensor = torch.from_numpy(np.ascontiguousarray(m))
            out[k] = tensor.bool() if k == "valid" else tensor.long()
        for k, f in flows.items():
            out[k] = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float()
        return out
