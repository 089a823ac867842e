"""Tiny textured VIPER and Cityscapes-Seq trees and a training config over them, for the flow-cache tests.

Frames are a smooth random texture moving 1 px a frame (so DIS finds real motion); labels are
constant road. Source: 2 sequences x 4 frames, all labelled (3 samples each, k = 1). Target: 3
snippets of 5 frames (4 samples each, labelled frame the 4th), in two cities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.deploy.data.fixtures import write_png, write_rgb
from vsda_train.config import config_from_dict

H, W = 32, 48
SOURCE_RESIZE, TARGET_RESIZE = (24, 40), (28, 44)
SNIPPETS = (("aachen", 0, 19), ("aachen", 1, 19), ("bochum", 0, 19))  # (city, seq, labelled frame)


def texture(seed: int, h: int = H, w: int = W + 16) -> np.ndarray:
    """Return a smooth RGB uint8 texture (blurred noise) wider than a frame, to slide a window over."""
    noise = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


def moving(seed: int, t: int) -> np.ndarray:
    """Return frame ``t`` of a clip: the texture's window shifted by ``t`` px."""
    return np.ascontiguousarray(texture(seed)[:, t:t + W])


def make_source(root: Path) -> Path:
    for s, seq in enumerate(("001", "002")):
        for i in range(4):
            write_rgb(root / "train" / "img" / seq / f"{seq}_{i:05d}.jpg", moving(s, i))
            write_png(root / "train" / "cls" / seq / f"{seq}_{i:05d}.png", np.full((H, W), 3, np.uint8))
    return root


def make_target(root: Path) -> Path:
    for n, (city, seq, lab) in enumerate(SNIPPETS):
        for t, f in enumerate(range(lab - 3, lab + 2)):
            name = f"{city}_{seq:06d}_{f:06d}_leftImg8bit.png"
            write_rgb(root / "leftImg8bit_sequence" / "train" / city / name, moving(10 + n, t))
        write_png(root / "gtFine" / "train" / city / f"{city}_{seq:06d}_{lab:06d}_gtFine_labelIds.png",
                  np.full((H, W), 7, np.uint8))
    return root


def make_trees(tmp: Path) -> tuple[Path, Path]:
    """Return the roots of the source and target trees written under ``tmp``."""
    return make_source(tmp / "viper"), make_target(tmp / "cityscapes")


def tiny_config(source: Path, target: Path, **data: Any) -> Any:
    """Return a TrainConfig over the tiny trees: resized frames, ultrafast DIS, every target frame."""
    section = {"source": f"viper:{source}", "target": f"cityscapes-seq:{target}", "source_resize": list(SOURCE_RESIZE),
               "target_resize": list(TARGET_RESIZE), "flow_preset": "ultrafast", "target_frames": "all", **data}
    return config_from_dict({"data": section, "vst": {"neighbours": [-1, 1]}})


def cache_files(folder: Path) -> dict[str, bytes]:
    """Return ``{relative path: bytes}`` of the ``.npy`` files under ``folder``."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.npy"))}
