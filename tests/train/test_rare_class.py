"""Rare-class sampling by the rules of DAFormer's ``mmseg/datasets/uda_dataset.py`` (lhoyer/DAFormer):
``p_c = softmax((1 - f_c) / T)`` over the classes present, then a sample with more than ``min_pixels``
of the drawn class."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vsda_train import rare_class
from vsda_train.rare_class import (
    RareClassBatchSampler,
    cached_class_counts,
    class_counts,
    class_probabilities,
    rare_class_line,
    samples_with_class,
)


def test_class_probabilities_by_hand() -> None:
    # shares f = 0.6, 0.3, 0.1 (class 0 absent); (1 - f) / 0.5 = 0.8, 1.4, 1.8
    classes, p = class_probabilities(np.array([0, 60, 30, 10]), temperature=0.5)
    e = [math.exp(0.8), math.exp(1.4), math.exp(1.8)]
    assert classes.tolist() == [1, 2, 3]
    np.testing.assert_allclose(p, [x / sum(e) for x in e])
    np.testing.assert_allclose(p, [0.18049, 0.32888, 0.49063], atol=1e-5)


def test_low_temperature_favours_the_rarest_class() -> None:
    # DAFormer's T = 0.01 on shares 0.9 / 0.09 / 0.01: the rarest class takes exp(8) : exp(0.9 * 100) ...
    _, p = class_probabilities(np.array([900, 90, 10]), temperature=0.01)
    assert p.argmax() == 2 and p[2] > 0.99
    with pytest.raises(ValueError, match="temperature"):
        class_probabilities(np.array([1, 2]), temperature=0.0)


def test_samples_with_class_need_more_than_min_pixels() -> None:
    counts = np.array([[5, 0], [6, 2], [0, 9]])
    assert {c: v.tolist() for c, v in samples_with_class(counts, [0, 1], 5).items()} == {0: [1], 1: [2]}
    with pytest.raises(ValueError, match="rcs_min_pixels"):
        samples_with_class(counts, [0, 1], 9)


def test_sampler_draws_classes_by_their_probability() -> None:
    # each sample holds one class: the class of a drawn sample is the class drawn
    counts = np.array([[100, 0, 0]] * 5 + [[0, 40, 0]] * 3 + [[0, 0, 10]] * 2)
    sampler = RareClassBatchSampler(counts, batch_size=8, seed=3, temperature=0.5, min_pixels=0)
    drawn = np.concatenate([counts[sampler.draw(it)].argmax(1) for it in range(500)])
    _, p = class_probabilities(counts.sum(0), 0.5)
    freq = np.bincount(drawn, minlength=3) / drawn.size
    sigma = np.sqrt(p * (1 - p) / drawn.size)
    assert np.all(np.abs(freq - p) < 4 * sigma), (freq, p)


def test_sampler_resumes_exactly_and_ranks_split_the_global_batch() -> None:
    counts = np.array([[50, 1], [40, 0], [10, 30], [0, 20]])
    one = RareClassBatchSampler(counts, 4, seed=7, temperature=0.1, min_pixels=0)
    stream = iter(one)
    first = [next(stream) for _ in range(6)]
    resumed = iter(RareClassBatchSampler(counts, 4, seed=7, temperature=0.1, min_pixels=0, start_iter=4))
    assert [next(resumed) for _ in range(2)] == first[4:]
    ranks = [iter(RareClassBatchSampler(counts, 2, 7, 0.1, 0, rank=r, world_size=2)) for r in (0, 1)]
    for it in range(6):
        assert next(ranks[0]) + next(ranks[1]) == first[it]
    assert all(key == it for it, batch in enumerate(first) for _, key in batch)  # the draw seeds augmentation


class _Labels:
    """A clip dataset's label side: records and load_label (what class_counts reads)."""

    def __init__(self, root, labels: list[np.ndarray]) -> None:
        self.root = root
        self.records = [type("Rec", (), {"label_path": f"l{i}.png"})() for i in range(len(labels))]
        self._labels = labels

    def load_label(self, rec) -> tuple[np.ndarray, dict]:
        return self._labels[int(rec.label_path[1:-4])], {}


def test_class_counts_scale_to_the_load_size(tmp_path) -> None:
    label = np.full((4, 8), 255, np.uint8)
    label[:, :2] = 1
    label[0, 2] = 0
    clips = _Labels(tmp_path, [label])
    assert class_counts(clips, 3).tolist() == [[1, 8, 0]]  # void (255) is not counted
    assert class_counts(clips, 3, size=(2, 4)).tolist() == [[0, 2, 0]]  # a quarter of the area: 0.25 -> 0, 8 -> 2
    small = cv2.resize(label, (4, 2), interpolation=cv2.INTER_NEAREST)
    assert np.count_nonzero(small == 1) == 2  # what the nearest-neighbour resize keeps here


def test_class_counts_are_cached_per_label_list(tmp_path, monkeypatch) -> None:
    clips = _Labels(tmp_path, [np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)])
    first = cached_class_counts(clips, 2)
    assert first.tolist() == [[4, 0], [0, 4]]
    assert len(list((tmp_path / ".vsda_cache").rglob("*.npy"))) == 1
    monkeypatch.setattr(rare_class, "class_counts", lambda *a, **k: pytest.fail("recounted"))
    assert cached_class_counts(clips, 2).tolist() == first.tolist()
    clips.records = clips.records[:1]  # another list of labels: another cache entry
    monkeypatch.undo()
    assert cached_class_counts(clips, 2).tolist() == [[4, 0]]


def test_rare_class_line_names_the_rarest_classes() -> None:
    counts = np.array([[90, 0, 0], [0, 8, 0], [0, 0, 2]])
    sampler = RareClassBatchSampler(counts, 2, 0, temperature=0.01, min_pixels=0)
    line = rare_class_line(sampler, counts, ["road", "bus", "bicycle"], show=2)
    assert line.startswith("rare-class sampling (T=0.01, 3 classes): bicycle 2.00 -> ")
    assert "bus 8.00 -> " in line and "road" not in line
