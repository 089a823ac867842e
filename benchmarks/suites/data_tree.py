"""A small VIPER-like and Cityscapes-like tree at full resolution, for timing the training data path.

Frames are rendered by the synthetic generator (:func:`vsda_train.synth.render_clip`) with its
camera look for both domains (its blur reduced to a sharp lens at full resolution): textures,
shading, haze, sensor noise and JPEG artefacts give
files whose size and decode time are those of photographs (flat colours, the simulator look,
would compress far smaller and decode faster than GTA V's textured frames; random noise far
slower). The layouts and names are the real ones:

* VIPER ``train/img/SSS/SSS_NNNNN.jpg`` (JPEG, OpenCV's quality 95) for labelled frames
  NNNNN = 10, 20, ... and their t-1, labels ``train/cls/SSS/SSS_NNNNN.png`` (VIPER class ids,
  the ego vehicle's hood as a car at the bottom centre);
* Cityscapes ``leftImg8bit_sequence/train/aachen/aachen_SSSSSS_0000NN_leftImg8bit.png`` for
  frames 16..19 of each snippet, labels ``gtFine/train/aachen/aachen_SSSSSS_000019_gtFine_labelIds.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy.labels import CITYSCAPES_LABELID_TO_VIPER15, IGNORE_INDEX, VIPER_CAR_ID, VIPER_ID_TO_TRAIN
from vsda_train.synth import SynthConfig, TargetStyle, render_clip

SOURCE_SIZE, TARGET_SIZE = (1080, 1920), (1024, 2048)  # H, W as VIPER and Cityscapes ship them
CITYSCAPES_FIRST, CITYSCAPES_LABELLED = 16, 19
# The camera look's blur is set in pixels at 256 px width (0.4-0.9 there: 3-7 px at 2048); a sharp
# lens at full resolution blurs by under a pixel.
SHARP = replace(TargetStyle(), blur_sigma=(0.05, 0.1))


def _inverse(mapping: dict[int, int]) -> np.ndarray:
    """Return the uint8 LUT train id -> the smallest raw id of that class (void -> 0, 'unlabelled')."""
    lut = np.zeros(256, np.uint8)
    for raw, train in sorted(mapping.items(), reverse=True):
        lut[train] = raw
    lut[IGNORE_INDEX] = 0
    return lut


TO_VIPER, TO_CITYSCAPES = _inverse(VIPER_ID_TO_TRAIN), _inverse(CITYSCAPES_LABELID_TO_VIPER15)


def _frames(size: tuple[int, int], n: int, seed: int) -> Iterator:
    """Yield ``n`` consecutive rendered frames of one street clip at ``size`` (H, W)."""
    config = SynthConfig(width=size[1], height=size[0], frames=max(n, 5), seed=seed, target_style=SHARP)
    clip = render_clip(config, "target", np.random.default_rng(seed))
    for _ in range(n):
        yield next(clip)


def _write(path: Path, image: np.ndarray, rgb: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if rgb else image):
        raise OSError(f"{path}: cannot write image")
    return path


def write_viper(root: Path, samples: int = 3, size: tuple[int, int] = SOURCE_SIZE, seed: int = 0) -> Path:
    """Write ``samples`` labelled VIPER frames (and their t-1) of sequence 001 under ``root``; return root."""
    frames = _frames(size, 2 * samples, seed)
    for s in range(1, samples + 1):
        for index in (10 * s - 1, 10 * s):
            frame = next(frames)
            name = f"001_{index:05d}"
            _write(root / "train" / "img" / "001" / f"{name}.jpg", frame.rgb)
        cls = TO_VIPER[frame.semantic]
        cls[frame.hood] = VIPER_CAR_ID
        _write(root / "train" / "cls" / "001" / f"{name}.png", cls, rgb=False)
    return root


def write_cityscapes(root: Path, snippets: int = 2, size: tuple[int, int] = TARGET_SIZE, seed: int = 1) -> Path:
    """Write frames 16..19 of ``snippets`` Cityscapes sequences of Aachen (label on 19) under ``root``."""
    for seq in range(snippets):
        frame = None
        for index, frame in zip(range(CITYSCAPES_FIRST, CITYSCAPES_LABELLED + 1),
                                _frames(size, CITYSCAPES_LABELLED + 1 - CITYSCAPES_FIRST, seed + seq)):
            stem = f"aachen_{seq:06d}_{index:06d}"
            _write(root / "leftImg8bit_sequence" / "train" / "aachen" / f"{stem}_leftImg8bit.png", frame.rgb)
        label = TO_CITYSCAPES[frame.semantic]
        _write(root / "gtFine" / "train" / "aachen" / f"{stem}_gtFine_labelIds.png", label, rgb=False)
    return root


def mean_file_mib(files: list[Path]) -> float:
    """Return the mean size of ``files`` in MiB."""
    return float(np.mean([f.stat().st_size for f in files])) / 2**20 if files else 0.0
