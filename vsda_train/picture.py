"""A before/after picture: several checkpoints on the same target frames, as class overlays beside the labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vsda_deploy.cityscapes_vps import write_rgb_png
from vsda_deploy.instance_grouping import split_prediction
from vsda_deploy.labels import IGNORE_INDEX, get_label_space
from vsda_deploy.sinks import overlay as blend_classes


def overlay(rgb: np.ndarray, label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Return the frame blended with its class colours (``vsda-infer``'s overlay, stronger); void pixels dimmed."""
    out = blend_classes(rgb, label, np.asarray(colours, np.uint8), alpha=0.65)
    void = label == IGNORE_INDEX
    out[void] = (0.35 * rgb[void]).astype(np.uint8)
    return out


def _titled(tile: np.ndarray, title: str, width: int) -> np.ndarray:
    scale = width / tile.shape[1]
    tile = cv2.resize(tile, (width, round(tile.shape[0] * scale)), interpolation=cv2.INTER_NEAREST)
    head = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(head, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([head, tile])


def before_after(checkpoints: dict[str, str], spec: str, frames: int = 3, split: str = "val",
                 tile_width: int = 384) -> np.ndarray:
    """Return the picture: a row per labelled target frame; the frame, its labels, then each checkpoint's output."""
    from vsda_deploy.data import build_dataset
    from vsda_train.evaluate import checkpoint_predictor

    models = {}
    for title, path in checkpoints.items():
        predict, ckpt = checkpoint_predictor(path)
        models[title] = (predict, ckpt.get("label_space", "viper15"))
    space = get_label_space(next(iter(models.values()))[1])
    clips = build_dataset(spec, split=split, labels=True, label_space=space.name)
    picks = np.linspace(0, len(clips) - 1, frames).round().astype(int)
    colours = space.palette_array()
    rows = []
    for i in picks:
        sample = clips[int(i)]
        tiles = [_titled(sample.frame, "target frame", tile_width),
                 _titled(overlay(sample.frame, sample.label, colours), "labels (never used to train)", tile_width)]
        for title, (predict, _) in models.items():
            semantic = split_prediction(predict(sample.frame))[0]
            tiles.append(_titled(overlay(sample.frame, semantic, colours), title, tile_width))
        rows.append(np.hstack([np.pad(t, ((0, 4), (0, 4), (0, 0)), constant_values=255) for t in tiles]))
    return np.vstack(rows)


def write_before_after(checkpoints: dict[str, str], spec: str, out: str | Path, frames: int = 3) -> Path:
    """Write :func:`before_after` as a PNG; return its path."""
    out = Path(out)
    write_rgb_png(out, before_after(checkpoints, spec, frames))
    return out


__all__ = ["before_after", "overlay", "write_before_after"]
