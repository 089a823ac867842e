"""Rare-class sampling (RCS) of labelled clips, as DAFormer samples its source images.

DAFormer (Hoyer et al. 2022, ``mmseg/datasets/uda_dataset.py``) draws a class ``c`` with
probability ``softmax((1 - f_c) / T)``, ``f_c`` being the class's share of the labelled
pixels (over the classes that occur), then a sample uniformly among those holding more than
``min_pixels`` pixels of ``c``. Its defaults are ``T = 0.01`` and ``min_pixels = 3000`` at
GTA's 1280x720 training size (0.33 % of a frame). Its crop re-draw (``min_crop_ratio``) is
left out: the class is drawn, the crop stays random.

The per-sample class counts are read once per list of label files and load size, and cached in
``<root>/.vsda_cache/class_counts/`` (the user cache folder if the root is read-only).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsda_deploy.data.base import DatasetError
from vsda_train.config import ConfigError
from vsda_train.engine import GlobalBatchSampler
from vsda_train.flow import user_cache_dir


def class_probabilities(pixels: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, probabilities)``: DAFormer's ``softmax((1 - f_c) / T)`` over the classes present.

    ``pixels`` (C,) counts each class's labelled pixels over the dataset.
    """
    if temperature <= 0:
        raise ValueError(f"rare-class temperature must be > 0, got {temperature}")
    pixels = np.asarray(pixels, np.float64)
    classes = np.flatnonzero(pixels > 0)
    if classes.size == 0:
        raise DatasetError("rare-class sampling: the labels hold no pixels of any class")
    logits = (1.0 - pixels[classes] / pixels[classes].sum()) / temperature
    prob = np.exp(logits - logits.max())
    return classes, prob / prob.sum()


def samples_with_class(counts: np.ndarray, classes: Sequence[int], min_pixels: int) -> dict[int, np.ndarray]:
    """Return ``{class: indices of the samples with more than min_pixels of it}`` (classes with any)."""
    out = {}
    for c in classes:
        idx = np.flatnonzero(counts[:, c] > min_pixels)
        if idx.size:
            out[int(c)] = idx
    if not out:
        raise ConfigError(f"data.rcs_min_pixels: no sample holds more than {min_pixels} pixels of any class; "
                          "lower it")
    return out


class RareClassBatchSampler(GlobalBatchSampler):
    """Batches of ``(index, it)``: each sample drawn as a class by its RCS probability, then a sample of it.

    The draw of iteration ``it`` depends only on ``(seed, it)`` (resume and DDP stay exact, see
    :class:`~vsda_train.engine.GlobalBatchSampler`); ``it`` seeds the sample's augmentation.
    """

    def __init__(self, counts: np.ndarray, batch_size: int, seed: int, temperature: float,
                 min_pixels: int, start_iter: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(batch_size, seed, start_iter, rank, world_size)
        classes, prob = class_probabilities(counts.sum(0), temperature)
        self.pools = samples_with_class(counts, classes, min_pixels)
        keep = np.isin(classes, list(self.pools))  # a class no sample holds enough of is never drawn
        self.classes, self.prob = classes[keep], prob[keep] / prob[keep].sum()
        self.temperature = temperature

    def draw(self, it: int) -> list[int]:
        """Return the global batch (``batch_size * world_size`` sample indices) of iteration ``it``."""
        rng = np.random.default_rng([self.seed, it])
        drawn = rng.choice(self.classes, size=self.bs * self.world, p=self.prob)
        return [int(rng.choice(self.pools[int(c)])) for c in drawn]

    def global_batch(self, it: int) -> tuple[list[int], int]:
        return self.draw(it), it


def class_counts(clips: Any, num_classes: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return (samples, classes) labelled-pixel counts of a clip dataset, at ``size`` (H, W) if given.

    Counts are read at the label's own resolution and scaled by the area ratio, which is what
    a nearest-neighbour resize keeps on average.
    """
    counts = np.zeros((len(clips.records), num_classes), np.int64)
    for i, rec in enumerate(clips.records):
        label = clips.load_label(rec)[0]
        scale = 1.0 if size is None else size[0] * size[1] / label.size
        counts[i] = np.round(np.bincount(label.ravel(), minlength=256)[:num_classes] * scale)
    return counts


def cached_class_counts(clips: Any, num_classes: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return :func:`class_counts`, read from or written to a cache keyed by the label files and size."""
    key = hashlib.sha1(repr((size, num_classes, [r.label_path for r in clips.records])).encode()).hexdigest()
    path = user_cache_dir(Path(clips.root), ".vsda_cache", "class_counts") / f"class_counts-{key[:16]}.npy"
    if path.is_file():
        counts = np.load(path)
        if counts.shape == (len(clips.records), num_classes):
            return counts
    counts = class_counts(clips, num_classes, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, counts)
    os.replace(tmp, path)
    return counts


def expected_share(sampler: RareClassBatchSampler, counts: np.ndarray, iters: int) -> np.ndarray:
    """Return each class's share of the labelled pixels the first ``iters`` global batches hold."""
    pixels = np.zeros(counts.shape[1])
    for it in range(iters):
        pixels += counts[sampler.draw(it)].sum(0)
    return pixels / max(pixels.sum(), 1.0)


def rare_class_line(sampler: RareClassBatchSampler, counts: np.ndarray, names: Sequence[str],
                    iters: int = 500, show: int = 4) -> str:
    """Return one line: the rarest classes' pixel share in the dataset and in the sampled batches."""
    before = counts.sum(0) / max(counts.sum(), 1)
    after = expected_share(sampler, counts, iters)
    rare = [c for c in np.argsort(before) if before[c] > 0][:show]
    shares = ", ".join(f"{names[c]} {100 * before[c]:.2f} -> {100 * after[c]:.2f} %" for c in rare)
    return f"rare-class sampling (T={sampler.temperature:g}, {len(sampler.pools)} classes): {shares} of the pixels"


__all__ = ["RareClassBatchSampler", "cached_class_counts", "class_counts", "class_probabilities",
           "expected_share", "rare_class_line", "samples_with_class"]
